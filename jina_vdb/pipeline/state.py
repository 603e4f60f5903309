"""What the pipeline's three stages share: the messages on their queues and their state.

``jina_vdb.ingest._Pipeline`` sets the state up and runs the stages (``reader.ReadStage``,
``encoder.EncodeStage``, ``writer.WriteStage``), each a thread over this one state.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

from connectors.base import VectorStore

from ..errors import Failure, Ignored
from ..flow import ByteBudget, wait_put
from ..ingest_types import Encoder, IngestOptions, Tally
from ..preprocess import Ahead, PreprocessPool
from ..sync import SourceLedger
from .steps import report_failure

END = object()
FLUSH = object()  # the reader waits for memory: encode what is held now


@dataclass
class Loaded:
    item: Any
    content: Any
    file_no: int  # which source file it came from (progress is counted in files)
    nbytes: int  # what its content holds in memory (the byte budget)


@dataclass
class Event:
    kind: str  # "skipped" | "duplicate" | "failed" | "ignored"
    file_no: int
    failure: Failure | None = None
    ignored: Ignored | None = None


class PipelineState:
    """The attributes ``_Pipeline.__init__`` sets, and the two calls every stage makes."""

    encoder: Encoder
    store: VectorStore
    opts: IngestOptions
    stop: threading.Event
    store_lock: threading.Lock  # one store call at a time (embedded stores)
    loaded: queue.Queue[Any]  # reader -> encoder
    encoded: queue.Queue[Any]  # encoder -> writer
    budget: ByteBudget
    ledger: SourceLedger
    errors: list[BaseException]
    tally: Tally
    pool: PreprocessPool | None
    ahead: Ahead

    def _put(self, q: queue.Queue[Any], value: Any) -> None:
        wait_put(q, value, self.stop)

    def _fail(self, failure: Failure, file_no: int) -> None:
        report_failure(failure, file_no, self.ledger, self.tally, strict=self.opts.strict)

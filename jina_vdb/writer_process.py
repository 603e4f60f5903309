"""Whether ingest writes from a child process (``IngestOptions.writer_process``), and how.

On a GPU the encoder's Python thread launches kernels and needs the GIL; qdrant-edge's
binding takes vectors only as Python lists, and building them held the GIL ~4 s of a 10 s
run (issue 13). ``connectors.store_process`` moves the whole store to a child process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, cast

from connectors.base import VectorStore

logger = logging.getLogger(__name__)


def wants_writer_process(store: VectorStore, encoder: Any, choice: bool | None) -> bool:
    """The choice, or (None) True for an embedded qdrant-edge store and a CUDA encoder."""
    if choice is not None:
        return choice
    device = getattr(encoder, "device", None)
    return hasattr(store, "released") and getattr(device, "type", None) == "cuda"


@contextlib.contextmanager
def writer_store(store: VectorStore, encoder: Any, choice: bool | None) -> Iterator[VectorStore]:
    """``store`` itself, or a child process serving it when ``wants_writer_process``.

    Raises:
        UnsupportedSpecError: ``choice`` is True and the store is not embedded qdrant-edge.
    """
    if not wants_writer_process(store, encoder, choice):
        yield store
        return
    from connectors.store_process import store_in_process

    with store_in_process(store) as child:
        # The pipeline calls only what StoreProcess answers (upsert, get, scan, delete, flush).
        yield cast(VectorStore, child)

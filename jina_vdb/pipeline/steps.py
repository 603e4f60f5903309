"""One encode call, one upsert that isolates refused records, one failure report.

The local pipeline's stages and the Ray job's (``jina_vdb.distributed.stages``) both
make these calls, so a batch is encoded, written and failed the same way in both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from connectors.base import VectorStore
from connectors.errors import RecordError
from connectors.records import Record

from ..errors import Failure, IngestError
from ..ingest_types import Encoder, IngestOptions, Tally
from ..sources.items import Item
from ..sync import SourceLedger

logger = logging.getLogger(__name__)


def is_item_fault(error: BaseException) -> bool:
    """A bad input (ValueError / TypeError: e.g. ``embedder.InputError``), not a broken encoder."""
    return isinstance(error, ValueError | TypeError)


def report_failure(
    failure: Failure, file_no: int, ledger: SourceLedger, tally: Tally, *, strict: bool
) -> None:
    """A failed item or source: its source keeps its old records (``ledger``), and it is
    counted and logged, or raised as IngestError when ``strict``."""
    ledger.fail(failure.source)
    if strict:
        raise IngestError(f"{failure.source}: {failure.reason}")
    logger.warning("skipped %s: %s", failure.source, failure.reason)
    tally.fail(failure, file_no)


def call_encoder(
    encoder: Encoder,
    items: Sequence[Item],
    contents: list[Any],
    *,
    text: bool,
    multivector: bool,
    options: IngestOptions,
) -> Any:
    """One encode call for ``items`` (all texts or all images) whose loaded ``contents`` are given.

    The items' tasks are passed as one task when they agree, else one per item.
    """
    tasks = [it.task for it in items]
    task: Any = tasks[0] if len(set(tasks)) == 1 else tasks
    common = {"task": task, "multivector": multivector, "show_progress": False}
    if text:
        return encoder.encode_text(
            contents, prompt_name="passage", max_length=options.max_length, **common
        )
    if options.max_pixels is not None:
        common["max_pixels"] = options.max_pixels
    return encoder.encode_image(contents, **common)


def upsert_or_isolate(
    store: VectorStore,
    records: Sequence[Record],
    lock: threading.Lock | contextlib.nullcontext[None],
    on_fail: Callable[[int, Exception], None],
) -> list[int]:
    """Upsert ``records`` in one call; if a record is refused, retry them one by one.

    Returns:
        The positions of the records written. Each refused record (RecordError, ValueError,
        TypeError) is passed to ``on_fail(position, error)`` as it is met; other errors
        (the store itself failing) propagate.
    """
    try:
        with lock:
            store.upsert(records)
        return list(range(len(records)))
    except (RecordError, ValueError, TypeError) as e:
        logger.info("a write of %d records failed (%s); retrying one by one", len(records), e)
    written = []
    for i, record in enumerate(records):
        try:
            with lock:
                store.upsert([record])
        except (RecordError, ValueError, TypeError) as e:
            on_fail(i, e)
        else:
            written.append(i)
    return written

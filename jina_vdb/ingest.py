"""The ingestion pipeline: items -> (skip unchanged) -> encoder -> records -> store, overlapped.

    summary = ingest(iter_items(paths, tokenizer=model.tokenizer), model, store)

Three stages run at once, joined by bounded queues (back-pressure keeps memory flat):

- a **reader** thread pulls items, asks the store which ids it already holds with the same
  payload (before anything is decoded or encoded), and loads the rest (decodes images,
  renders PDF pages); what it loads is bounded in bytes (``flow.ByteBudget``), not counts;
- the **calling** thread encodes batches (this is where the GPU works);
- a **writer** thread turns each batch into records and upserts them.

The stages are in ``jina_vdb.pipeline`` (``reader``, ``encoder``, ``writer``, over a shared
``state``); this module sets them up and runs them.

Resumable by construction: ids are stable and upserts idempotent, and an item counts as
done only once the store returns it. Kill the process at any point and run it again: the
items already written are skipped, the others are written, none twice. One Ctrl-C stops a
run promptly: queued batches are written, a reader blocked on a slow source is left
behind. After a complete run each source's stale records are deleted (``sync.py``).

No torch and no PIL here: items come from ``jina_vdb.sources`` (a text's content is a
string, an image's is decoded by ``Item.load()``), and the encoder is a protocol that
``embedder.JinaV4Embedder`` satisfies (``jina_vdb.ingest_types.Encoder``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from typing import Any

from connectors.base import VectorStore

from .errors import Failure, Ignored, IngestError
from .flow import ByteBudget, Stopped
from .ingest_types import Encoder, IngestOptions, IngestSummary, Tally, failure_of
from .payload import INDEXED_PAYLOAD
from .pipeline.encoder import EncodeStage
from .pipeline.reader import ReadStage
from .pipeline.steps import call_encoder, report_failure, upsert_or_isolate
from .pipeline.writer import WriteStage
from .preprocess import Ahead, pool_for
from .sync import SourceLedger, delete_stale, prune_vanished
from .writer_process import writer_store

__all__ = [
    "Encoder",
    "Failure",
    "Ignored",
    "IngestError",
    "IngestOptions",
    "IngestSummary",
    "call_encoder",
    "failure_of",
    "ingest",
    "report_failure",
    "upsert_or_isolate",
]

logger = logging.getLogger(__name__)

#: Seconds an interrupted run waits for a reader blocked in a slow load before leaving it.
_READER_GRACE_S = 1.0


def ingest(
    items: Iterable[Any],
    encoder: Encoder,
    store: VectorStore,
    options: IngestOptions | None = None,
    *,
    total_files: int | None = None,
) -> IngestSummary:
    """Embed items and upsert them, skipping ids the store already holds.

    Args:
        items: ``Item``s, ``Failure``s and ``Ignored`` files
            (``jina_vdb.sources.iter_items``).
        encoder: has ``encode_text`` / ``encode_image`` returning ``.dense`` and ``.multivectors``.
        store: the collection to write to (its spec decides whether token vectors are kept).
        options: batching, strictness and progress settings.
        total_files: how many files ``items`` come from (``jina_vdb.sources.count_files``):
            the progress bar's total and ETA.

    Returns:
        The summary: added, updated, skipped (unchanged), stale records deleted, pruned,
        duplicates, failures with reasons.

    Raises:
        IngestError: in strict mode, on the first failure (items written before it stay).
    """
    # An index is a hint: an existing collection gets the ones it lacks (idempotent).
    store.add_payload_indexes(INDEXED_PAYLOAD)
    opts = options or IngestOptions()
    with writer_store(store, encoder, opts.writer_process) as target:
        return _Pipeline(encoder, target, opts).run(items, total_files)


class _Pipeline(ReadStage, EncodeStage, WriteStage):
    """Reader thread -> this thread (encoder) -> writer thread, with bounded queues.

    The stages' methods live in ``jina_vdb.pipeline``; this class sets up their shared
    state and runs them.
    """

    def __init__(self, encoder: Encoder, store: VectorStore, opts: IngestOptions) -> None:
        self.encoder, self.store, self.opts = encoder, store, opts
        self.stop = threading.Event()
        self.store_lock = threading.Lock()  # one store call at a time (embedded stores)
        self.loaded: queue.Queue[Any] = queue.Queue(maxsize=opts.read_ahead)
        self.encoded: queue.Queue[Any] = queue.Queue(maxsize=2)
        # Loaded content not yet encoded (decoded images, rendered pages, texts), in bytes.
        self.budget = ByteBudget(opts.max_inflight_bytes)
        self.ledger = SourceLedger()
        self.errors: list[BaseException] = []
        self.tally: Tally
        self.pool = pool_for(encoder, opts.preprocess_workers, opts.max_pixels)
        # The reader's output, in order; image loads run ahead in the pool (if any).
        depth = max(2 * self.pool.workers, opts.image_batch) if self.pool else 0
        self.ahead = Ahead(self._deliver, depth, self.stop)

    # -- driver ------------------------------------------------------------------------
    def run(self, items: Iterable[Any], total_files: int | None = None) -> IngestSummary:
        self.tally = Tally(
            self.opts.progress, logger, total_files=total_files, log_every=self.opts.log_every
        )
        listener, self.store.maintenance_listener = (
            self.store.maintenance_listener,
            self.tally.maintenance,
        )
        reader = threading.Thread(target=self._guard, args=(self._read, iter(items)), daemon=True)
        writer = threading.Thread(target=self._guard, args=(self._write,), daemon=True)
        reader.start()
        writer.start()
        try:
            try:
                self._guard(self._encode_loop)
            except BaseException:  # KeyboardInterrupt: stop now; queued batches still written
                self.stop.set()
                writer.join()
                self._leave_reader(reader)
                raise
            finally:
                if self.pool is not None:
                    self.pool.close()  # nothing to preprocess any more, whatever happened
            writer.join()
            reader.join()
            if not self.errors:
                self._guard(self._sync)  # stale records go once the new ones are written
            if not self.stop.is_set():
                # The last index build, inside the run: timed and shown, not a pause at close.
                self._guard(self._flush)
        finally:
            self.store.maintenance_listener = listener
            summary = self.tally.close()
        if self.errors:
            raise self.errors[0]
        for line in summary.lines():
            logger.info("%s", line)
        return summary

    def _flush(self) -> None:
        with self.store_lock:
            self.store.flush()

    def _leave_reader(self, reader: threading.Thread) -> None:
        """Wait briefly for the reader; one stuck in a slow load is left behind, store-less."""
        reader.join(_READER_GRACE_S)
        if reader.is_alive():
            logger.warning("stopped while a source was still loading; it is left unfinished")
        with self.store_lock:  # the reader checks ``stop`` under this lock before any call
            pass

    def _sync(self) -> None:
        if self.opts.sync_sources:
            deleted = delete_stale(self.store, self.ledger, self.store_lock)
            self.tally.add("stale_deleted", deleted)
        if self.opts.prune_under:
            pruned = prune_vanished(self.store, self.ledger, self.opts.prune_under, self.store_lock)
            self.tally.add("pruned", pruned)

    def _guard(self, stage: Any, *args: Any) -> None:
        try:
            stage(*args)
        except Stopped:
            pass
        except Exception as e:
            self.errors.append(e)  # list.append is atomic
            self.stop.set()

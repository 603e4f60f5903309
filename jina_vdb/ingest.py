"""The ingestion pipeline: items -> (skip unchanged) -> encoder -> records -> store, overlapped.

    summary = ingest(iter_items(paths, tokenizer=model.tokenizer), model, store)

Three stages run at once, joined by bounded queues (back-pressure keeps memory flat):

- a **reader** thread pulls items, asks the store which ids it already holds with the same
  payload (before anything is decoded or encoded), and loads the rest (decodes images,
  renders PDF pages); what it loads is bounded in bytes (``flow.ByteBudget``), not counts;
- the **calling** thread encodes batches (this is where the GPU works);
- a **writer** thread turns each batch into records and upserts them.

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

import contextlib
import functools
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from connectors.base import VectorStore
from connectors.errors import RecordError
from connectors.records import Record, records_from_batch

from .errors import Failure, Ignored, IngestError
from .flow import ByteBudget, Stopped, content_bytes, wait_put
from .ingest_types import Encoder, IngestOptions, IngestSummary, Tally, failure_of
from .payload import INDEXED_PAYLOAD, item_location
from .preprocess import Ahead, PreprocessPool, pool_for
from .sources.files import Item, Modality
from .sync import SourceLedger, delete_stale, prune_vanished, stored_payloads
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

_END = object()
_FLUSH = object()  # the reader waits for memory: encode what is held now
#: Seconds an interrupted run waits for a reader blocked in a slow load before leaving it.
_READER_GRACE_S = 1.0


@dataclass
class _Loaded:
    item: Any
    content: Any
    file_no: int  # which source file it came from (progress is counted in files)
    nbytes: int  # what its content holds in memory (the byte budget)


@dataclass
class _Event:
    kind: str  # "skipped" | "duplicate" | "failed" | "ignored"
    file_no: int
    failure: Failure | None = None
    ignored: Ignored | None = None


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


def _file_key(entry: Item | Failure | Ignored, previous: str | None) -> str:
    """The file an entry comes from: its payload's source, or a failure's / ignored file's.

    A JSONL line's failure names ``file:line``: it belongs to the file being read.
    """
    if isinstance(entry, Item):
        return str(entry.payload.get("source"))
    source = entry.source
    if previous is not None and source.startswith(previous + ":"):
        return previous
    return re.sub(r":\d+$", "", source)  # a JSONL file whose first line failed


def is_item_fault(error: BaseException) -> bool:
    """A bad input (ValueError / TypeError: e.g. ``embedder.InputError``), not a broken encoder."""
    return isinstance(error, ValueError | TypeError)


class _Pipeline:
    """Reader thread -> this thread (encoder) -> writer thread, with bounded queues."""

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

    def _put(self, q: queue.Queue[Any], value: Any) -> None:
        wait_put(q, value, self.stop)

    # -- reader thread -------------------------------------------------------------------
    def _read(self, items: Any) -> None:
        pending: list[tuple[Any, int]] = []
        seen: dict[Any, Any] = {}  # id -> the payload of its first item (a shared dict)
        file_key, file_no = None, -1
        for item in items:
            if self.stop.is_set():
                raise Stopped
            key = _file_key(item, file_key)
            if key != file_key:  # sources yield a file's entries together
                if file_no >= 0:
                    self.tally.close_file(file_no)
                file_key, file_no = key, file_no + 1
            self.tally.expect(file_no)
            if isinstance(item, Ignored):
                self.ahead.emit(_Event("ignored", file_no, ignored=item))
            elif isinstance(item, Failure):
                self.ledger.fail(item.source)
                self.ahead.emit(_Event("failed", file_no, item))
            elif item.id in seen:
                first = item_location(seen[item.id])
                repeat = Failure(
                    item_location(item.payload),
                    f"id {item.id!r} is already used by {first}; only the first is ingested",
                    item.id,
                )
                self.ahead.emit(_Event("duplicate", file_no, failure=repeat))
            else:
                seen[item.id] = item.payload
                self.ledger.add(item)
                pending.append((item, file_no))
                if len(pending) >= self.opts.check_batch:
                    self._check_and_load(pending)
                    pending = []
        self._check_and_load(pending)
        self.ahead.drain()
        if file_no >= 0:
            self.tally.close_file(file_no)
        self._put(self.loaded, _END)

    def _check_and_load(self, pending: list[tuple[Any, int]]) -> None:
        stored: dict[Any, Any] = {}
        refused: dict[Any, Exception] = {}
        if pending and self.opts.skip_existing:
            with self.tally.clock("read"), self.store_lock:
                if self.stop.is_set():
                    raise Stopped
                stored, refused = stored_payloads(self.store, [it.id for it, _ in pending])
        for item, file_no in pending:
            if item.id in refused:  # an id this store cannot hold: that item fails alone
                self.ahead.emit(_Event("failed", file_no, failure_of(item, refused[item.id])))
                continue
            if item.id in stored and stored[item.id] == item.payload:
                self.ahead.emit(_Event("skipped", file_no))
                continue
            updated = item.id in stored  # same id, changed content or payload: replaced
            if self._in_pool(item):
                finish = functools.partial(self._loaded_in_pool, item, file_no, updated)
                self.ahead.emit_load(self.pool.submit(item), finish)  # type: ignore[union-attr]
                continue
            self.ahead.emit(self._load_here(item, file_no, updated))

    def _in_pool(self, item: Item) -> bool:
        return self.pool is not None and item.modality is not Modality.TEXT and self.pool.ready()

    def _loaded_in_pool(self, item: Item, file_no: int, updated: bool, future: Any) -> Any:
        try:
            content = PreprocessPool.result(future)
        except BrokenProcessPool as e:  # a worker died: this item and the rest load here
            self.pool.broken(e)  # type: ignore[union-attr]
            return self._load_here(item, file_no, updated)
        except Exception as e:
            return _Event("failed", file_no, failure_of(item, e))
        return self._loaded(item, content, file_no, updated)

    def _load_here(self, item: Item, file_no: int, updated: bool) -> Any:
        try:
            with self.tally.clock("read"):
                content = item.load()
        except Exception as e:
            return _Event("failed", file_no, failure_of(item, e))
        return self._loaded(item, content, file_no, updated)

    def _loaded(self, item: Item, content: Any, file_no: int, updated: bool) -> _Loaded:
        if updated:
            self.tally.add("updated")
        return _Loaded(item, content, file_no, content_bytes(content))

    def _deliver(self, message: Any) -> None:
        """To the encoder, in input order; loaded content first takes its bytes (which
        blocks while the encoder holds too much)."""
        if isinstance(message, _Loaded):
            self.budget.take(message.nbytes, self.stop)
        self._put(self.loaded, message)

    # -- encoder (calling thread) -----------------------------------------------------------
    def _encode_loop(self) -> None:
        texts: list[_Loaded] = []
        images: list[_Loaded] = []
        text_tokens = 0
        while True:
            msg = self._next_loaded()
            if msg is _END:
                break
            if msg is _FLUSH:
                if texts:
                    self._encode(texts, text=True)
                    texts, text_tokens = [], 0
                if images:
                    self._encode(images, text=False)
                    images = []
                continue
            if isinstance(msg, _Event):
                self._on_event(msg)
                continue
            if msg.item.modality is Modality.TEXT:
                texts.append(msg)
                text_tokens += int(msg.item.cost)
            else:
                images.append(msg)
            if len(texts) >= self.opts.text_batch or text_tokens >= self.opts.text_batch_tokens:
                self._encode(texts, text=True)
                texts, text_tokens = [], 0
            if len(images) >= self.opts.image_batch:
                self._encode(images, text=False)
                images = []
        if texts:
            self._encode(texts, text=True)
        if images:
            self._encode(images, text=False)
        self._put(self.encoded, _END)

    def _next_loaded(self) -> Any:
        try:
            return self.loaded.get_nowait()
        except queue.Empty:
            pass
        with self.tally.clock("wait_read"):  # the encoder idles: the reader is behind
            while not self.stop.is_set():
                try:
                    return self.loaded.get(timeout=0.1)
                except queue.Empty:
                    if self.budget.starved:
                        return _FLUSH
        raise Stopped

    def _on_event(self, event: _Event) -> None:
        if event.kind == "duplicate" and event.failure is not None:
            logger.warning("duplicate %s: %s", event.failure.source, event.failure.reason)
            self.tally.duplicate(event.failure, event.file_no)
        elif event.failure is not None:
            self._fail(event.failure, event.file_no)
        elif event.ignored is not None:
            logger.debug("ignored %s: %s", event.ignored.source, event.ignored.reason)
            self.tally.ignore(event.ignored, event.file_no)
        else:
            self.tally.add("skipped", done=(event.file_no,))

    def _fail(self, failure: Failure, file_no: int) -> None:
        report_failure(failure, file_no, self.ledger, self.tally, strict=self.opts.strict)

    def _encode(self, batch: list[_Loaded], *, text: bool) -> None:
        try:
            with self.tally.clock("encode"):
                out = self._call_encoder(batch, text=text)
        except Exception as e:
            if len(batch) == 1:
                self._fail(failure_of(batch[0].item, e), batch[0].file_no)
            else:
                logger.info(
                    "a batch of %d failed to encode (%s); retrying one by one", len(batch), e
                )
                self._encode_one_by_one(batch, text=text, batch_error=e)
        else:
            self._count_encoded(batch, text=text)
            with self.tally.clock("wait_write"):  # blocked when the writer is behind
                self._put(self.encoded, (batch, out))
        finally:
            self.budget.give(sum(m.nbytes for m in batch))

    def _count_encoded(self, batch: list[_Loaded], *, text: bool) -> None:
        """Tokens / images encoded (only what the encoder returned vectors for)."""
        if text:
            self.tally.add("tokens", sum(int(m.item.cost) for m in batch))
        else:
            self.tally.add("pages", len(batch))

    def _encode_one_by_one(
        self, batch: list[_Loaded], *, text: bool, batch_error: Exception
    ) -> None:
        failures, broken = [], 0
        for m in batch:
            try:
                out = self._call_encoder([m], text=text)
            except Exception as e:
                failures.append((failure_of(m.item, e), m.file_no))
                broken += not is_item_fault(e)
                continue
            self._count_encoded([m], text=text)
            self._put(self.encoded, ([m], out))
        if broken == len(batch):
            # Every item failing alone, none for its input, means the encoder is broken:
            # stop, rather than report each item (bad inputs are reported one by one).
            raise IngestError(
                f"the encoder failed on every item of a batch of {len(batch)}: {batch_error}"
            ) from batch_error
        for failure, file_no in failures:
            self._fail(failure, file_no)

    def _call_encoder(self, batch: list[_Loaded], *, text: bool) -> Any:
        return call_encoder(
            self.encoder,
            [m.item for m in batch],
            [m.content for m in batch],
            text=text,
            multivector=self.store.spec.multivector,
            options=self.opts,
        )

    # -- writer thread ---------------------------------------------------------------------
    def _write(self) -> None:
        while True:
            try:
                msg = self.encoded.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    raise Stopped from None
                continue
            if msg is _END:
                return
            loaded, batch = msg
            items = [m.item for m in loaded]
            records = records_from_batch(
                batch, [it.id for it in items], [it.payload for it in items]
            )
            step = self.opts.write_batch
            for lo in range(0, len(records), step):
                self._write_slice(loaded[lo : lo + step], records[lo : lo + step])

    def _write_slice(self, loaded: Sequence[_Loaded], records: Sequence[Record]) -> None:
        # Small upsert calls: a DB binding may hold the GIL for a whole call, stalling the encoder.
        with self.tally.clock("write"):
            written = upsert_or_isolate(
                self.store,
                records,
                self.store_lock,
                lambda i, e: self._fail(failure_of(loaded[i].item, e), loaded[i].file_no),
            )
            done = [loaded[i].file_no for i in written]
        total = self.tally.add("added", len(written), done=done)
        logger.debug("upserted %d records (%d so far)", len(written), total)


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

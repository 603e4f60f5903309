"""The ingestion pipeline: items -> (skip stored) -> encoder -> records -> store, overlapped.

    summary = ingest(iter_items(paths, tokenizer=model.tokenizer), model, store)

Three stages run at once, joined by bounded queues (back-pressure keeps memory flat):

- a **reader** thread pulls items, asks the store which ids it already holds (before
  anything is decoded or encoded), and loads the rest (decodes images, renders PDF pages);
- the **calling** thread encodes batches (this is where the GPU works);
- a **writer** thread turns each batch into records and upserts them.

Resumable by construction: ids are stable and upserts idempotent, and an item counts as
done only once the store returns it. Kill the process at any point and run it again: the
items already written are skipped, the others are written, none twice.

No torch and no PIL here: items and the encoder are duck-typed (``connectors.ingest_types``);
the embedder side provides them (``embedder.sources``, ``embedder.JinaV4Embedder``).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import VectorStore
from connectors.errors import RecordError
from connectors.records import Record, records_from_batch

from .ingest_types import (
    Encoder,
    Failure,
    Ignored,
    IngestError,
    IngestItem,
    IngestOptions,
    IngestSummary,
    SourceFailure,
    Tally,
    failure_of,
    item_location,
)

__all__ = [
    "Encoder",
    "Failure",
    "Ignored",
    "IngestError",
    "IngestItem",
    "IngestOptions",
    "IngestSummary",
    "SourceFailure",
    "failure_of",
    "ingest",
]

logger = logging.getLogger(__name__)

_END = object()


class _Stopped(Exception):
    """Another stage failed; this one gives up quietly."""


@dataclass
class _Loaded:
    item: Any
    content: Any
    file_no: int  # which source file it came from (progress is counted in files)


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
        items: ``IngestItem``s, ``SourceFailure``s and ``Ignored`` files
            (``jina_vdb.sources.iter_items``).
        encoder: has ``encode_text`` / ``encode_image`` returning ``.dense`` and ``.multivectors``.
        store: the collection to write to (its spec decides whether token vectors are kept).
        options: batching, strictness and progress settings.
        total_files: how many files ``items`` come from (``jina_vdb.sources.count_files``):
            the progress bar's total and ETA.

    Returns:
        The summary: added, skipped (already present), duplicates, failures with reasons.

    Raises:
        IngestError: in strict mode, on the first failure (items written before it stay).
    """
    return _Pipeline(encoder, store, options or IngestOptions()).run(items, total_files)


def _wait_put(q: queue.Queue[Any], value: Any, stop: threading.Event) -> None:
    """Put with back-pressure, giving up (``_Stopped``) when another stage has failed."""
    while not stop.is_set():
        try:
            q.put(value, timeout=0.1)
            return
        except queue.Full:
            continue
    raise _Stopped


def _file_key(entry: Any, previous: str | None) -> str:
    """The file an entry comes from: its payload's source, or a failure's / ignored file's.

    A JSONL line's failure names ``file:line``: it belongs to the file being read.
    """
    payload = getattr(entry, "payload", None)
    if payload:
        return str(payload.get("source"))
    source = str(getattr(entry, "source", ""))
    if previous is not None and source.startswith(previous + ":"):
        return previous
    return re.sub(r":\d+$", "", source)  # a JSONL file whose first line failed


def _is_text(item: Any) -> bool:
    return str(getattr(item.modality, "value", item.modality)) == "text"


class _Pipeline:
    """Reader thread -> this thread (encoder) -> writer thread, with bounded queues."""

    def __init__(self, encoder: Encoder, store: VectorStore, opts: IngestOptions) -> None:
        self.encoder, self.store, self.opts = encoder, store, opts
        self.stop = threading.Event()
        self.store_lock = threading.Lock()  # one store call at a time (embedded stores)
        self.loaded: queue.Queue[Any] = queue.Queue(maxsize=opts.read_ahead)
        self.encoded: queue.Queue[Any] = queue.Queue(maxsize=2)
        # Decoded images / rendered pages not yet encoded: memory bound (> one batch, no deadlock).
        self.image_slots = threading.Semaphore(2 * opts.image_batch)
        self.errors: list[BaseException] = []
        self.tally: Tally

    # -- driver ------------------------------------------------------------------------
    def run(self, items: Iterable[Any], total_files: int | None = None) -> IngestSummary:
        self.tally = Tally(
            self.opts.progress, logger, total_files=total_files, log_every=self.opts.log_every
        )
        listener, self.store.maintenance_listener = (
            self.store.maintenance_listener,
            self.tally.maintenance,
        )
        threads = [
            threading.Thread(target=self._guard, args=(self._read, iter(items)), daemon=True),
            threading.Thread(target=self._guard, args=(self._write,), daemon=True),
        ]
        for t in threads:
            t.start()
        try:
            self._guard(self._encode_loop)
        except BaseException:  # KeyboardInterrupt: stop reading; queued batches still get written
            self.stop.set()
            raise
        finally:
            for t in threads:
                t.join()
            if not self.stop.is_set():
                # The last index build, inside the run: timed and shown, not a pause at close.
                self._guard(self._flush)
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

    def _guard(self, stage: Any, *args: Any) -> None:
        try:
            stage(*args)
        except _Stopped:
            pass
        except Exception as e:
            self.errors.append(e)  # list.append is atomic
            self.stop.set()

    def _put(self, q: queue.Queue[Any], value: Any) -> None:
        _wait_put(q, value, self.stop)

    # -- reader thread -------------------------------------------------------------------
    def _read(self, items: Any) -> None:
        pending: list[tuple[Any, int]] = []
        seen: dict[Any, Any] = {}  # id -> the payload of its first item (a shared dict)
        file_key, file_no = None, -1
        for item in items:
            if self.stop.is_set():
                raise _Stopped
            key = _file_key(item, file_key)
            if key != file_key:  # sources yield a file's entries together
                if file_no >= 0:
                    self.tally.close_file(file_no)
                file_key, file_no = key, file_no + 1
            self.tally.expect(file_no)
            if isinstance(item, Ignored):
                self._put(self.loaded, _Event("ignored", file_no, ignored=item))
            elif isinstance(item, SourceFailure) and not hasattr(item, "load"):
                failure = Failure(item.source, item.reason)
                self._put(self.loaded, _Event("failed", file_no, failure))
            elif item.id in seen:
                first = item_location(seen[item.id])
                repeat = Failure(
                    item_location(item.payload),
                    f"id {item.id!r} is already used by {first}; only the first is ingested",
                    item.id,
                )
                self._put(self.loaded, _Event("duplicate", file_no, failure=repeat))
            else:
                seen[item.id] = item.payload
                pending.append((item, file_no))
                if len(pending) >= self.opts.check_batch:
                    self._check_and_load(pending)
                    pending = []
        self._check_and_load(pending)
        if file_no >= 0:
            self.tally.close_file(file_no)
        self._put(self.loaded, _END)

    def _check_and_load(self, pending: list[tuple[Any, int]]) -> None:
        present: set[Any] = set()
        if pending and self.opts.skip_existing:
            with self.tally.clock("read"), self.store_lock:
                present = {r.id for r in self.store.get([it.id for it, _ in pending])}
        for item, file_no in pending:
            if item.id in present:
                self._put(self.loaded, _Event("skipped", file_no))
                continue
            is_image = not _is_text(item)
            while is_image and not self.image_slots.acquire(timeout=0.1):
                if self.stop.is_set():
                    raise _Stopped
            try:
                with self.tally.clock("read"):
                    content = item.load()
            except Exception as e:
                if is_image:
                    self.image_slots.release()
                self._put(self.loaded, _Event("failed", file_no, failure_of(item, e)))
                continue
            self._put(self.loaded, _Loaded(item, content, file_no))

    # -- encoder (calling thread) -----------------------------------------------------------
    def _encode_loop(self) -> None:
        texts: list[_Loaded] = []
        images: list[_Loaded] = []
        text_tokens = 0
        while True:
            msg = self._next_loaded()
            if msg is _END:
                break
            if isinstance(msg, _Event):
                self._on_event(msg)
                continue
            if _is_text(msg.item):
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
                    continue
        raise _Stopped

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
        if self.opts.strict:
            raise IngestError(f"{failure.source}: {failure.reason}")
        logger.warning("skipped %s: %s", failure.source, failure.reason)
        self.tally.fail(failure, file_no)

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
            if not text:
                for _ in batch:
                    self.image_slots.release()

    def _count_encoded(self, batch: list[_Loaded], *, text: bool) -> None:
        """Tokens / images encoded (only what the encoder returned vectors for)."""
        if text:
            self.tally.add("tokens", sum(int(m.item.cost) for m in batch))
        else:
            self.tally.add("pages", len(batch))

    def _encode_one_by_one(
        self, batch: list[_Loaded], *, text: bool, batch_error: Exception
    ) -> None:
        failures = []
        for m in batch:
            try:
                out = self._call_encoder([m], text=text)
            except Exception as e:
                failures.append((failure_of(m.item, e), m.file_no))
                continue
            self._count_encoded([m], text=text)
            self._put(self.encoded, ([m], out))
        if len(failures) == len(batch):
            # Every item failing alone means the encoder is broken: stop, don't list them all.
            raise IngestError(
                f"the encoder failed on every item of a batch of {len(batch)}: {batch_error}"
            ) from batch_error
        for failure, file_no in failures:
            self._fail(failure, file_no)

    def _call_encoder(self, batch: list[_Loaded], *, text: bool) -> Any:
        tasks = [m.item.task for m in batch]
        task: Any = tasks[0] if len(set(tasks)) == 1 else tasks
        contents = [m.content for m in batch]
        common = {"task": task, "multivector": self.store.spec.multivector, "show_progress": False}
        if text:
            return self.encoder.encode_text(
                contents, prompt_name="passage", max_length=self.opts.max_length, **common
            )
        if self.opts.max_pixels is not None:
            common["max_pixels"] = self.opts.max_pixels
        return self.encoder.encode_image(contents, **common)

    # -- writer thread ---------------------------------------------------------------------
    def _write(self) -> None:
        while True:
            try:
                msg = self.encoded.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    raise _Stopped from None
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
            try:
                with self.store_lock:
                    written = self.store.upsert(records)
                done = [m.file_no for m in loaded]
            except RecordError:
                done = self._write_one_by_one(loaded, records)
                written = len(done)
        total = self.tally.add("added", written, done=done)
        logger.debug("upserted %d records (%d so far)", written, total)

    def _write_one_by_one(self, loaded: Sequence[_Loaded], records: Sequence[Record]) -> list[int]:
        """Upsert record by record; the file numbers of those written (failures reported)."""
        done = []
        for m, record in zip(loaded, records, strict=True):
            try:
                with self.store_lock:
                    self.store.upsert([record])
            except RecordError as e:
                self._fail(failure_of(m.item, e), m.file_no)
            else:
                done.append(m.file_no)
        return done

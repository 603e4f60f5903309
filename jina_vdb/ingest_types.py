"""The ingestion pipeline's data types: options, the encoder it needs, the summary.

Items are ``jina_vdb.sources.Item``; failures and ignored files ``jina_vdb.errors.Failure``
and ``Ignored``. The encoder is a protocol (``embedder.JinaV4Embedder`` satisfies it) so
that importing the pipeline loads no torch. ``Tally`` keeps the counts, per-stage clocks
and progress that the pipeline's threads share.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from embedder.options import DEFAULT_MAX_LENGTH

from .errors import Failure, Ignored
from .flow import DEFAULT_INFLIGHT_BYTES
from .payload import item_location
from .progress import FileProgress

#: Duplicate ids listed in a summary without ``verbose``.
_LISTED = 10


class Encoder(Protocol):
    """What the pipeline needs from ``embedder.JinaV4Embedder``.

    Called as ``encode_text(texts, task=, prompt_name="passage", multivector=, max_length=,
    show_progress=False)`` and ``encode_image(images, task=, multivector=, show_progress=False
    [, max_pixels=])``; ``task`` is one str or one per item.
    """

    def encode_text(
        self, texts: list[str], *, task: Any, prompt_name: str = ..., **kw: Any
    ) -> Any: ...

    def encode_image(self, images: list[Any], *, task: Any, **kw: Any) -> Any: ...


@dataclass
class IngestSummary:
    """What an ingest did. ``skipped`` counts items already stored with the same payload."""

    added: int = 0
    updated: int = 0  # of ``added``: ids already stored with another payload, re-encoded
    skipped: int = 0
    duplicates: int = 0  # the same id twice in the input: ingested once
    stale_deleted: int = 0  # records of an ingested source that it no longer gives
    pruned: int = 0  # records of sources that no longer exist (``prune_under``)
    failed: list[Failure] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    #: Where each repeated id was met, and which item had it first.
    duplicated: list[Failure] = field(default_factory=list)
    tokens: int = 0
    pages: int = 0
    seconds: float = 0.0
    #: Busy time per stage: "read" (existence checks + decoding/rendering), "encode", "write";
    #: the encoder's idle time: "wait_read" (reader behind), "wait_write" (writer behind); and
    #: the store's maintenance ("optimize", "flush": index builds during "write" and the last
    #: ones after it), when it reports any. A Ray ingest (``jina_vdb.distributed``) adds the
    #: wall time of its passes, "listing" and "encoding"; its "encode" sums the workers' time.
    stage_seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(
            ("read", "encode", "write", "wait_read", "wait_write"), 0.0
        )
    )

    def lines(self, *, verbose: bool = False) -> list[str]:
        """Human-readable summary lines (the CLI prints them); ``verbose`` lists ignored files."""
        rate = (self.added / self.seconds) if self.seconds else 0.0
        dupes = f", duplicates in input {self.duplicates}" if self.duplicates else ""
        updated = f" ({self.updated} replaced changed records)" if self.updated else ""
        removed = f", deleted {self.stale_deleted} stale" if self.stale_deleted else ""
        removed += f", pruned {self.pruned}" if self.pruned else ""
        head = (
            f"added {self.added}{updated}, skipped {self.skipped} (unchanged){removed}, "
            f"failed {len(self.failed)}, ignored {len(self.ignored)}{dupes} "
            f"in {self.seconds:.1f}s ({rate:.1f} items/s; "
            f"{self.tokens} tokens, {self.pages} images/pages encoded)"
        )
        clocks = ", ".join(f"{k} {v:.1f}s" for k, v in self.stage_seconds.items() if v >= 0.05)
        timings = [f"  timings: {clocks}"] if clocks else []
        lines = [head, *timings] + [f"  failed: {f.source}: {f.reason}" for f in self.failed]
        shown = self.duplicated if verbose else self.duplicated[:_LISTED]
        lines += [f"  duplicate: {d.source}: {d.reason}" for d in shown]
        if len(shown) < len(self.duplicated):
            more = len(self.duplicated) - len(shown)
            lines.append(f"  duplicate: ... and {more} more (--verbose lists them)")
        if self.ignored:
            reasons = Counter(i.reason for i in self.ignored)
            lines.append(
                "  ignored: " + ", ".join(f"{n} ({why})" for why, n in reasons.most_common())
            )
            if verbose:
                lines += [f"  ignored: {i.source}: {i.reason}" for i in self.ignored]
        return lines


@dataclass(frozen=True)
class IngestOptions:
    """Batching and behaviour of :func:`ingest`.

    Attributes:
        text_batch: most texts per encode call.
        text_batch_tokens: a text batch is also sent once it holds this many tokens (the
            encoder sub-batches by its own token budget; a call should fill a GPU forward).
        image_batch: images (pages) per encode call.
        check_batch: ids per existence check (``store.get``).
        write_batch: records per ``store.upsert`` call. Small calls keep the encoder busy:
            some database bindings hold the GIL for a whole call.
        queue_size: items the reader may load ahead of the encoder; None: two full batches
            of each kind, so reading a batch always overlaps encoding the previous one.
        max_inflight_bytes: loaded content (decoded images, rendered pages, texts) not yet
            encoded is bounded in bytes: counts say nothing of size (one 9000x9000 image
            weighs 243 MB). An item bigger than this still passes alone.
        max_length: token limit per text passed to ``encode_text``.
        max_pixels: per-image pixel budget passed to ``encode_image`` (None: the model's).
        strict: stop at the first failure (raise IngestError) instead of skipping it.
        skip_existing: skip ids the store already holds with the same payload (content hash
            included); a changed one is re-encoded. False: encode and overwrite everything.
        sync_sources: after a complete run, delete each ingested source's records that it
            no longer gives (an edited file's old chunks), written before being deleted.
            A source with a failure in the run keeps its old records.
        prune_under: folders (or files) whose vanished sources' records are deleted after
            a complete run (``payload["source"]`` under one of them, no longer on disk).
        progress: tqdm bar (in files, with a total when ``ingest`` is told it); None follows
            the log level (shown when INFO is enabled).
        log_every: seconds between one-line progress logs on the ``jina_vdb.progress``
            logger, for logs that are not a terminal (None: none; 0: one per file).
        writer_process: write an embedded qdrant-edge store from a child process, so that
            turning vectors into the binding's Python lists does not hold the encoder's GIL
            (``connectors.store_process``). None: when the encoder runs on CUDA (on CPU the
            encoder's own work releases the GIL and the child would only cost its start-up);
            True with another store is refused. During the run the store is closed here and
            open in the child (reopened when it ends): do not use it from other threads.
        preprocess_workers: processes that decode images, render PDF pages and resize +
            normalise them ahead of the encoder, in input order (``jina_vdb.preprocess``);
            0: in the reader thread. None: min(8, cores - 2) when the encoder runs on CUDA
            (0 if that is under 2), else 0 (on CPU the encoder's threads use every core);
            the default's workers start in the background (images load in-process until
            they are up), an explicit count is waited for.
    """

    text_batch: int = 512
    text_batch_tokens: int = 65536
    image_batch: int = 32
    check_batch: int = 128
    write_batch: int = 64
    queue_size: int | None = None
    max_length: int = DEFAULT_MAX_LENGTH
    max_pixels: int | None = None
    max_inflight_bytes: int = DEFAULT_INFLIGHT_BYTES
    strict: bool = False
    skip_existing: bool = True
    sync_sources: bool = True
    prune_under: tuple[str, ...] = ()
    progress: bool | None = None
    log_every: float | None = None
    writer_process: bool | None = None
    preprocess_workers: int | None = None

    def __post_init__(self) -> None:
        if self.log_every is not None and not self.log_every >= 0:
            raise ValueError(f"log_every must be >= 0 seconds or None, got {self.log_every!r}")
        for name in (
            "text_batch",
            "text_batch_tokens",
            "image_batch",
            "check_batch",
            "write_batch",
            "queue_size",
            "max_length",
            "max_inflight_bytes",
        ):
            value = getattr(self, name)
            if value is None and name == "queue_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        workers = self.preprocess_workers
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
        ):
            raise ValueError(f"preprocess_workers must be an int >= 0 or None, got {workers!r}")

    @property
    def read_ahead(self) -> int:
        """The loaded-items queue bound (``queue_size``, or two batches of each kind)."""
        return (
            self.queue_size
            if self.queue_size is not None
            else 2 * (self.text_batch + self.image_batch)
        )


class Identified(Protocol):
    """What a failure needs of an item: its id and payload (an ``Item``, or a written row's)."""

    @property
    def id(self) -> Any: ...

    @property
    def payload(self) -> Any: ...


def failure_of(item: Identified, error: BaseException | str) -> Failure:
    """A Failure for an item (where it came from, from its payload) and an error."""
    reason = error if isinstance(error, str) else (str(error) or type(error).__name__)
    return Failure(
        source=item_location(item.payload, item.id), reason=_unprefixed(reason, error), id=item.id
    )


def _unprefixed(reason: str, error: BaseException | str) -> str:
    """The reason without "item 3: " / "record 0 id='…': ": a position inside an encoder or
    upsert call means nothing to a user; the failure's location names the file and line."""
    index = getattr(error, "index", None)
    if not isinstance(index, int):
        return reason
    record_id = getattr(error, "record_id", None)
    for prefix in (
        f"item {index}: ",
        f"record {index}: ",
        f"record {index} id={record_id!r}: ",
    ):
        if reason.startswith(prefix):
            return reason[len(prefix) :]
    return reason


class Tally:
    """Thread-safe counts behind an IngestSummary, per-stage clocks, and progress in files.

    Args:
        progress: show a bar; None follows ``logger``'s level (shown when INFO is enabled).
        logger: the logger whose level decides when ``progress`` is None.
        total_files: files to ingest, for the bar's total and ETA (None: unknown).
        log_every: seconds between one-line progress logs (None: none).
    """

    def __init__(
        self,
        progress: bool | None,
        logger: logging.Logger,
        *,
        total_files: int | None = None,
        log_every: float | None = None,
    ) -> None:
        self.summary = IngestSummary()
        self._lock = threading.Lock()
        self._started = time.perf_counter()
        enabled = logger.isEnabledFor(logging.INFO) if progress is None else progress
        self.files = FileProgress(total_files, bar=enabled, log_every=log_every)

    def expect(self, file_no: int) -> None:
        """The reader met one more entry of file ``file_no`` (see ``FileProgress``)."""
        with self._lock:
            self.files.expect(file_no)

    def close_file(self, file_no: int) -> None:
        """The reader has read all of file ``file_no``."""
        with self._lock:
            if self.files.close(file_no):
                self._show()

    def add(self, name: str, n: int = 1, *, done: Sequence[int] = ()) -> int:
        """Add ``n`` to the summary's counter ``name``; ``done``: file numbers of items done."""
        with self._lock:
            value = getattr(self.summary, name) + n
            setattr(self.summary, name, value)
            self._advance(done)
        return value

    def fail(self, failure: Failure, file_no: int | None = None) -> None:
        """Record a failed item (it counts as done)."""
        with self._lock:
            self.summary.failed.append(failure)
            self._advance(() if file_no is None else (file_no,))

    def duplicate(self, repeat: Failure, file_no: int) -> None:
        """Record an id met again in the input (it counts as done)."""
        with self._lock:
            self.summary.duplicates += 1
            self.summary.duplicated.append(repeat)
            self._advance((file_no,))

    def ignore(self, ignored: Ignored, file_no: int) -> None:
        """Record a file left out on purpose."""
        with self._lock:
            self.summary.ignored.append(ignored)
            self._advance((file_no,))

    def _advance(self, done: Sequence[int]) -> None:  # with the lock held
        for file_no in done:
            self.files.done(file_no)
        if done:
            self._show()

    def _show(self) -> None:  # with the lock held
        s = self.summary
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        counts = f"added {s.added}, skipped {s.skipped}, failed {len(s.failed)}"
        rates = f"{s.tokens / elapsed:.0f} tok/s, {s.pages / elapsed:.2f} pages/s"
        self.files.show(counts, rates)

    def maintenance(self, what: str, seconds: float | None) -> None:
        """A store's ``maintenance_listener``: the bar says what pauses the writes, and the
        time goes to ``stage_seconds[what]``."""
        with self._lock:
            if seconds is not None:
                clocks = self.summary.stage_seconds
                clocks[what] = clocks.get(what, 0.0) + seconds
            self.files.status(what, seconds)

    @contextlib.contextmanager
    def clock(self, stage: str) -> Iterator[None]:
        """Add the time spent in the block to ``summary.stage_seconds[stage]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.summary.stage_seconds[stage] += time.perf_counter() - started

    def close(self) -> IngestSummary:
        """Stop the clock and the bar; the final summary."""
        self.summary.seconds = time.perf_counter() - self._started
        self.files.close_bar()
        return self.summary

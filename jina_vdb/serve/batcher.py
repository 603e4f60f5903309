"""Dynamic batching: many requests, one queue, one model worker thread, one forward each time.

A model instance runs one call at a time (its active LoRA task is merged into shared
weights), and a forward over 32 queries costs a GPU little more than one over a single
query. So every request's items go into one bounded queue; a single worker thread takes
the oldest job, waits up to ``max_wait_s`` for company with the same key (modality, task,
prompt, dim, multivector: what one ``encode_*`` call shares), takes every waiting job with
that key up to the token budget, runs one ``encode_*`` call over all their items, and hands
each job its rows. The asyncio event loop only enqueues and awaits a future: it never
waits on the model.

Rows of a batched call are the rows a direct ``encode_*`` call computes, up to padding: the
encoder right-pads each forward to its longest item, and on CPU a row padded to another
width differs in the last bit (max |diff| 6e-8 measured with the tiny model). Rows whose
forward has the same padded width as in the direct call are bit-identical.

A job whose batch fails (one bad image among good ones) is run again alone, so one bad
request never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from embedder.options import PromptName, Task

logger = logging.getLogger(__name__)

Modality = Literal["text", "image"]


@dataclass(frozen=True)
class BatchKey:
    """What the items of one ``encode_*`` call must share."""

    modality: Modality
    task: Task
    prompt: PromptName  # texts only; images carry PASSAGE and ignore it
    dim: int | None  # Matryoshka truncation, None = full
    multivector: bool


@dataclass(frozen=True)
class Rows:
    """One job's share of a batched call (numpy only, in the job's item order)."""

    dense: np.ndarray  # (n, d) float32
    multivectors: list[np.ndarray] | None  # [(t_i, 128)]
    token_counts: np.ndarray  # (n,) int64


class QueueFullError(RuntimeError):
    """The queue holds ``max_queue`` jobs: the caller answers 503 with Retry-After."""

    def __init__(self, depth: int, retry_after_s: int) -> None:
        super().__init__(f"server busy: {depth} requests queued; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class BatcherStoppedError(RuntimeError):
    """The server is shutting down and takes no new work."""


@dataclass
class _Job:
    key: BatchKey
    items: Sequence[Any]  # texts (str) or images (bytes)
    cost: int  # tokens, for the budget
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Rows]
    enqueued: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class BatchStats:
    """What one forward did, for the metrics."""

    requests: int
    items: int
    tokens: int
    seconds: float
    queue_wait_s: float


class Batcher:
    """The queue and its model worker thread.

    Args:
        encoder: A ``JinaV4Embedder`` (anything with ``encode_text`` / ``encode_image``).
        max_queue: Most jobs waiting; beyond it :meth:`submit` raises QueueFullError.
        max_wait_s: How long the worker waits for more jobs with the same key.
        batch_tokens: Token budget of one gathered batch (the encoder splits it further by
            its own ``batch_tokens``); a single job larger than this still runs, alone.
        max_items: Most items in one gathered batch.
        max_length: Texts longer than this many tokens are cut (the encoder's default if None).
        on_batch: Called (on the worker thread) after each forward, e.g. metrics.
    """

    def __init__(
        self,
        encoder: Any,
        *,
        max_queue: int = 256,
        max_wait_s: float = 0.005,
        batch_tokens: int = 8192,
        max_items: int = 256,
        max_length: int | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        if max_queue < 1 or batch_tokens < 1 or max_items < 1 or max_wait_s < 0:
            raise ValueError(
                f"bad batcher settings: max_queue={max_queue}, batch_tokens={batch_tokens}, "
                f"max_items={max_items}, max_wait_s={max_wait_s} (all positive)"
            )
        self._encoder = encoder
        self._max_queue = max_queue
        self._max_wait_s = max_wait_s
        self._batch_tokens = batch_tokens
        self._max_items = max_items
        self._on_batch = on_batch
        self._text_options: dict[str, Any] = (
            {} if max_length is None else {"max_length": max_length}
        )
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="jina-vdb-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        """The worker thread is alive and takes new jobs."""
        return self._thread.is_alive() and not self._stopping

    @property
    def depth(self) -> int:
        """Jobs waiting (not the one running)."""
        return len(self._jobs)

    def stop(self, timeout: float | None = None) -> None:
        """Take no new jobs, finish every queued one, then end the worker thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    async def submit(self, key: BatchKey, items: Sequence[Any], cost: int) -> Rows:
        """Queue one request's items and wait for their rows (raises what the encoder raised)."""
        loop = asyncio.get_running_loop()
        job = _Job(key, items, max(1, cost), loop, loop.create_future())
        with self._cond:
            if self._stopping:
                raise BatcherStoppedError("server is shutting down")
            if len(self._jobs) >= self._max_queue:
                raise QueueFullError(len(self._jobs), retry_after_s=1)
            self._jobs.append(job)
            self._cond.notify_all()
        return await job.future

    # ------------------------------------------------------------------ worker thread

    def _work(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                return
            self._run(batch)

    def _same_key(self, key: BatchKey) -> tuple[int, int]:
        jobs = [j for j in self._jobs if j.key == key]
        return sum(j.cost for j in jobs), sum(len(j.items) for j in jobs)

    def _gather(self) -> list[_Job] | None:
        """The next batch: the oldest job and those sharing its key, after a short wait."""
        with self._cond:
            while not self._jobs:
                if self._stopping:
                    return None
                self._cond.wait()
            key = self._jobs[0].key
            deadline = time.monotonic() + self._max_wait_s
            while not self._stopping:
                tokens, items = self._same_key(key)
                left = deadline - time.monotonic()
                if tokens >= self._batch_tokens or items >= self._max_items or left <= 0:
                    break
                self._cond.wait(left)
            taken: list[_Job] = []
            tokens = items = 0
            for job in list(self._jobs):
                if job.key != key:
                    continue
                over = tokens + job.cost > self._batch_tokens or items + len(job.items) > (
                    self._max_items
                )
                if taken and over:
                    break
                taken.append(job)
                tokens += job.cost
                items += len(job.items)
            for job in taken:
                self._jobs.remove(job)
            return taken

    def _run(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if not j.future.cancelled()]  # clients that went away
        if not live:
            return
        started = time.monotonic()
        try:
            rows = self._encode(live[0].key, [x for j in live for x in j.items])
        except Exception as e:
            if len(live) == 1:
                _deliver(live[0], error=e)
                return
            logger.info("a batch of %d requests failed (%s); running each alone", len(live), e)
            for job in live:
                self._run([job])
            return
        seconds = time.monotonic() - started
        start = 0
        for job in live:
            end = start + len(job.items)
            _deliver(job, rows=_slice(rows, start, end))
            start = end
        if self._on_batch is not None:
            self._on_batch(
                BatchStats(
                    requests=len(live),
                    items=start,
                    tokens=int(rows.token_counts.sum()),
                    seconds=seconds,
                    queue_wait_s=started - min(j.enqueued for j in live),
                )
            )

    def _encode(self, key: BatchKey, items: list[Any]) -> Rows:
        if key.modality == "text":
            out = self._encoder.encode_text(
                items,
                task=key.task,
                prompt_name=key.prompt,
                truncate_dim=key.dim,
                multivector=key.multivector,
                show_progress=False,
                **self._text_options,
            )
        else:
            out = self._encoder.encode_image(
                items,
                task=key.task,
                truncate_dim=key.dim,
                multivector=key.multivector,
                show_progress=False,
            )
        return Rows(out.dense, out.multivectors, out.token_counts)


def _slice(rows: Rows, start: int, end: int) -> Rows:
    multis = rows.multivectors
    return Rows(
        rows.dense[start:end],
        None if multis is None else multis[start:end],
        rows.token_counts[start:end],
    )


def _deliver(job: _Job, *, rows: Rows | None = None, error: BaseException | None = None) -> None:
    """Complete the job's future on its event loop's thread (futures are not thread-safe)."""

    def complete() -> None:
        if job.future.done():  # cancelled meanwhile
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(rows)  # type: ignore[arg-type]

    try:
        job.loop.call_soon_threadsafe(complete)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass

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

Which key goes next: the model holds one LoRA task merged into its weights, and a task
switch re-merges every adapted weight from the base weights kept off the device
(``embedder/lora.py``, ``embedder/base_weights.py``): far more than a forward over a few
queries. So the worker keeps the task it last ran while that task has work waiting: the
oldest waiting job *of the current task* sets the next key (another prompt, modality or
dim of the same task costs no switch), and a job of another task waits until the
current task's queue is empty, or until it has waited ``task_patience_s`` or 9x the last
switching batch's time (``switch_share`` 0.1), whichever is longer: under mixed load at
most ~10 % of the model's time goes to switching batches, and no task starves. With one
task, this is plain oldest-first. Switches are logged at DEBUG and counted in the metrics.

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
    task_switch: bool = False  # the model had another LoRA task merged before this batch


class Batcher:
    """The queue and its model worker thread.

    Args:
        encoder: A ``JinaV4Embedder`` (anything with ``encode_text`` / ``encode_image``).
        max_queue: Most jobs waiting; beyond it :meth:`submit` raises QueueFullError.
        max_wait_s: How long the worker waits for more jobs with the same key.
        task_patience_s: Least time a job of another task waits while the current task
            still has jobs waiting.
        switch_share: Under mixed load, at most about this share of the model's time goes
            to batches that switch task: a job of another task also waits at least
            ``(1 / switch_share - 1)`` times the last switching batch's time (9x at 0.1).
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
        task_patience_s: float = 0.2,
        switch_share: float = 0.1,
        batch_tokens: int = 8192,
        max_items: int = 256,
        max_length: int | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        bad_times = min(max_wait_s, task_patience_s) < 0 or not 0 < switch_share <= 1
        if min(max_queue, batch_tokens, max_items) < 1 or bad_times:
            raise ValueError(
                f"bad batcher settings: max_queue={max_queue}, batch_tokens={batch_tokens}, "
                f"max_items={max_items}, max_wait_s={max_wait_s}, "
                f"task_patience_s={task_patience_s}, switch_share={switch_share} (counts >= 1, "
                "times >= 0, 0 < switch_share <= 1)"
            )
        self._encoder = encoder
        self._max_queue = max_queue
        self._max_wait_s = max_wait_s
        self._task_patience_s = task_patience_s
        self._switch_factor = 1 / switch_share - 1
        self._task: Task | None = None  # the LoRA task of the last batch (worker thread only)
        self._last_switch_s = 0.0  # model time of the last batch that switched task
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

    def _next_key(self) -> BatchKey:
        """The oldest job's key, unless that switches task while the current task has work
        waiting and the oldest job has not yet waited its patience (see the module doc)."""
        oldest = self._jobs[0]
        if self._task is None or oldest.key.task is self._task:
            return oldest.key
        same = next((j for j in self._jobs if j.key.task is self._task), None)
        patience = max(self._task_patience_s, self._switch_factor * self._last_switch_s)
        if same is None or time.monotonic() - oldest.enqueued >= patience:
            return oldest.key
        return same.key

    def _gather(self) -> list[_Job] | None:
        """The next batch: the next key's oldest job and those sharing its key, after a
        short wait for company."""
        with self._cond:
            while not self._jobs:
                if self._stopping:
                    return None
                self._cond.wait()
            key = self._next_key()
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
        key = live[0].key
        switch = self._task is not None and key.task is not self._task
        if switch:
            logger.debug(
                "task switch %s -> %s for %d requests (%d jobs still waiting)",
                self._task.value if self._task else None,
                key.task.value,
                len(live),
                len(self._jobs),
            )
        started = time.monotonic()
        try:
            rows = self._encode(key, [x for j in live for x in j.items])
        except Exception as e:
            self._task = None  # unknown: the encoder may have merged the task, or not
            if len(live) == 1:
                _deliver(live[0], error=e)
                return
            logger.info("a batch of %d requests failed (%s); running each alone", len(live), e)
            for job in live:
                self._run([job])
            return
        seconds = time.monotonic() - started
        self._task = key.task
        if switch:
            self._last_switch_s = seconds
            logger.debug("batch with task switch to %s took %.1f ms", key.task.value, seconds * 1e3)
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
                    task_switch=switch,
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

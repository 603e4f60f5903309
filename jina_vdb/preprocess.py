"""Image items loaded and preprocessed by worker processes, ahead of the encoder, in order.

On a GPU the encoder is starved by CPU work done on its own interpreter: decoding images,
rendering PDF pages (pypdfium2) and the processor's resize + normalise + patchify (tens of
ms per page, much of it holding the GIL). With ``IngestOptions.preprocess_workers`` = N,
the reader hands each image item to a pool of N processes that run ``item.load()`` and
the encoder's own preprocessing (``embedder.prepared``: the same function, so the vectors
are bit-identical), and passes the results on **in input order**: the encoder sees the
same sequence of items, hence the same batches, as without workers.

Workers are spawned (not forked: the caller runs threads), ignore SIGINT (the pipeline
decides what is still written) and are shut down when the run ends, fails or is stopped.
A failed item comes back as its error, re-raised here, so the pipeline names the item
(file, page) as it does for an in-process load. The pool starts on the first image item,
and items are loaded in-process until its workers are up (no stall while they import
torch); if it cannot start, or a worker dies, a WARNING says so and the rest of the run
loads in-process.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.errors import pack_error, unpack_error

from .flow import Stopped

logger = logging.getLogger(__name__)

#: Seconds allowed for the workers to start (spawn + imports of torch/transformers); until
#: they are up, items are loaded in-process.
START_TIMEOUT_S = 300.0
#: Most workers the default starts (decoding a page takes less than a GPU encodes it).
MAX_DEFAULT_WORKERS = 8


def default_workers(encoder: Any) -> int:
    """min(8, cores - 2) when the encoder runs on CUDA and that is >= 2, else 0.

    On CPU the encoder's torch threads already use every core; two cores stay free for
    the encoder's and writer's threads.
    """
    device = getattr(encoder, "device", None)
    if getattr(device, "type", None) != "cuda":
        return 0
    workers = min(MAX_DEFAULT_WORKERS, (os.cpu_count() or 1) - 2)
    return workers if workers >= 2 else 0


@dataclass
class _Failed:
    """An item's load or preprocessing failed in a worker: its error, packed to travel."""

    packed: tuple[Any, ...]


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ready() -> int:
    return os.getpid()


def _load_and_prepare(item: Any, preparer: Callable[[Any], Any] | None) -> Any:
    try:
        content = item.load()
        return content if preparer is None else preparer(content)
    except Exception as e:  # re-raised by the reader, which names the item
        return _Failed(pack_error(e))


class PreprocessPool:
    """Submit image items; take their results back in submission order.

    Args:
        workers: processes (>= 1).
        preparer: the encoder's ``image_preparer(max_pixels)``, or None to load only.
        wait: the first image item waits for the workers to start (an explicit worker
            count); False: items load in-process until they are up (the default count).
    """

    def __init__(
        self, workers: int, preparer: Callable[[Any], Any] | None, *, wait: bool = True
    ) -> None:
        self.workers = workers
        self.wait = wait
        self._preparer = preparer
        self._pool: cf.ProcessPoolExecutor | None = None
        self._failed_start = False
        self._closed = False
        self._starting: list[cf.Future[Any]] = []
        self._started_at = 0.0

    def ready(self) -> bool:
        """Whether items go to the workers now; the first call starts them. Unless
        ``wait``, the reader loads in-process until they are up (spawned, torch imported:
        seconds), so a run does not stall on the pool. A pool that fails to start, or is
        not up after ``START_TIMEOUT_S``, gets a WARNING and the run goes on in-process.

        Raises:
            Stopped: the pool was closed (the run is ending): nothing starts again.
        """
        if self._closed:
            raise Stopped
        if self._failed_start:
            return False
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            try:
                self._pool = cf.ProcessPoolExecutor(
                    self.workers, mp_context=ctx, initializer=_init_worker
                )
                self._starting = [self._pool.submit(_ready) for _ in range(self.workers)]
            except Exception as e:
                self._give_up(e)
                return False
            self._started_at = time.monotonic()
            if not self.wait:
                return False
        if self._starting:
            if self.wait:
                cf.wait(self._starting, timeout=START_TIMEOUT_S)
            if not all(f.done() for f in self._starting):
                if time.monotonic() - self._started_at > START_TIMEOUT_S:
                    self._give_up(TimeoutError(f"not up after {START_TIMEOUT_S:.0f}s"))
                return False
            errors = [e for e in (f.exception() for f in self._starting) if e is not None]
            if errors:
                self._give_up(errors[0])
                return False
            self._starting = []
            logger.info("%d preprocessing worker processes started", self.workers)
        return True

    def broken(self, error: BaseException) -> None:
        """A worker died mid-run (killed, out of memory): the rest of the run is in-process."""
        if not self._failed_start:  # every pending item reports it: warn once
            self._give_up(error, started=True)

    def _give_up(self, error: BaseException, *, started: bool = False) -> None:
        self._failed_start = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        what = "a preprocessing worker failed" if started else "preprocessing workers failed"
        logger.warning(
            "%s (%s: %s); loading images in-process from now on",
            what if started else f"{self.workers} {what} to start",
            type(error).__name__,
            error,
        )

    def submit(self, item: Any) -> cf.Future[Any]:
        pool = self._pool
        try:
            if pool is None:  # closed meanwhile (start() returned True before)
                raise Stopped
            return pool.submit(_load_and_prepare, item, self._preparer)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            if self._closed:
                raise Stopped from None
            raise

    @staticmethod
    def result(future: cf.Future[Any], timeout: float | None = None) -> Any:
        """The item's content; its load's error is raised again (same type and message)."""
        value = future.result(timeout)
        if isinstance(value, _Failed):
            raise unpack_error(*value.packed)
        return value

    def close(self) -> None:
        """Cancel what has not started and wait for the workers to exit."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def pool_for(encoder: Any, workers: int | None, max_pixels: int | None) -> PreprocessPool | None:
    """The run's pool (not started: it starts on the first image item), or None for 0 workers.

    ``workers`` None: :func:`default_workers`, started in the background (images load
    in-process until they are up); a count given: the first image waits for them. The
    workers run the encoder's
    ``image_preparer(max_pixels)``; an encoder without one gets workers that only decode
    and render (a WARNING says so: the encoder then resizes and normalises).
    """
    count = default_workers(encoder) if workers is None else workers
    if count == 0:
        return None
    make_preparer = getattr(encoder, "image_preparer", None)
    if make_preparer is None:
        logger.warning(
            "the encoder has no image_preparer: preprocessing workers only decode images and "
            "render pages; the encoder resizes and normalises them"
        )
        return PreprocessPool(count, None, wait=workers is not None)
    return PreprocessPool(count, make_preparer(max_pixels), wait=workers is not None)


class Ahead:
    """The reader's messages in input order, with image loads running in the pool meanwhile.

    ``emit`` takes a ready message; ``emit_load`` a pending load and ``finish(future)``,
    which turns its result into the message (a loaded item, or a failure event) once it is
    done. Messages reach ``put`` in the order given; at most ``depth`` wait here (then the
    reader waits for the oldest load: the workers are ``depth`` items ahead).
    """

    def __init__(self, put: Callable[[Any], None], depth: int, stop: threading.Event) -> None:
        self._put = put
        self.depth = depth
        self._stop = stop
        self._queue: collections.deque[tuple[cf.Future[Any] | None, Any]] = collections.deque()

    def emit(self, message: Any) -> None:
        self._add(None, message)

    def emit_load(self, future: cf.Future[Any], finish: Callable[[cf.Future[Any]], Any]) -> None:
        self._add(future, finish)

    def drain(self) -> None:
        """Forward everything, waiting for the loads still running."""
        while self._queue:
            self._pop()

    def cancel(self) -> None:
        """Drop what is held (a stopped run): loads not started are cancelled."""
        for future, _ in self._queue:
            if future is not None:
                future.cancel()
        self._queue.clear()

    def _add(self, future: cf.Future[Any] | None, value: Any) -> None:
        if future is None and not self._queue:
            self._put(value)
            return
        self._queue.append((future, value))
        while self._queue and (len(self._queue) > self.depth or self._head_ready()):
            self._pop()

    def _head_ready(self) -> bool:
        future = self._queue[0][0]
        return future is None or future.done()

    def _pop(self) -> None:
        future, value = self._queue[0]
        if future is not None:
            while not future.done():  # ``finish`` reads its result or its error
                if self._stop.is_set():
                    raise Stopped
                cf.wait([future], timeout=0.1)
            value = value(future)
        self._queue.popleft()
        self._put(value)

"""Flow control between the ingest pipeline's threads: stop signals and a byte budget.

Counting items does not bound memory: one decoded 9000x9000 image weighs as much as a
million text chunks. The reader therefore takes the loaded content's size in bytes from a
:class:`ByteBudget` before handing it on, and the encoder gives it back once the content
is encoded. An item bigger than the whole budget still passes when nothing else is in
flight, so nothing is ever refused for its size alone.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

#: Default bound on loaded, not yet encoded content (decoded images, texts).
DEFAULT_INFLIGHT_BYTES = 512 * 2**20
_POLL_S = 0.1


class Stopped(Exception):
    """Another stage failed or the run was interrupted; this one gives up quietly."""


def wait_put(q: queue.Queue[Any], value: Any, stop: threading.Event) -> None:
    """Put with back-pressure, giving up (:class:`Stopped`) when ``stop`` is set."""
    while not stop.is_set():
        try:
            q.put(value, timeout=_POLL_S)
            return
        except queue.Full:
            continue
    raise Stopped


def content_bytes(content: Any) -> int:
    """Memory held by a loaded item: pixels x bands for an image, the string's size for text."""
    if isinstance(content, str):
        return sys.getsizeof(content)
    nbytes = getattr(content, "nbytes", None)  # a preprocessed image (numpy patches)
    if isinstance(nbytes, int):
        return nbytes
    size, bands = getattr(content, "size", None), getattr(content, "getbands", None)
    if isinstance(size, tuple) and len(size) == 2 and callable(bands):
        return int(size[0]) * int(size[1]) * len(bands())
    return sys.getsizeof(content)


class ByteBudget:
    """A counting bound in bytes: ``take`` blocks while the budget is spent, ``give`` refills.

    Args:
        limit: bytes that may be in flight at once (one larger item passes alone).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._waiting = False
        self._cond = threading.Condition()

    @property
    def starved(self) -> bool:
        """True while ``take`` waits: the consumer should process what it holds now."""
        return self._waiting

    def take(self, n: int, stop: threading.Event) -> None:
        """Reserve ``n`` bytes, waiting for room; raises :class:`Stopped` when ``stop`` is set."""
        with self._cond:
            while self._used > 0 and self._used + n > self.limit:
                if stop.is_set():
                    raise Stopped
                self._waiting = True
                self._cond.wait(_POLL_S)
            self._waiting = False
            self._used += n

    def give(self, n: int) -> None:
        """Return ``n`` bytes taken earlier."""
        with self._cond:
            self._used -= n
            self._cond.notify_all()

"""An embedded store served from a child process: its writes leave the caller's interpreter.

Why: qdrant-edge-py takes vectors only as Python lists (its stubs say ``List[float]``; a numpy
array is read element by element, slower still). Turning one page's float16 token matrix
(~800 x 128) into lists and Points costs ~3 ms with the GIL held, and the engine's upsert
holds it too: on a GPU, ingest's writer thread held the GIL ~4 s of a 10 s run and slowed
the encoder's kernel launches (issue 13). In a child process that work runs on its own
interpreter and core; the caller only pickles the records (numpy buffers, a memcpy).

An embedded shard can be open in one process only (its WAL is locked), so the caller's
store is closed while the child holds it (``EdgeQdrantStore.released``) and reloaded after.
The child opens the same folder, serves calls in order over a pipe and closes the shard
cleanly when told to, when the caller's end of the pipe closes (the caller died), or on
any error. It ignores SIGINT: a Ctrl-C reaches the whole process group, and the caller
decides what is still written before the child is told to close.

Errors come back with their type and attributes (``RecordError.index``,
``PartialWriteError.written_ids``...), so the callers' per-record isolation still works.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .errors import BackendError, UnsupportedSpecError, pack_error, unpack_error
from .filters import Filter
from .payload_index import PayloadIndexes
from .records import Record, RecordId
from .spec import CollectionSpec

__all__ = ["StoreProcess", "store_in_process"]

logger = logging.getLogger(__name__)

#: Seconds the caller waits for the child to start (imports + shard load) or to close.
START_TIMEOUT_S = 120.0
CLOSE_TIMEOUT_S = 600.0  # a close optimizes what is pending: minutes on a big run


class StoreProcess:
    """The calls ingest makes on a store, answered by the store open in a child process.

    Not a full ``VectorStore``: upsert, get, scan, delete, count, add_payload_indexes,
    flush, info, close. One call at a time (a lock serialises threads).
    """

    def __init__(self, root: Path, name: str) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process running threads
        self._conn, child_end = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve,
            args=(child_end, str(root), name, logging.getLogger("connectors").getEffectiveLevel()),
            name=f"store-{name}",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._lock = threading.Lock()
        self.name = name
        #: Told about the child's maintenance runs, as ``VectorStore.maintenance_listener``.
        self.maintenance_listener: Callable[[str, float | None], None] | None = None
        self._closed = False
        try:
            self.spec: CollectionSpec = self._reply(START_TIMEOUT_S)
        except BaseException:
            self._stop()
            raise
        logger.info("collection %r is written from process %d", name, self._process.pid)

    # -- the store's calls ---------------------------------------------------------------
    def upsert(self, records: Iterable[Record]) -> int:
        return int(self._call("upsert", list(records)))

    def get(self, ids: Iterable[RecordId], *, with_vectors: bool = False) -> list[Record]:
        return list(self._call("get", list(ids), with_vectors=with_vectors))

    def delete(self, ids: Iterable[RecordId]) -> None:
        self._call("delete", list(ids))

    def count(self, filter: Filter | None = None) -> int:
        return int(self._call("count", filter))

    def scan(self, filter: Filter | None = None, *, page_size: int = 1000) -> Iterator[Record]:
        """As ``VectorStore.scan``: a page per call, the cursor kept in the child."""
        self._call("scan_open", filter, page_size=page_size)
        while True:
            page = self._call("scan_next")
            if not page:
                return
            yield from page

    def add_payload_indexes(self, indexes: object) -> PayloadIndexes:
        added: PayloadIndexes = self._call("add_payload_indexes", indexes)
        self.spec = self._call("spec")
        return added

    def flush(self) -> None:
        self._call("flush")

    def info(self) -> dict[str, Any]:
        return dict(self._call("info"))

    def close(self) -> None:
        """Close the store in the child (optimize, flush, unlock) and end the child."""
        if self._closed:
            return
        try:
            with self._lock:
                self._conn.send(("close", (), {}))
                self._reply(CLOSE_TIMEOUT_S)
        finally:
            self._stop()

    def __enter__(self) -> StoreProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------
    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._closed:
                raise BackendError(f"collection {self.name!r}: its writer process is closed")
            try:
                self._conn.send((method, args, kwargs))
            except (BrokenPipeError, EOFError, OSError) as e:
                raise self._died() from e
            return self._reply(None)

    def _reply(self, timeout: float | None) -> Any:
        while True:
            if timeout is not None and not self._conn.poll(timeout):
                raise BackendError(
                    f"collection {self.name!r}: its writer process did not answer in {timeout:.0f}s"
                )
            try:
                kind, *body = self._conn.recv()
            except (EOFError, OSError) as e:
                raise self._died() from e
            if kind == "log":  # the child's log record (name, level, message), logged here
                logging.getLogger(body[0]).log(body[1], "%s", body[2])
                continue
            if kind == "event":  # maintenance inside the call: (what, None | seconds)
                if self.maintenance_listener is not None:
                    self.maintenance_listener(*body)
                continue
            if kind == "raise":
                raise unpack_error(*body)
            return body[0]

    def _died(self) -> BackendError:
        self._process.join(5)
        self._stop()
        return BackendError(
            f"collection {self.name!r}: its writer process died (exit code "
            f"{self._process.exitcode}); rerun to write what is missing (upserts are idempotent)"
        )

    def _stop(self) -> None:
        self._closed = True
        self._conn.close()
        self._process.join(CLOSE_TIMEOUT_S)
        if self._process.is_alive():
            logger.warning("the writer process of %r did not exit; terminating it", self.name)
            self._process.terminate()
            self._process.join(5)


@contextlib.contextmanager
def store_in_process(store: Any) -> Iterator[StoreProcess]:
    """Serve ``store`` (an embedded qdrant-edge store) from a child process for the block.

    The store is closed (flushed, unlocked) before the child opens its folder and reloaded
    after the child has closed it, with the spec the child left (indexes it added).

    Raises:
        UnsupportedSpecError: the store is not an embedded qdrant-edge store.
    """
    released = getattr(store, "released", None)
    if released is None:
        raise UnsupportedSpecError(
            f"{type(store).__name__} cannot be written from a child process: only an "
            "embedded qdrant-edge store (qdrant:PATH) can"
        )
    with released() as (root, name), StoreProcess(root, name) as child:
        yield child


# -- the child ---------------------------------------------------------------------------
class _PipeLogHandler(logging.Handler):
    """Sends the child's log records to the caller, which logs them with its own handlers."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self._conn.send(("log", record.name, record.levelno, record.getMessage()))


def _serve(conn: Connection, root: str, name: str, log_level: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller handles Ctrl-C
    connectors_log = logging.getLogger("connectors")
    connectors_log.setLevel(log_level)
    connectors_log.addHandler(_PipeLogHandler(conn))
    connectors_log.propagate = False
    store = None
    try:
        from .qdrant.edge import EdgeQdrantStore

        store = EdgeQdrantStore.open_at(name, Path(root))
        store.maintenance_listener = lambda what, seconds: conn.send(("event", what, seconds))
        conn.send(("ok", store.spec))
    except BaseException as e:
        conn.send(("raise", *pack_error(e)))
        if store is not None:
            store.close()
        return
    scans: list[tuple[Iterator[Record], int]] = []  # the open scan and its page size
    try:
        while True:
            try:
                method, args, kwargs = conn.recv()
            except (EOFError, OSError):
                return  # the caller is gone: close the shard cleanly (finally)
            try:
                result = _dispatch(store, scans, method, args, kwargs)
            except Exception as e:
                conn.send(("raise", *pack_error(e)))
                continue
            if method == "close":
                store = None  # closed by _dispatch
                conn.send(("ok", result))
                return
            conn.send(("ok", result))
    finally:
        if store is not None:
            store.close()


def _dispatch(
    store: Any,
    scans: list[tuple[Iterator[Record], int]],
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    if method == "spec":
        return store.spec
    if method == "scan_open":
        scans[:] = [(store.scan(*args, **kwargs), kwargs.get("page_size", 1000))]
        return None
    if method == "scan_next":
        if not scans:
            return []
        records, page_size = scans[0]
        return [r for _, r in zip(range(page_size), records, strict=False)]
    if method not in {
        "upsert",
        "get",
        "delete",
        "count",
        "add_payload_indexes",
        "flush",
        "info",
        "close",
    }:
        raise ValueError(f"unknown store call {method!r}")
    return getattr(store, method)(*args, **kwargs)

"""Opening a MilvusClient: server or Milvus Lite file, with clear errors and no leaked tokens.

Milvus Lite (``uri`` ending in ``.db``) runs in-process: pymilvus starts a gRPC server on
127.0.0.1 per file, and that server holds an exclusive ``flock`` on ``<file>/LOCK`` until it
is stopped. A second process gets a bare "Open local milvus failed" from pymilvus; we probe
the lock ourselves and raise StoreLockedError naming the file. Closing the last MilvusStore
of this process that uses a file stops its server, so the file is free for other processes
(a client passed in by the caller is never closed).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

from ..clients import MilvusClientHandle
from ..errors import (
    BackendError,
    ConnectorError,
    MissingDependencyError,
    StoreLockedError,
    StoreUnavailableError,
    TransientServerError,
)
from .convert import pymilvus

logger = logging.getLogger(__name__)

TOKEN_ENV = "MILVUS_TOKEN"
#: Seconds to wait for a server to answer before StoreUnavailableError.
DEFAULT_CONNECT_TIMEOUT = 10.0

#: What pymilvus 3 raises for a server it cannot reach (a MilvusException, not the
#: MilvusUnavailableException subclass).
CONNECT_FAILED = 2
#: Server answers worth retrying: rate limits (4, 8), time tick delay (11), collection not
#: loaded (101: for a while after a restart, until the query node is back), replica and
#: channel not available (402, 503), segments not loaded (601, 602).
TRANSIENT_CODES = frozenset({4, 8, 11, 101, 402, 503, 601, 602})
TRANSIENT_GRPC = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"})

_lite_users: dict[str, int] = {}
_lite_lock = threading.Lock()


def is_lite(uri: str) -> bool:
    """Milvus Lite URIs are local paths ending in ``.db``."""
    return uri.endswith(".db")


def redact(uri: str) -> str:
    """The URI without credentials (``https://user:pass@host`` -> ``https://***@host``)."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def lite_locked(path: str) -> bool:
    """Whether another process holds the Milvus Lite lock of ``path`` (a ``.db`` folder)."""
    lock = Path(path) / "LOCK"
    if not lock.exists():
        return False
    try:
        import fcntl  # noqa: PLC0415 - POSIX only; Milvus Lite itself uses msvcrt on Windows
    except ImportError:  # pragma: no cover
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@dataclass
class Connection:
    """A client and whether this package owns it (then ``close`` releases it)."""

    client: MilvusClientHandle
    uri: str | None
    owned: bool
    closed: bool = False

    @property
    def lite(self) -> bool:
        """Opened on a Milvus Lite file (a client passed in is judged by its version)."""
        return self.uri is not None and is_lite(self.uri)

    def close(self) -> None:
        """Close an owned client; stop the Milvus Lite server when its last store closes."""
        if not self.owned or self.closed:
            return
        self.closed = True
        try:
            self.client.close()
        finally:
            if self.uri and is_lite(self.uri):
                _release_lite(self.uri)


def connect(
    uri: str,
    *,
    token: str | None = None,
    client: MilvusClientHandle | None = None,
    timeout: float | None = None,
) -> Connection:
    """A MilvusClient for ``uri`` (or the caller's ``client``), with our error types.

    Raises:
        StoreLockedError: the Milvus Lite file is open in another process.
        StoreUnavailableError: the server does not answer (the message names the URI, never
            the token).
    """
    if client is not None:
        return Connection(client=client, uri=None, owned=False)
    MilvusClient, MilvusException = pymilvus().MilvusClient, pymilvus().MilvusException
    secret = token if token is not None else os.environ.get(TOKEN_ENV, "")
    lite = is_lite(uri)
    path = str(Path(uri).resolve()) if lite else uri
    if lite:
        try:
            importlib.import_module("milvus_lite")  # pymilvus imports it next, without our hint
        except ImportError as e:
            raise MissingDependencyError(
                "milvus-lite is required for Milvus Lite files (*.db): "
                "pip install 'jina-vdb[milvus]'"
            ) from e
        with _lite_lock:
            _lite_users[path] = _lite_users.get(path, 0) + 1
    try:
        made = MilvusClient(uri=path, token=secret, timeout=timeout or DEFAULT_CONNECT_TIMEOUT)
    except MilvusException as e:
        if lite:
            _release_lite(path)
            if lite_locked(path):
                raise StoreLockedError(
                    f"Milvus Lite file {path} is open in another process "
                    "(it allows one process at a time); "
                    "close it there or use a Milvus server"
                ) from None
        message = str(getattr(e, "message", e))
        if secret:
            message = message.replace(secret, "***")
        raise StoreUnavailableError(
            f"cannot connect to Milvus at {redact(path)}: {message}"
        ) from None
    if lite:
        forget_cached_schemas(made)
    return Connection(client=made, uri=path, owned=True)


def forget_cached_schemas(client: object) -> None:
    """Drop pymilvus' cached collection schemas for ``client``'s server address.

    pymilvus (>= 2.6) caches each collection's schema per ``host:port`` and uses it to build
    insert/upsert rows. A Milvus Lite server listens on a free port, which an earlier Lite
    server of another file may have used: a collection of the same name there (say with
    payload-index columns) would lend its cached schema to this file's collection, and the
    rows would carry fields this schema lacks ("record has fields [...] not in schema").
    """
    try:
        from pymilvus.client.cache import GlobalCache
    except ImportError:  # an older pymilvus keeps no process-wide schema cache
        return
    try:
        endpoint = client._get_connection().server_address  # type: ignore[attr-defined]
    except Exception as e:  # noqa: BLE001 - never fail a connect over a cache
        logger.warning("could not clear pymilvus' schema cache for this Milvus Lite file: %s", e)
        return
    GlobalCache.schema.invalidate_db(endpoint, "")


def translate_error(error: Exception, name: str, uri: str | None) -> ConnectorError | None:
    """A pymilvus exception as the project's error: StoreUnavailableError for an unreachable
    server (upserts retry it), BackendError for any other; None for what pymilvus did not raise."""
    exceptions = pymilvus()
    if not isinstance(error, exceptions.MilvusException):
        return None
    where = f"Milvus at {redact(uri)}" if uri else "Milvus"
    message = " ".join(str(getattr(error, "message", "") or error).split())[:300]
    code = getattr(error, "code", None)
    if isinstance(error, exceptions.MilvusUnavailableException) or code == CONNECT_FAILED:
        return StoreUnavailableError(f"cannot reach {where}: {message}")
    if _transient(code):
        return TransientServerError(f"{where} is not ready for {name!r} (code {code}): {message}")
    return BackendError(f"{where} refused a request on {name!r} (code {code}): {message}")


def _transient(code: object) -> bool:
    if isinstance(code, int):
        return code in TRANSIENT_CODES
    # gRPC-level failures come with a grpc.StatusCode as their code.
    return getattr(code, "name", None) in TRANSIENT_GRPC


def raise_translated(error: BaseException, name: str, uri: str | None) -> NoReturn:
    """Raise ``error`` as ``translate_error`` gives it (for calls outside a store's ``_run``)."""
    if isinstance(error, Exception) and not isinstance(error, ConnectorError):
        translated = translate_error(error, name, uri)
        if translated is not None:
            raise translated from None
    raise error


def _release_lite(path: str) -> None:
    with _lite_lock:
        users = _lite_users.get(path, 0) - 1
        if users > 0:
            _lite_users[path] = users
            return
        _lite_users.pop(path, None)
    try:
        from milvus_lite.server_manager import server_manager_instance  # noqa: PLC0415
    except ImportError:  # pragma: no cover - no Lite server can be running then
        return
    # Stops the in-process server (flushing its memtables) and frees the file lock.
    server_manager_instance.release_server(path)
    logger.info("stopped the Milvus Lite server of %s", path)

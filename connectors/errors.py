"""Errors raised by the connectors. Messages name the collection, record or URL involved."""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Sequence
from typing import Any


class ConnectorError(Exception):
    """Base class for every error the connectors raise on purpose."""


class MissingDependencyError(ConnectorError, ImportError):
    """An optional package is not installed; the message gives the pip command."""


class SchemaMismatchError(ConnectorError, ValueError):
    """A collection exists with a different spec than the one asked for."""


class UnsupportedSpecError(ConnectorError, ValueError):
    """A CollectionSpec asks for a storage option this backend does not implement."""


class BackendError(ConnectorError, RuntimeError):
    """The database refused or failed a request; the message names the collection and where."""


class RecordError(ConnectorError, ValueError):
    """A record is malformed (wrong vector size, empty multivector, bad id...).

    ``index`` is the record's position in the batch passed to ``upsert``.
    """

    def __init__(self, message: str, *, index: int | None = None, record_id: object = None) -> None:
        self.index = index
        self.record_id = record_id
        where = []
        if index is not None:
            where.append(f"record {index}")
        if record_id is not None:
            where.append(f"id={record_id!r}")
        prefix = f"{' '.join(where)}: " if where else ""
        super().__init__(prefix + message)


class PartialWriteError(BackendError):
    """An upsert failed after part of its batch was written (validation cannot see it coming:
    a server dropped out, or refused a record). Says exactly what was and was not written.

    Attributes:
        index: position in the batch of the first record not written.
        record_id: its id.
        written_ids: ids written by this call (in batch order).
        unwritten_ids: ids of the batch not written.
    """

    index: int | None
    record_id: object

    def __init__(
        self,
        message: str,
        *,
        index: int,
        record_id: object,
        written_ids: Sequence[object],
        unwritten_ids: Sequence[object],
    ) -> None:
        self.index = index
        self.record_id = record_id
        self.written_ids = list(written_ids)
        self.unwritten_ids = list(unwritten_ids)
        Exception.__init__(self, message)


class RejectedRecordError(PartialWriteError, RecordError):
    """The database refused one record of a batch (written alone, it still fails)."""


class QueryError(ConnectorError, ValueError):
    """A query cannot run against this collection (missing vector, unknown mode...)."""


class CollectionNotFoundError(ConnectorError, LookupError):
    """``open()`` was asked for a collection that does not exist."""


class StoreUnavailableError(ConnectorError, ConnectionError):
    """A server could not be reached; the message names the URL (never the credentials)."""


class UnavailableWriteError(PartialWriteError, StoreUnavailableError):
    """The server became unreachable during an upsert, after part of the batch was written."""


class TransientServerError(StoreUnavailableError):
    """A server fault worth retrying (busy, overloaded, timed out); upserts retry it."""


class StoreLockedError(ConnectorError, RuntimeError):
    """An embedded store folder is already opened by another process."""


# -- errors across processes (connectors.store_process, jina_vdb.preprocess) -------------
def pack_error(error: BaseException) -> tuple[Any, ...]:
    """(module, class name, message, picklable attributes) of an exception."""
    cls = type(error)
    state = {}
    for key, value in vars(error).items():
        try:
            pickle.dumps(value)
        except Exception:
            continue
        state[key] = value
    return cls.__module__, cls.__qualname__, str(error), state


def unpack_error(module: str, qualname: str, message: str, state: dict[str, Any]) -> BaseException:
    """The exception again, same class and attributes; a class that cannot be loaded here
    becomes a BackendError carrying its name and message."""
    try:
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(qualname)
        error = cls.__new__(cls)
        BaseException.__init__(error, message)
        error.__dict__.update(state)
        return error
    except Exception:
        return BackendError(f"{module}.{qualname}: {message}")

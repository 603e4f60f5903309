"""VectorStore: the interface every backend implements. Backends only translate.

The shared parts live here, written once for every backend: records are validated (the
whole batch, before anything is written, with a per-record hook for a backend's own
limits), split into byte-bounded requests and written with retries; ids and filters are
checked before a backend sees them; queries become a backend-neutral SearchPlan; every
backend call goes through ``_run``, which turns the database client's exceptions into the
project's errors. Spec reconciliation and the optional-field check live in ``spec.py``.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, ClassVar, TypeVar

import numpy as np

from .errors import (
    ConnectorError,
    PartialWriteError,
    RejectedRecordError,
    StoreUnavailableError,
    UnavailableWriteError,
)
from .filters import Filter, check_filter
from .payload_index import PayloadIndexes, added_indexes, normalize_indexes
from .query import Hit, Query, SearchMode, SearchPlan, build_plan, query_vectors
from .records import (
    PreparedRecord,
    Record,
    RecordId,
    byte_bounded_chunks,
    check_ids,
    prepare_records,
)
from .spec import CollectionSpec, check_supported, resolve_spec

logger = logging.getLogger(__name__)
T = TypeVar("T")


class VectorStore(ABC):
    """One collection in one database. Use as a context manager or call ``close()``."""

    #: Request size limit for one write (servers refuse large requests; token vectors are big).
    max_request_bytes: int = 16 * 1024 * 1024
    max_request_records: int = 512
    #: Errors a request is retried on (``_translate_error`` produces them). Idempotent
    #: requests retry: upsert (by id), get, count, search, delete; not drop or scan pages.
    transient_errors: tuple[type[BaseException], ...] = (StoreUnavailableError,)
    #: The retry budget: waits of 0.5 s, 1 s, 2 s ... capped at ``retry_max_delay``.
    retries: int = 3
    retry_max_delay: float = 10.0
    #: The optional CollectionSpec fields (``spec.OPTIONAL_FEATURES``) this backend
    #: implements; ``create()`` refuses a spec that sets any other one.
    spec_features: ClassVar[frozenset[str]] = frozenset()
    #: Told about maintenance that pauses writes (an index build, a flush): called with
    #: (what, None) when one starts and (what, seconds) when it ends. Ingest shows them.
    maintenance_listener: Callable[[str, float | None], None] | None = None

    def __init__(self, name: str, spec: CollectionSpec) -> None:
        self.name = name
        self.spec = spec

    # -- writes ----------------------------------------------------------------------
    def upsert(self, records: Iterable[Record]) -> int:
        """Insert or overwrite records by id; returns how many were written.

        The whole batch is validated first: a bad record raises RecordError naming it and
        nothing from the batch is written.
        """
        prepared = prepare_records(list(records), self.spec, self._check_record)
        limits = (self.max_request_bytes, self.max_request_records)
        done = 0  # records of the batch written so far (requests go in batch order)
        for chunk in byte_bounded_chunks(prepared, *limits):
            self._write_request(prepared, done, chunk)
            done += len(chunk)
        if prepared:
            self._run("upsert", self._after_write)
        return len(prepared)

    def _write_request(
        self, batch: list[PreparedRecord], done: int, chunk: list[PreparedRecord]
    ) -> None:
        """Write one request; on failure, find the record and say what was written.

        A refused request of several records is written again one record at a time (upserts
        are idempotent), so the error names the very record the database refuses; a server
        that is unreachable fails at once.
        """
        try:
            self._run("upsert", partial(self._write, chunk), retry=True)
            return
        except Exception as e:
            if len(chunk) == 1 or isinstance(e, StoreUnavailableError):
                raise partial_write_error(self.name, batch, done, e) from e
            logger.warning(
                "upsert of records %d-%d into %r failed (%s); writing them one at a time",
                *(done, done + len(chunk) - 1, self.name, e),
            )
        for j, record in enumerate(chunk):
            try:
                self._run("upsert", partial(self._write, [record]), retry=True)
            except Exception as e:
                raise partial_write_error(self.name, batch, done + j, e) from e

    def delete(self, ids: Iterable[RecordId]) -> None:
        """Delete records by id (missing ids are ignored)."""
        keys = check_ids(ids)
        if keys:
            self._run("delete", lambda: self._delete(keys), retry=True)

    def drop(self) -> None:
        """Delete the whole collection and its data."""
        self._run("drop", self._drop)

    def add_payload_indexes(self, indexes: object) -> PayloadIndexes:
        """Index these payload fields too, e.g. ``{"kind": "keyword", "page": "integer"}``.

        Idempotent: fields already indexed with the same type are left as they are (the same
        key with another type is a SchemaMismatchError). The new ones are built, then
        recorded in the stored spec. Returns the indexes that were added.
        """
        added = added_indexes(self.spec.payload_indexes, normalize_indexes(indexes), name=self.name)
        if added:
            self._run("index", partial(self._create_payload_indexes, added))
            self.spec = self.spec.with_payload_indexes(added)
            self._run("index", self._save_spec)
            logger.info(
                "collection %r indexes payload fields %s",
                self.name,
                ", ".join(f"{k} ({t.value})" for k, t in added),
            )
        return added

    # -- reads -------------------------------------------------------------------------
    def search(
        self,
        query: Query,
        *,
        mode: SearchMode | str = SearchMode.HYBRID,
        limit: int = 10,
        prefetch_limit: int = 100,
        filter: Filter | None = None,
    ) -> list[Hit]:
        """Search the collection.

        Args:
            query: the query's dense vector and token vectors (``Query.from_batch``).
            mode: dense, multivector, hybrid (default), funnel, fusion or muvera (the
                MUVERA encoding as the first stage: collections created with ``muvera``).
            limit: number of hits returned.
            prefetch_limit: candidates kept by the first stage before the MaxSim rerank.
            filter: payload filter applied to every stage.
        """
        plan = build_plan(
            self.spec, mode, limit=limit, prefetch_limit=prefetch_limit, filter=filter
        )
        vectors = query_vectors(query, self.spec, plan)
        return self._run("search", lambda: self._execute(plan, vectors), retry=True)

    def get(self, ids: Iterable[RecordId], *, with_vectors: bool = False) -> list[Record]:
        """Records by id, in the order asked; missing ids are left out."""
        keys = check_ids(ids)
        if not keys:
            return []
        return self._run("get", lambda: self._get(keys, with_vectors), retry=True)

    def count(self, filter: Filter | None = None) -> int:
        """Number of records (matching the filter), counted exactly."""
        flt = check_filter(filter)
        return self._run("count", lambda: self._count(flt), retry=True)

    def scan(self, filter: Filter | None = None, *, page_size: int = 1000) -> Iterator[Record]:
        """Every record matching the filter (id and payload, no vectors), a page at a time.

        For bookkeeping (which ids a source still has), not search: the order is the
        backend's, and records written or deleted meanwhile may or may not show up.
        """
        flt = check_filter(filter)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive int, got {page_size!r}")
        cursor: Any = None
        while True:
            page, cursor = self._run("scan", partial(self._scan_page, flt, page_size, cursor))
            yield from page
            if cursor is None:
                return

    def info(self) -> dict[str, Any]:
        """Spec, counts and backend details for ``jina-vdb info``."""
        return {
            "collection": self.name,
            "backend": type(self).__name__,
            "spec": self.spec.to_dict(),
            "count": self.count(),
        }

    @abstractmethod
    def close(self) -> None:
        """Release the database handle (idempotent)."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what each backend implements (ids and filters arrive checked) -------------------
    @abstractmethod
    def _write(self, records: Sequence[PreparedRecord]) -> None:
        """Write one request's worth of validated records (overwriting same ids)."""

    @abstractmethod
    def _execute(self, plan: SearchPlan, vectors: dict[str, np.ndarray]) -> list[Hit]:
        """Run a plan; ``vectors`` maps each field the plan uses to its query vector."""

    @abstractmethod
    def _get(self, ids: list[RecordId], with_vectors: bool) -> list[Record]:
        """Records of these (non-empty, valid) ids in this order; missing ones left out."""

    @abstractmethod
    def _count(self, filter: Filter | None) -> int: ...

    @abstractmethod
    def _scan_page(
        self, filter: Filter | None, limit: int, cursor: Any
    ) -> tuple[list[Record], Any]:
        """Up to ``limit`` records (payload only) from ``cursor`` (None: the start) and the
        next cursor (None: no more)."""

    @abstractmethod
    def _delete(self, ids: list[RecordId]) -> None: ...

    @abstractmethod
    def _drop(self) -> None: ...

    @abstractmethod
    def _create_payload_indexes(self, indexes: PayloadIndexes) -> None:
        """Build payload indexes on an existing collection (a backend that cannot: WARNING)."""

    @abstractmethod
    def _save_spec(self) -> None:
        """Store ``self.spec`` where ``open()`` reads it back."""

    def _check_record(self, record: PreparedRecord, index: int) -> None:  # noqa: B027
        """Hook: raise RecordError for a record this backend cannot store (default: none)."""

    def _after_write(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Hook after an upsert call (e.g. build indexes); default: nothing."""

    def flush(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Persist writes and build pending indexes now (default: nothing to do)."""

    @contextmanager
    def _maintenance(self, what: str, detail: str) -> Iterator[None]:
        """Log and report (``maintenance_listener``) a maintenance run around the block."""
        listener = self.maintenance_listener
        logger.info("%s %r (%s) ...", what, self.name, detail)
        if listener is not None:
            listener(what, None)
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            logger.info("%s %r done in %.1fs", what, self.name, seconds)
            if listener is not None:
                listener(what, seconds)

    def _translate_error(self, error: Exception) -> ConnectorError | None:
        """Hook: the project's error for a database client's exception (None: leave it)."""
        return None

    # -- shared machinery ----------------------------------------------------------------
    @classmethod
    def _requested_spec(cls, spec: CollectionSpec | None, **fields: Any) -> CollectionSpec:
        """The spec a ``create()`` asks for, refused when it sets a field this backend lacks."""
        resolved = resolve_spec(spec, **fields)
        check_supported(resolved, cls.spec_features, cls.__name__)
        return resolved

    def _run(self, what: str, call: Callable[[], T], *, retry: bool = False) -> T:
        """One backend call, its client errors translated; ``retry``: transient ones retried."""
        started = time.monotonic()
        for attempt in range(self.retries + 1):
            try:
                return self._translated(call)
            except self.transient_errors as e:
                if not retry:
                    raise
                if attempt == self.retries:
                    waited = time.monotonic() - started
                    raise type(e)(
                        f"{e} (gave up after {self.retries} retries over {waited:.0f}s)"
                    ) from None
                delay = min(0.5 * 2**attempt, self.retry_max_delay)
                logger.warning(
                    "%s on %r failed (%s); retry %d/%d in %.1fs",
                    *(what, self.name, e, attempt + 1, self.retries, delay),
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _translated(self, call: Callable[[], T]) -> T:
        with translated_errors(self._translate_error):
            return call()


def _some(ids: list[Any], most: int = 10) -> str:
    shown = ", ".join(repr(i) for i in ids[:most])
    return f"{shown}, ... ({len(ids)} in all)" if len(ids) > most else shown


def partial_write_error(
    name: str, batch: list[PreparedRecord], failed: int, cause: Exception
) -> PartialWriteError:
    """The error for an upsert whose records ``batch[:failed]`` were written and the rest not."""
    written = [r.id for r in batch[:failed]]
    unwritten = [r.id for r in batch[failed:]]
    record = batch[failed]
    refused = not isinstance(cause, StoreUnavailableError)
    what = "the database refused it" if refused else "the database is unavailable"
    message = (
        f"record {failed} id={record.id!r}: upsert into {name!r} failed, {what}: "
        f"{type(cause).__name__}: {cause}. "
        + (f"Written: records 0-{failed - 1} (ids {_some(written)}). " if written else "")
        + f"Not written: records {failed}-{len(batch) - 1} (ids {_some(unwritten)})."
    )
    kind: type[PartialWriteError] = RejectedRecordError if refused else UnavailableWriteError
    return kind(
        message,
        index=failed,
        record_id=record.id,
        written_ids=written,
        unwritten_ids=unwritten,
    )


@contextmanager
def translated_errors(translate: Callable[[Exception], ConnectorError | None]) -> Iterator[None]:
    """Raise ``translate(e)`` instead of a client exception ``e`` (when it gives one)."""
    try:
        yield
    except ConnectorError:
        raise
    except Exception as e:
        error = translate(e)
        if error is None:
            raise
        raise error from None  # the client's exception may carry request details

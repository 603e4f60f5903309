"""VectorStore: the interface every backend implements. Backends only translate.

The shared parts live here: records are validated (the whole batch, before anything is
written), split into byte-bounded requests and written with retries; queries are turned
into a backend-neutral SearchPlan before the backend sees them.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from .filters import Filter
from .query import Hit, Query, SearchMode, SearchPlan, build_plan, query_vectors
from .records import PreparedRecord, Record, RecordId, byte_bounded_chunks, prepare_records
from .spec import CollectionSpec

logger = logging.getLogger(__name__)


class VectorStore(ABC):
    """One collection in one database. Use as a context manager or call ``close()``."""

    #: Request size limit for one write (servers refuse large requests; token vectors are big).
    max_request_bytes: int = 16 * 1024 * 1024
    max_request_records: int = 512
    #: Exceptions worth retrying (a backend sets what its client raises on transient faults).
    transient_errors: tuple[type[BaseException], ...] = ()
    retries: int = 3

    def __init__(self, name: str, spec: CollectionSpec) -> None:
        self.name = name
        self.spec = spec

    # -- writes ----------------------------------------------------------------------
    def upsert(self, records: Iterable[Record]) -> int:
        """Insert or overwrite records by id; returns how many were written.

        The whole batch is validated first: a bad record raises RecordError naming it and
        nothing from the batch is written.
        """
        prepared = prepare_records(list(records), self.spec)
        for chunk in byte_bounded_chunks(
            prepared, self.max_request_bytes, self.max_request_records
        ):
            self._with_retry("upsert", lambda chunk=chunk: self._write(chunk))
        if prepared:
            self._after_write()
        return len(prepared)

    def _with_retry(self, what: str, call: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return call()
            except self.transient_errors as e:
                if attempt == self.retries:
                    raise
                delay = 0.5 * 2**attempt
                logger.warning(
                    "%s on %r failed (%s); retry %d/%d in %.1fs",
                    what,
                    self.name,
                    e,
                    attempt + 1,
                    self.retries,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

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
            mode: dense, multivector, hybrid (default), funnel or fusion.
            limit: number of hits returned.
            prefetch_limit: candidates kept by the dense stage before the MaxSim rerank.
            filter: payload filter applied to every stage.
        """
        plan = build_plan(
            self.spec, mode, limit=limit, prefetch_limit=prefetch_limit, filter=filter
        )
        return self._execute(plan, query_vectors(query, self.spec, plan))

    # -- what each backend implements ----------------------------------------------------
    @abstractmethod
    def _write(self, records: Sequence[PreparedRecord]) -> None:
        """Write one request's worth of validated records (overwriting same ids)."""

    def _after_write(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Hook after an upsert call (e.g. build indexes); default: nothing."""

    @abstractmethod
    def _execute(self, plan: SearchPlan, vectors: dict[str, Any]) -> list[Hit]:
        """Run a plan; ``vectors`` maps each field the plan uses to its query vector."""

    @abstractmethod
    def get(self, ids: Sequence[RecordId], *, with_vectors: bool = False) -> list[Record]:
        """Records by id, in the order asked; missing ids are left out."""

    @abstractmethod
    def count(self, filter: Filter | None = None) -> int:
        """Number of records (matching the filter)."""

    @abstractmethod
    def delete(self, ids: Sequence[RecordId]) -> None:
        """Delete records by id (missing ids are ignored)."""

    @abstractmethod
    def drop(self) -> None:
        """Delete the whole collection and its data."""

    @abstractmethod
    def close(self) -> None:
        """Release the database handle (idempotent)."""

    def info(self) -> dict[str, Any]:
        """Spec, counts and backend details for ``jina-vdb info``."""
        return {
            "collection": self.name,
            "backend": type(self).__name__,
            "spec": self.spec.to_dict(),
            "count": self.count(),
        }

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""What a multivector layout does: the interface ``MilvusStore`` drives, and the dense-only case.

A layout owns everything about token vectors: the fields or companion collection that hold
them, how a batch is written (and in which order, so an interrupted write can be re-run),
and how MaxSim is computed (server-side in the struct layout, in numpy for the companion
layouts: packed.py, token_rows.py).
The documents collection (pk, dense fields, payload) is the store's.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..clients import MilvusClientHandle
from ..errors import QueryError
from ..spec import CollectionSpec
from .convert import MAX_IDS_PER_EXPR, PAYLOAD, PK, Layout, chunks, in_expr
from .lite_engine import LiteEngine
from .versions import ServerInfo


class Consistency(str, enum.Enum):
    """What a read waits for. Milvus servers stamp writes with a time tick every 200 ms
    (``proxy.timeTickInterval``); a read waits until the node serving it has caught up to the
    read's guarantee timestamp.

    SESSION (default): the timestamp of this process's last write to the collection
    (pymilvus keeps it per collection), so a store always sees its own writes, and reads
    with no recent write wait for nothing. Another process's writes show up within a tick.
    STRONG: "now", so every read waits for the next tick (~200 ms per request; a hybrid
    query made 4 of them: 800 ms). BOUNDED: up to ``common.gracefulTime`` (5 s) stale.
    EVENTUALLY: no wait, no guarantee. Milvus Lite serves every read at once.
    """

    STRONG = "Strong"
    SESSION = "Session"
    BOUNDED = "Bounded"
    EVENTUALLY = "Eventually"


def check_consistency(level: Consistency | str | None) -> Consistency:
    """The Consistency for a ``consistency_level`` argument (ValueError listing the valid ones)."""
    if level is None:
        return Consistency.SESSION
    try:
        return Consistency(level)
    except ValueError:
        valid = ", ".join(repr(c.value) for c in Consistency)
        raise ValueError(f"consistency_level must be one of {valid}, got {level!r}") from None


#: One scored candidate: (primary key, score, payload or None when not fetched yet).
Scored = tuple[str, float, "dict[str, Any] | None"]


@dataclass
class Target:
    """The collection a layout works on, and the client and request options to reach it."""

    client: MilvusClientHandle
    name: str
    spec: CollectionSpec
    max_tokens: int | None = None
    #: Extra keyword arguments for every request (timeout, consistency_level).
    request: dict[str, Any] = field(default_factory=dict)
    #: Keyword arguments for create_collection (num_shards, consistency_level).
    create: dict[str, Any] = field(default_factory=dict)
    #: What the server can do (index types differ by version).
    server: ServerInfo = field(default_factory=lambda: ServerInfo("unknown", lite=False))
    #: Consistency level of every read (see ``Consistency``).
    consistency: Consistency = Consistency.SESSION
    #: Milvus Lite's in-process engine, for the packed layout's token rows (lite_engine.py).
    engine: LiteEngine | None = None

    @property
    def read(self) -> dict[str, Any]:
        """Keyword arguments for a read request (search, get, query)."""
        return {**self.request, "consistency_level": self.consistency.value}

    # pymilvus' get(ids=) / delete(ids=) paste the keys into 'pk in [...]' without escaping
    # (an id like "x'] or not pk in ['x" deleted every row): expressions are built here.
    def rows(
        self, collection: str, keys: Sequence[str], fields: list[str], **extra: Any
    ) -> list[dict[str, Any]]:
        """Rows of ``collection`` with these primary keys (chunked ``pk in [...]`` queries)."""
        rows: list[dict[str, Any]] = []
        for group in chunks(list(keys), MAX_IDS_PER_EXPR):
            rows.extend(
                self.client.query(
                    collection,
                    filter=in_expr(PK, group),
                    output_fields=fields,
                    **extra,
                    **self.read,
                )
            )
        return rows

    def delete_keys(self, collection: str, keys: Sequence[str]) -> None:
        """Delete the rows of ``collection`` with these primary keys."""
        for group in chunks(list(keys), MAX_IDS_PER_EXPR):
            self.client.delete(collection, filter=in_expr(PK, group), **self.request)


def parse_hits(result: Any, fields: dict[str, dict[str, Any]] | None = None) -> list[Scored]:
    """Rows of one ``search`` / ``hybrid_search`` answer (a single query) as Scored tuples;
    ``fields``, when given, receives each hit's returned fields by primary key."""
    if not result:
        return []
    out = []
    for hit in result[0]:
        entity = hit.get("entity") or {}
        key = hit.get(PK, hit.get("id"))
        out.append((key, float(hit["distance"]), entity.get(PAYLOAD)))
        if fields is not None:
            fields[key] = entity
    return out


class TokenLayout(ABC):
    """The token-vector part of a collection."""

    kind: Layout
    #: Documents fields a dense candidate stage returns with its hits, for ``rerank``.
    candidate_fields: tuple[str, ...] = ()

    def __init__(self, target: Target) -> None:
        self.target = target

    # -- creation --------------------------------------------------------------------
    def extend_schema(self, schema: Any) -> None:
        """Add this layout's fields to the documents schema (before the collection exists)."""
        return None

    def extend_indexes(self, index_params: Any) -> None:
        """Add this layout's indexes to the documents index parameters."""
        return None

    def verify(self, description: dict[str, Any]) -> None:
        """Raise if the server dropped or changed a field this layout needs (``description``:
        the documents collection's, properties included)."""
        return None

    def properties(self) -> dict[str, str]:
        """Collection properties this layout records at create (read back by ``verify``)."""
        return {}

    def create_companions(self) -> None:
        """Create any companion collection (idempotent)."""
        return None

    def open_companions(self) -> None:
        """Check and load any companion collection of an existing collection."""
        return None

    def drop_companions(self) -> None:
        """Drop any companion collection (idempotent)."""
        return None

    # -- writes ------------------------------------------------------------------------
    @abstractmethod
    def write(
        self, keys: Sequence[str], rows: list[dict[str, Any]], tokens: Sequence[np.ndarray]
    ) -> None:
        """Write documents rows (pk, dense fields, payload) and their token vectors (one
        (t, 128) matrix per row; empty for a dense-only collection)."""

    def delete_tokens(self, keys: Sequence[str]) -> None:
        """Remove the token vectors of deleted documents (their rows are already gone)."""
        return None

    # -- reads ---------------------------------------------------------------------------
    def rerank(
        self,
        tokens: np.ndarray,
        candidates: Sequence[str],
        limit: int,
        known: dict[str, dict[str, Any]] | None = None,
    ) -> list[Scored]:
        """MaxSim of ``candidates`` against the query tokens, best ``limit`` first; ``known``:
        the ``candidate_fields`` the candidate stage returned, by primary key."""
        raise QueryError("this collection stores no token vectors (multivector=False)")

    def score_all(self, tokens: np.ndarray, expr: str, limit: int) -> list[Scored]:
        """MaxSim over every document matching ``expr``, best ``limit`` first."""
        raise QueryError("this collection stores no token vectors (multivector=False)")

    def tokens_of(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored token vectors (t, 128) of these documents."""
        return {}


class DenseOnly(TokenLayout):
    """``multivector=False``: documents rows only."""

    kind = Layout.NONE

    def write(
        self, keys: Sequence[str], rows: list[dict[str, Any]], tokens: Sequence[np.ndarray]
    ) -> None:
        self.target.client.upsert(self.target.name, rows, **self.target.request)

"""Backend-neutral queries: what to search with (Query), how (SearchPlan), what comes back (Hit).

Every search mode is a cascade of stages: the first stage retrieves from the whole
(filtered) collection, each later stage rescores only the previous stage's candidates.
Fusion runs several cascades and combines their rankings with RRF. Backends translate a
plan (Qdrant: nested prefetches; Milvus: searches + server- or client-side MaxSim).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import QueryError
from .filters import Filter, check_filter
from .muvera import encode_query
from .records import EmbeddingBatchLike, RecordId
from .spec import CollectionSpec
from .vectors import l2_normalize, matryoshka_prefix


class SearchMode(str, enum.Enum):
    DENSE = "dense"  # nearest neighbours on the full dense vector
    MULTIVECTOR = "multivector"  # exact MaxSim over every document (slow on big collections)
    HYBRID = "hybrid"  # dense prefetch -> MaxSim rerank (the default)
    FUNNEL = "funnel"  # smallest Matryoshka prefix -> full dense -> MaxSim
    FUSION = "fusion"  # RRF of the dense ranking and the MaxSim-reranked ranking
    MUVERA = "muvera"  # MUVERA encoding prefetch -> MaxSim rerank (needs spec.muvera)


@dataclass(frozen=True)
class Query:
    """A query's vectors: dense (d,) and, for late interaction, token vectors (q, 128)."""

    dense: np.ndarray | None = None
    multivector: np.ndarray | None = None

    @classmethod
    def from_batch(cls, batch: EmbeddingBatchLike, index: int = 0) -> Query:
        """The ``index``-th item of an embedder output as a query."""
        if not 0 <= index < len(batch.dense):
            raise IndexError(f"query index {index} out of range for a batch of {len(batch.dense)}")
        multis = batch.multivectors
        return cls(dense=batch.dense[index], multivector=None if multis is None else multis[index])


@dataclass(frozen=True)
class Hit:
    """One search result. ``score`` is the last stage's score (cosine, MaxSim or RRF)."""

    id: RecordId
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """One step of a cascade: score with ``field`` (a vector field name) and keep ``limit``."""

    field: str
    limit: int
    maxsim: bool = False  # True for the token-vector field (late interaction)


@dataclass(frozen=True)
class SearchPlan:
    mode: SearchMode
    cascades: tuple[tuple[Stage, ...], ...]  # one cascade, or several fused with RRF
    limit: int
    filter: Filter | None = None
    rrf_k: int = 60

    @property
    def fused(self) -> bool:
        return len(self.cascades) > 1


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise QueryError(f"{name} must be a positive int, got {value!r}")
    return value


def build_plan(
    spec: CollectionSpec,
    mode: SearchMode | str = SearchMode.HYBRID,
    *,
    limit: int = 10,
    prefetch_limit: int = 100,
    filter: Filter | None = None,
    funnel_factor: int = 4,
) -> SearchPlan:
    """The stages a mode runs on a collection with this spec (validated against it)."""
    try:
        mode = SearchMode(mode)
    except ValueError:
        valid = ", ".join(m.value for m in SearchMode)
        raise QueryError(f"unknown search mode {mode!r}; valid modes: {valid}") from None
    _positive_int("limit", limit)
    _positive_int("prefetch_limit", prefetch_limit)
    filter = check_filter(filter)
    needs_multi = mode is not SearchMode.DENSE
    if needs_multi and mode is not SearchMode.FUNNEL and not spec.multivector:
        raise QueryError(
            f"mode {mode.value!r} needs token vectors; this collection has multivector=False"
        )
    # A candidate stage never keeps fewer than the final limit.
    prefetch = max(prefetch_limit, limit)
    dense = Stage(spec.dense_field, prefetch)
    multi = Stage(spec.multivector_field, limit, maxsim=True)
    if mode is SearchMode.MUVERA and spec.muvera is None:
        raise QueryError(
            "mode 'muvera' needs the collection's MUVERA field; this collection was created "
            "without it (create one with muvera=MuveraParams() or `jina-vdb ingest --muvera`, "
            "or use mode 'hybrid')"
        )
    if mode is SearchMode.DENSE:
        cascades: tuple[tuple[Stage, ...], ...] = ((Stage(spec.dense_field, limit),),)
    elif mode is SearchMode.MULTIVECTOR:
        cascades = ((multi,),)
    elif mode is SearchMode.HYBRID:
        cascades = ((dense, multi),)
    elif mode is SearchMode.FUNNEL:
        if not spec.prefetch_dims:
            raise QueryError("mode 'funnel' needs Matryoshka prefetch_dims in the collection spec")
        first = Stage(
            spec.prefix_field(spec.prefetch_dims[0]),
            prefetch * _positive_int("funnel_factor", funnel_factor),
        )
        last = multi if spec.multivector else Stage(spec.dense_field, limit)
        cascades = ((first, dense, last),) if spec.multivector else ((first, last),)
    elif mode is SearchMode.MUVERA:
        cascades = ((Stage(spec.muvera_field, prefetch), multi),)
    else:  # FUSION: dense ranking + MaxSim over the same dense candidates, fused by RRF
        cascades = ((dense,), (dense, Stage(spec.multivector_field, prefetch, maxsim=True)))
    return SearchPlan(mode=mode, cascades=cascades, limit=limit, filter=filter)


def query_vectors(query: Query, spec: CollectionSpec, plan: SearchPlan) -> dict[str, np.ndarray]:
    """The query vector for every field the plan uses (Matryoshka-truncated and normalised)."""
    fields = {stage.field for cascade in plan.cascades for stage in cascade}
    out: dict[str, np.ndarray] = {}
    for name in sorted(fields):
        if name == spec.multivector_field:
            out[name] = _query_tokens(query, spec)
            continue
        if spec.muvera is not None and name == spec.muvera_field:
            out[name] = encode_query(_query_tokens(query, spec), spec.muvera)
            continue
        dense = _query_dense(query, spec)
        k = spec.dim if name == spec.dense_field else int(name.rsplit("_", 1)[1])
        out[name] = matryoshka_prefix(dense, k)
    return out


def _query_dense(query: Query, spec: CollectionSpec) -> np.ndarray:
    if query.dense is None:
        raise QueryError("this search mode needs the query's dense vector (Query.dense is None)")
    dense = np.asarray(query.dense, dtype=np.float32)
    if dense.ndim != 1 or dense.shape[0] < spec.dim or not np.isfinite(dense).all():
        raise QueryError(
            f"query dense vector must be finite with shape ({spec.dim},) or longer, "
            f"got {dense.shape}"
        )
    return dense


def _query_tokens(query: Query, spec: CollectionSpec) -> np.ndarray:
    if query.multivector is None:
        raise QueryError(
            "this search mode needs the query's token vectors (Query.multivector is None)"
        )
    tokens = np.asarray(query.multivector, dtype=np.float32)
    if tokens.ndim != 2 or tokens.shape[1] != spec.multivector_dim or len(tokens) == 0:
        raise QueryError(
            f"query multivector must have shape (q, {spec.multivector_dim}) with q >= 1, "
            f"got {tokens.shape}"
        )
    if not np.isfinite(tokens).all():
        raise QueryError("query multivector contains NaN or inf")
    return l2_normalize(tokens)

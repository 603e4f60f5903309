"""Pure translation of records, filters and search plans to Qdrant objects (schemas: schema.py).

Two flavours of every object: ``qdrant_edge`` (embedded shard) and ``qdrant_client.models``
(server and local mode). Nothing here does I/O; both packages are imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .. import token_codec
from ..filters import And, AnyOf, Eq, Filter, Not, Or, Range
from ..query import Hit, SearchPlan, Stage
from ..records import PreparedRecord, Record, RecordId, stable_uuid
from ..spec import CollectionSpec, VectorDtype
from . import _deps

#: Payload key holding a string id (Qdrant point ids are ints or UUIDs only).
ID_KEY = "_jvdb_id"


# -- ids and payloads -----------------------------------------------------------------------
def point_id(record_id: RecordId) -> int | str:
    """Qdrant point id: ints stay ints, strings become their stable uuid5."""
    return record_id if isinstance(record_id, int) else stable_uuid(record_id)


def stored_payload(record_id: RecordId, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as stored: a string id is kept in ``_jvdb_id`` so results can return it."""
    return {**payload, ID_KEY: record_id} if isinstance(record_id, str) else dict(payload)


def user_id_and_payload(
    pid: Any, payload: dict[str, Any] | None
) -> tuple[RecordId, dict[str, Any]]:
    """The user's id (with its type) and the payload without the reserved key."""
    clean = dict(payload or {})
    original = clean.pop(ID_KEY, None)
    if original is not None:
        return original, clean
    return (pid if isinstance(pid, int) else str(pid)), clean


def to_hit(point: Any) -> Hit:
    """A ScoredPoint (either flavour) as a Hit."""
    rid, payload = user_id_and_payload(point.id, point.payload)
    return Hit(id=rid, score=float(point.score), payload=payload)


def to_record(point: Any, spec: CollectionSpec, with_vectors: bool) -> Record:
    """A retrieved point (either flavour) as a Record; vectors as float32 numpy arrays."""
    rid, payload = user_id_and_payload(point.id, point.payload)
    vectors = point.vector if with_vectors and isinstance(point.vector, dict) else {}
    dense = vectors.get(spec.dense_field)
    multi = vectors.get(spec.multivector_field)
    if multi is not None and spec.multivector_dtype is VectorDtype.UINT8:
        multi = token_codec.from_codes(token_codec.codes_of_stored(multi, spec.multivector_dim))
    return Record(
        id=rid,
        dense=None if dense is None else np.asarray(dense, dtype=np.float32),
        multivector=None if multi is None else np.asarray(multi, dtype=np.float32),
        payload=payload,
    )


def _vector_lists(record: PreparedRecord, spec: CollectionSpec) -> dict[str, list[Any]]:
    # tolist() is the fastest hand-over to both bindings (numpy arrays go element by element).
    vectors = dict(record.vectors)
    tokens = vectors.get(spec.multivector_field)
    if tokens is not None and spec.multivector_dtype is VectorDtype.UINT8:
        vectors[spec.multivector_field] = token_codec.stored_bytes(tokens)  # (t, 128 + EXTRA)
    return {name: vec.tolist() for name, vec in vectors.items()}


def edge_points(records: Sequence[PreparedRecord], spec: CollectionSpec) -> list[Any]:
    """qdrant_edge Points for prepared records."""
    qe = _deps.edge()
    return [
        qe.Point(point_id(r.id), _vector_lists(r, spec), stored_payload(r.id, r.payload))
        for r in records
    ]


def client_points(records: Sequence[PreparedRecord], spec: CollectionSpec) -> list[Any]:
    """qdrant_client PointStructs for prepared records."""
    m = _deps.models()
    return [
        m.PointStruct(
            id=point_id(r.id),
            vector=_vector_lists(r, spec),
            payload=stored_payload(r.id, r.payload),
        )
        for r in records
    ]


def encode_query_tokens(
    spec: CollectionSpec, plan: SearchPlan, vectors: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], Callable[[list[Hit]], list[Hit]]]:
    """The query vectors as a uint8 token field takes them, and how to read the hits' scores
    back as MaxSim (when the plan's answer is a MaxSim stage); unchanged for float tokens."""
    tokens = vectors.get(spec.multivector_field)
    if tokens is None or spec.multivector_dtype is not VectorDtype.UINT8:
        return vectors, _same
    codes = token_codec.encode_query(tokens)
    encoded = {**vectors, spec.multivector_field: codes.vectors}
    if plan.fused or not plan.cascades[0][-1].maxsim:
        return encoded, _same  # RRF or a dense answer: no MaxSim score to convert
    return encoded, lambda hits: [replace(h, score=codes.maxsim(h.score)) for h in hits]


def _same(hits: list[Hit]) -> list[Hit]:
    return hits


# -- filters ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _FilterKit:
    filter: Callable[..., Any]
    field: Callable[..., Any]
    match_value: Callable[[Any], Any]
    match_any: Callable[[list[Any]], Any]
    range: Callable[..., Any]


def _translate(flt: Filter, kit: _FilterKit) -> Any:
    if isinstance(flt, Eq):
        return kit.field(key=flt.key, match=kit.match_value(flt.value))
    if isinstance(flt, AnyOf):
        if isinstance(flt.values[0], bool):  # MatchAny takes only strings or ints
            return kit.filter(
                should=[kit.field(key=flt.key, match=kit.match_value(v)) for v in flt.values]
            )
        return kit.field(key=flt.key, match=kit.match_any(list(flt.values)))
    if isinstance(flt, Range):
        return kit.field(
            key=flt.key, range=kit.range(gt=flt.gt, gte=flt.gte, lt=flt.lt, lte=flt.lte)
        )
    if isinstance(flt, And):
        return kit.filter(must=[_translate(c, kit) for c in flt.conditions])
    if isinstance(flt, Or):
        return kit.filter(should=[_translate(c, kit) for c in flt.conditions])
    if isinstance(flt, Not):
        return kit.filter(must_not=[_translate(flt.condition, kit)])
    raise TypeError(f"unsupported filter node {type(flt).__name__}")


def _as_filter(node: Any, kit: _FilterKit, filter_type: type) -> Any:
    return node if isinstance(node, filter_type) else kit.filter(must=[node])


def _edge_match_value(value: Any) -> Any:
    qe = _deps.edge()
    # qdrant-edge-py 0.9 reads a Python bool as the integer 0/1 (bool subclasses int), so
    # Eq("flag", True) would match the number 1 and never a stored true; np.bool_ is read
    # as a boolean.
    return qe.MatchValue(np.bool_(value) if isinstance(value, bool) else value)


def edge_filter(flt: Filter | None) -> Any:
    """A connectors filter as a ``qdrant_edge.Filter`` (None stays None)."""
    if flt is None:
        return None
    qe = _deps.edge()
    kit = _FilterKit(
        qe.Filter, qe.FieldCondition, _edge_match_value, lambda v: qe.MatchAny(v), qe.RangeFloat
    )
    return _as_filter(_translate(flt, kit), kit, qe.Filter)


def client_filter(flt: Filter | None) -> Any:
    """A connectors filter as a ``qdrant_client.models.Filter`` (None stays None)."""
    if flt is None:
        return None
    m = _deps.models()
    kit = _FilterKit(
        m.Filter,
        m.FieldCondition,
        lambda v: m.MatchValue(value=v),
        lambda v: m.MatchAny(any=v),
        m.Range,
    )
    return _as_filter(_translate(flt, kit), kit, m.Filter)


# -- query plans ----------------------------------------------------------------------------
def qdrant_rrf_k(rrf_k: int) -> int:
    """Qdrant's RRF is 1/(k + rank) with ranks from 0; the core's (and the paper's) from 1."""
    return rrf_k + 1


def _hnsw_ef(stage: Stage, hnsw_ef: int | None) -> int | None:
    if stage.maxsim or hnsw_ef is None:
        return None  # token vectors have no graph: MaxSim is always exact
    return max(hnsw_ef, stage.limit)


@dataclass(frozen=True)
class Rescoring:
    """How stages on quantized fields search: score with the quantized copy, keep
    ``oversampling`` x the stage's limit, rescore those with the original vectors."""

    fields: frozenset[str] = frozenset()  # the quantized named vectors (schema.quantized_fields)
    oversampling: float = 2.0


@dataclass(frozen=True)
class _Request:
    """The top of a query, flavour-neutral: nearest to one vector, or RRF of the prefetches."""

    limit: int
    nearest: tuple[list[Any], str] | None  # (query vector, field); None: RRF fusion
    rrf_k: int
    prefetches: list[Any]
    params: Any
    filter: Any


@dataclass(frozen=True)
class _QueryKit:
    """How one flavour builds a query's objects (the plan's shape is walked once, in _query)."""

    #: (vector, field, limit, inner prefetches, params) -> a Prefetch
    prefetch: Callable[[list[Any], str, int, list[Any], Any], Any]
    #: (hnsw_ef or None, oversampling or None: rescore quantized scores) -> SearchParams
    search_params: Callable[[int | None, float | None], Any]
    request: Callable[[_Request], Any]


def _query(
    plan: SearchPlan,
    vectors: dict[str, np.ndarray],
    hnsw_ef: int | None,
    kit: _QueryKit,
    flt: Any,
    rescoring: Rescoring,
) -> Any:
    """A SearchPlan as nested prefetches (stage i prefetches stage i-1), in one flavour.

    The filter is set once, on the request: Qdrant applies it to every prefetch too (checked
    on qdrant-edge, local mode and a server), so no candidate list holds excluded points.
    """
    lists = {name: v.tolist() for name, v in vectors.items()}

    def params(stage: Stage) -> Any:
        ef = _hnsw_ef(stage, hnsw_ef)
        quantized = stage.field in rescoring.fields
        if ef is None and not quantized:
            return None
        return kit.search_params(ef, rescoring.oversampling if quantized else None)

    def nest(stages: Sequence[Stage]) -> list[Any]:
        if not stages:
            return []
        last = stages[-1]
        inner = nest(stages[:-1])
        return [kit.prefetch(lists[last.field], last.field, last.limit, inner, params(last))]

    rrf_k = qdrant_rrf_k(plan.rrf_k)
    if plan.fused:
        prefetches = [p for cascade in plan.cascades for p in nest(cascade)]
        return kit.request(_Request(plan.limit, None, rrf_k, prefetches, None, flt))
    (cascade,) = plan.cascades
    last = cascade[-1]
    nearest = (lists[last.field], last.field)
    return kit.request(_Request(plan.limit, nearest, rrf_k, nest(cascade[:-1]), params(last), flt))


def edge_request(
    plan: SearchPlan,
    vectors: dict[str, np.ndarray],
    *,
    hnsw_ef: int | None = None,
    rescoring: Rescoring = Rescoring(),
) -> Any:
    """A SearchPlan as one ``qdrant_edge.QueryRequest``."""
    qe = _deps.edge()

    def request(r: _Request) -> Any:
        nearest = r.nearest
        return qe.QueryRequest(
            limit=r.limit,
            query=qe.Fusion.Rrf(k=r.rrf_k) if nearest is None else qe.Query.Nearest(*nearest),
            prefetches=r.prefetches or None,
            params=r.params,
            filter=r.filter,
            with_payload=True,
        )

    kit = _QueryKit(
        prefetch=lambda vector, field, limit, inner, params: qe.Prefetch(
            limit=limit,
            query=qe.Query.Nearest(vector, using=field),
            prefetches=inner or None,
            params=params,
        ),
        search_params=lambda ef, oversampling: qe.SearchParams(
            hnsw_ef=ef,
            quantization=None
            if oversampling is None
            else qe.QuantizationSearchParams(rescore=True, oversampling=oversampling),
        ),
        request=request,
    )
    return _query(plan, vectors, hnsw_ef, kit, edge_filter(plan.filter), rescoring)


def client_query(
    plan: SearchPlan,
    vectors: dict[str, np.ndarray],
    *,
    hnsw_ef: int | None = None,
    rescoring: Rescoring = Rescoring(),
) -> dict[str, Any]:
    """A SearchPlan as keyword arguments of ``QdrantClient.query_points``."""
    m = _deps.models()

    def request(r: _Request) -> dict[str, Any]:
        vector, using = r.nearest if r.nearest is not None else (None, None)
        return {
            "limit": r.limit,
            "query": m.RrfQuery(rrf=m.Rrf(k=r.rrf_k)) if r.nearest is None else vector,
            "using": using,
            "prefetch": r.prefetches or None,
            "search_params": r.params,
            "query_filter": r.filter,
            "with_payload": True,
        }

    kit = _QueryKit(
        prefetch=lambda vector, field, limit, inner, params: m.Prefetch(
            query=vector, using=field, limit=limit, prefetch=inner or None, params=params
        ),
        search_params=lambda ef, oversampling: m.SearchParams(
            hnsw_ef=ef,
            quantization=None
            if oversampling is None
            else m.QuantizationSearchParams(rescore=True, oversampling=oversampling),
        ),
        request=request,
    )
    kwargs: dict[str, Any] = _query(
        plan, vectors, hnsw_ef, kit, client_filter(plan.filter), rescoring
    )
    return kwargs

"""The struct layout: token vectors as an Array of Structs field, MaxSim on the server.

Milvus >= 2.6.4 stores a document's (t, 128) token matrix as ``multi``, an ARRAY of STRUCT
``{vec: FLOAT_VECTOR(128)}`` with ``max_capacity`` = the most tokens one document may have,
indexed with ``MAX_SIM_COSINE``; queries pass the query tokens as one ``EmbeddingList``.
Restricting a MaxSim search to candidates is a ``pk in [...]`` filter, so every cascade
stage runs on the server. Sub-fields are FLOAT_VECTOR only: float16 storage is emulated by
sending the float16-rounded values (scores equal the float16 spec), not by halving bytes.

``max_capacity``: the most token vectors one record may have. The bound is a fact of the
model (image tokens at its pixel budget, text chunk size plus prompt), so the caller passes
it as ``max_tokens`` (the application asks the loaded model: ``jina_vdb.sizing``). Without
one, ``DEFAULT_MAX_TOKENS`` (1024) is used: room for one jina-embeddings-v4 image at its
default pixel budget (768 image tokens plus the template). Milvus caps an array at 4096
elements unless the server's ``proxy.maxArrayCapacity`` is raised. A record over the cap
is refused before writing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import SchemaMismatchError
from .convert import (
    HNSW_MIN_EF,
    PAYLOAD,
    PK,
    Layout,
    dense_search_params,
    in_expr,
    pymilvus,
)
from .layout import Scored, TokenLayout, parse_hits

logger = logging.getLogger(__name__)

VEC = "vec"
METRIC = "MAX_SIM_COSINE"
#: Default max_capacity when the caller gives no ``max_tokens``.
DEFAULT_MAX_TOKENS = 1024
#: Milvus' default cap on any array's max_capacity (proxy.maxArrayCapacity).
SERVER_ARRAY_CAP = 4096
HNSW_BUILD = {"M": 16, "efConstruction": 200}


def sub_field(spec_field: str) -> str:
    """``multi`` -> ``multi[vec]``: how Milvus names a struct sub-field in indexes and searches."""
    return f"{spec_field}[{VEC}]"


def add_struct_field(schema: Any, field: str, dim: int, max_tokens: int) -> None:
    """Add ``field`` as ARRAY<STRUCT{vec: FLOAT_VECTOR(dim)}> with ``max_capacity=max_tokens``."""
    DataType = pymilvus().DataType
    struct = pymilvus().MilvusClient.create_struct_field_schema()
    struct.add_field(VEC, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field(
        field,
        DataType.ARRAY,
        element_type=DataType.STRUCT,
        struct_schema=struct,
        max_capacity=max_tokens,
    )


def add_struct_index(index_params: Any, field: str) -> None:
    """MAX_SIM_COSINE over the embedding list (HNSW, the type Milvus documents for it)."""
    index_params.add_index(
        field_name=sub_field(field),
        index_name=f"{field}_maxsim",
        index_type="HNSW",
        metric_type=METRIC,
        params=dict(HNSW_BUILD),
    )


def embedding_list(tokens: np.ndarray) -> Any:
    """The query's (q, 128) tokens as one pymilvus EmbeddingList."""
    from pymilvus.client.embedding_list import EmbeddingList  # noqa: PLC0415 - lazy, like every pymilvus import

    return EmbeddingList(np.asarray(tokens, dtype=np.float32))


def maxsim_search_params(limit: int) -> dict[str, Any]:
    return {"metric_type": METRIC, "params": {"ef": max(limit, HNSW_MIN_EF)}}


def maxsim_request(field: str, tokens: np.ndarray, limit: int, expr: str) -> dict[str, Any]:
    """Keyword arguments of ``MilvusClient.search`` for a MaxSim stage."""
    return {
        "data": [embedding_list(tokens)],
        "anns_field": sub_field(field),
        "limit": limit,
        "filter": expr,
        "output_fields": [PAYLOAD],
        "search_params": maxsim_search_params(limit),
    }


def maxsim_stage_request(
    field: str,
    tokens: np.ndarray,
    limit: int,
    expr: str = "",
    candidates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A MaxSim stage's ``search`` arguments: over ``candidates`` (a later stage: the previous
    stage's primary keys, already filtered), or over every row matching ``expr`` (a first
    stage)."""
    restrict = in_expr(PK, candidates) if candidates is not None else expr
    return maxsim_request(field, tokens, limit, restrict)


def fusion_request(
    dense_field: str,
    dense: np.ndarray,
    multi_field: str,
    tokens: np.ndarray,
    candidates: Sequence[str],
    prefetch: int,
    limit: int,
    expr: str,
    rrf_k: int,
    ef: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``MilvusClient.hybrid_search``: RRF of the dense ranking and MaxSim
    over the same dense candidates (the SearchPlan's fusion), in one server round trip
    (``ef``: the dense search's breadth under a filter, ``convert.filtered_ef``)."""
    AnnSearchRequest, RRFRanker = pymilvus().AnnSearchRequest, pymilvus().RRFRanker

    reqs = [
        AnnSearchRequest(
            data=[np.asarray(dense, dtype=np.float32).tolist()],
            anns_field=dense_field,
            param=dense_search_params(prefetch, ef=ef),
            limit=prefetch,
            expr=expr or None,
        ),
        AnnSearchRequest(
            data=[embedding_list(tokens)],
            anns_field=sub_field(multi_field),
            param=maxsim_search_params(prefetch),
            limit=prefetch,
            expr=in_expr(PK, candidates),
        ),
    ]
    return {"reqs": reqs, "ranker": RRFRanker(k=rrf_k), "limit": limit, "output_fields": [PAYLOAD]}


def struct_value(tokens: np.ndarray) -> list[dict[str, Any]]:
    """A document's tokens as the struct array value: ``[{"vec": [...]}, ...]``."""
    return [{VEC: v} for v in np.asarray(tokens, dtype=np.float32)]


def with_struct_tokens(
    field: str, rows: list[dict[str, Any]], tokens: Sequence[np.ndarray]
) -> list[dict[str, Any]]:
    """The documents ``rows`` with each one's token matrix as its ``field`` value (in place)."""
    for row, toks in zip(rows, tokens, strict=True):
        row[field] = struct_value(toks)
    return rows


class StructLayout(TokenLayout):
    """Token vectors in an Array of Structs field of the documents collection."""

    kind = Layout.STRUCT

    @property
    def field(self) -> str:
        return self.target.spec.multivector_field

    def extend_schema(self, schema: Any) -> None:
        add_struct_field(
            schema,
            self.field,
            self.target.spec.multivector_dim,
            self.target.max_tokens or DEFAULT_MAX_TOKENS,
        )

    def extend_indexes(self, index_params: Any) -> None:
        add_struct_index(index_params, self.field)

    def verify(self, description: dict[str, Any]) -> None:
        """The silent-drop guard: Milvus Lite accepts a struct field and then leaves it out."""
        fields = {f["name"]: f for f in description.get("fields", [])}
        # describe_collection lists a struct field among "fields" with its "struct_fields".
        sub = {s.get("name") for s in (fields.get(self.field) or {}).get("struct_fields", [])}
        if VEC not in sub:
            raise SchemaMismatchError(
                f"the server dropped the Array of Structs field {self.field!r} "
                f"of collection {self.target.name!r} "
                f"(fields it kept: {sorted(fields)}): it does not support layout='struct' "
                "(Milvus Lite and Milvus < 2.6.4 don't); use layout='packed' or 'auto'"
            )

    def write(
        self, keys: Sequence[str], rows: list[dict[str, Any]], tokens: Sequence[np.ndarray]
    ) -> None:
        rows = with_struct_tokens(self.field, rows, tokens)
        self.target.client.upsert(self.target.name, rows, **self.target.request)

    def rerank(
        self,
        tokens: np.ndarray,
        candidates: Sequence[str],
        limit: int,
        known: dict[str, dict[str, Any]] | None = None,
    ) -> list[Scored]:
        request = maxsim_stage_request(self.field, tokens, limit, candidates=candidates)
        return self.send(request)

    def score_all(self, tokens: np.ndarray, expr: str, limit: int) -> list[Scored]:
        return self.send(maxsim_stage_request(self.field, tokens, limit, expr))

    def send(self, request: dict[str, Any]) -> list[Scored]:
        """One ``search`` of the documents collection (read options added) and its hits."""
        t = self.target
        return parse_hits(t.client.search(t.name, **request, **t.read))

    def fuse(self, request: dict[str, Any]) -> list[Scored]:
        """Server-side RRF: one ``hybrid_search`` (``fusion_request``'s arguments)."""
        t = self.target
        return parse_hits(t.client.hybrid_search(t.name, **request, **t.read))

    def tokens_of(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        t = self.target
        rows = t.rows(t.name, keys, [self.field])
        return {r[PK]: np.asarray([e[VEC] for e in r[self.field]], dtype=np.float32) for r in rows}

"""Collection schemas: a CollectionSpec as qdrant-edge / qdrant-client vector params, and back.

Named vectors: ``dense`` (dim, cosine, optional int8 / binary), ``dense_<k>`` per Matryoshka
prefix, ``multi`` (128, cosine, MaxSim, HNSW m=0, float16 by default, optional int8 /
binary) and, with ``spec.muvera``, ``muvera`` (the MUVERA encoding, dot product: its norm is
part of the MaxSim estimate). A quantized field keeps its originals too (for rescoring): the
quantized copy is pinned in RAM, the originals follow the field's placement. The spec itself
is stored next to the collection (metadata / a json file) so ``open()`` reads it back.

Placement (``multivector_on_disk`` / ``dense_on_disk``): on disk is Qdrant's ``on_disk``
(server) or ``Memory.Cold`` (qdrant-edge): memory-mapped, never read in whole; in RAM is the
default placement, which qdrant-edge keeps as a mapping it reads through when a segment loads
(page cache: it shows in RSS as file-backed pages, not as anonymous memory). Token vectors are
~90% of a collection's bytes and are only read for the candidates of a MaxSim rerank, so they
go on disk by default; dense vectors and their HNSW graphs stay in RAM.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import token_codec
from ..errors import SchemaMismatchError
from ..payload_index import PayloadIndexes, PayloadType
from ..spec import CollectionSpec, Quantization, VectorDtype
from . import _deps

#: Collection metadata key (qdrant-client) / json file key (qdrant-edge) holding the spec.
SPEC_KEY = "jina_vdb"
SPEC_FORMAT = 1
#: Token vectors are only rescored, never searched through a graph (SPEC: m=0).
MULTI_HNSW_M = 0
#: Scalar int8 quantisation keeps 99% of the value range; the tails are clipped.
INT8_QUANTILE = 0.99


@dataclass(frozen=True)
class EdgeTuning:
    """Engine settings of a new qdrant-edge shard (not part of the spec: results do not change)."""

    #: HNSW graph of the dense fields (the token field always has m=0).
    m: int = 16
    ef_construct: int = 100
    #: KB of vectors per segment below which a search scans instead of walking the graph.
    full_scan_threshold: int = 10_000
    #: Largest segment the optimizer builds, in KB of stored vectors. It bounds the memory of
    #: one optimize run and stops the merge optimizer from rewriting the whole collection into
    #: ever larger segments (it did: ingest peaks grew with the collection, 19.5 GB in issue 15).
    #: One run maps the source segment twice (VmRSS counts those pages twice, Pss once) and
    #: writes the new one: measured, RSS rises by ~3x this (~450 MB at 128 MiB, ~800 MB at
    #: 256 MiB), all of it file-backed pages. 128 MiB doubles the segments of 256 MiB; warm
    #: dense/hybrid latency rose ~5-10% at 7k documents (6 segments instead of 4).
    max_segment_kb: int = 128 * 1024


def _memory(on_disk: bool | None) -> Any:
    """qdrant-edge placement: Cold (mapped, read on demand) or None (the default: Cached)."""
    return _deps.edge().Memory.Cold if on_disk else None


def _named_vectors(
    spec: CollectionSpec,
    dense: Callable[[int, Quantization, bool], Any],
    tokens: Callable[[int, VectorDtype, bool, Quantization], Any],
    encoding: Callable[[int, bool], Any],
) -> dict[str, Any]:
    """The named vectors of a spec in one flavour, written once for both.

    ``dense(size, quantization, on_disk)``, ``tokens(size, dtype, on_disk, quantization)``
    and ``encoding(size, on_disk)`` (the MUVERA field: dot product) build one flavour's
    params; every dense field is stored as ``spec.dense_dtype``. uint8 tokens are wider by
    the codec's sum-correction bytes (token_codec.py) and scored by dot product.
    """
    on_disk = bool(spec.dense_on_disk)
    vectors = {spec.dense_field: dense(spec.dim, spec.quantization, on_disk)}
    for k in spec.prefetch_dims:
        vectors[spec.prefix_field(k)] = dense(k, Quantization.NONE, on_disk)
    if spec.multivector:
        tokens_on_disk = bool(spec.multivector_on_disk)
        vectors[spec.multivector_field] = tokens(
            token_width(spec), spec.multivector_dtype, tokens_on_disk, spec.multivector_quantization
        )
    if spec.muvera is not None:
        vectors[spec.muvera_field] = encoding(spec.muvera.dim, on_disk)
    return vectors


def token_width(spec: CollectionSpec) -> int:
    """Stored width of a token vector: uint8 adds the codec's correction bytes."""
    extra = token_codec.EXTRA if spec.multivector_dtype is VectorDtype.UINT8 else 0
    return spec.multivector_dim + extra


def quantized_fields(spec: CollectionSpec) -> frozenset[str]:
    """The named vectors that have a quantized copy (searched with rescoring)."""
    fields = set()
    if spec.quantization is not Quantization.NONE:
        fields.add(spec.dense_field)
    if spec.multivector and spec.multivector_quantization is not Quantization.NONE:
        fields.add(spec.multivector_field)
    return frozenset(fields)


def _edge_quantization(quantization: Quantization) -> Any:
    """qdrant-edge quantization config; the quantized copy is pinned in RAM (the originals
    stay where the placement says: a rescore reads only its candidates' pages)."""
    qe = _deps.edge()
    if quantization is Quantization.INT8:
        return qe.ScalarQuantizationConfig(
            qe.ScalarType.Int8, quantile=INT8_QUANTILE, memory=qe.Memory.Pinned
        )
    if quantization is Quantization.BINARY:
        return qe.BinaryQuantizationConfig(memory=qe.Memory.Pinned)
    return None


def edge_config(spec: CollectionSpec, tuning: EdgeTuning) -> Any:
    """The ``qdrant_edge.EdgeConfig`` of a spec: named vectors dense, dense_<k>, multi."""
    qe = _deps.edge()
    storage = qe.VectorStorageDatatype
    datatypes = {
        VectorDtype.FLOAT32: storage.Float32,
        VectorDtype.FLOAT16: storage.Float16,
        VectorDtype.UINT8: storage.Uint8,
    }
    dense_type = datatypes[spec.dense_dtype]

    def dense(size: int, quantization: Quantization, on_disk: bool) -> Any:
        return qe.EdgeVectorParams(
            size=size,
            distance=qe.Distance.Cosine,
            datatype=dense_type,
            quantization_config=_edge_quantization(quantization),
            memory=_memory(on_disk),
        )

    def tokens(size: int, dtype: VectorDtype, on_disk: bool, quantization: Quantization) -> Any:
        uint8 = dtype is VectorDtype.UINT8
        return qe.EdgeVectorParams(
            size=size,
            distance=qe.Distance.Dot if uint8 else qe.Distance.Cosine,
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
            datatype=datatypes[dtype],
            quantization_config=_edge_quantization(quantization),
            # HnswIndexConfig needs all three numbers; only m=0 matters (no graph).
            hnsw_config=qe.HnswIndexConfig(
                m=MULTI_HNSW_M,
                ef_construct=tuning.ef_construct,
                full_scan_threshold=tuning.full_scan_threshold,
            ),
            memory=_memory(on_disk),
        )

    def encoding(size: int, on_disk: bool) -> Any:
        return qe.EdgeVectorParams(
            size=size, distance=qe.Distance.Dot, datatype=dense_type, memory=_memory(on_disk)
        )

    graph = qe.HnswIndexConfig(
        m=tuning.m,
        ef_construct=tuning.ef_construct,
        full_scan_threshold=tuning.full_scan_threshold,
        memory=_memory(spec.dense_on_disk),
    )
    optimizers = qe.EdgeOptimizersConfig(max_segment_size=tuning.max_segment_kb)
    vectors = _named_vectors(spec, dense, tokens, encoding)
    return qe.EdgeConfig(vectors=vectors, hnsw_config=graph, optimizers=optimizers)


def _client_quantization(quantization: Quantization) -> Any:
    """qdrant-client quantization config (the quantized copy always in RAM)."""
    m = _deps.models()
    if quantization is Quantization.INT8:
        return m.ScalarQuantization(
            scalar=m.ScalarQuantizationConfig(
                type=m.ScalarType.INT8, quantile=INT8_QUANTILE, always_ram=True
            )
        )
    if quantization is Quantization.BINARY:
        return m.BinaryQuantization(binary=m.BinaryQuantizationConfig(always_ram=True))
    return None


def client_vectors_config(spec: CollectionSpec) -> dict[str, Any]:
    """``vectors_config`` for ``QdrantClient.create_collection``."""
    m = _deps.models()
    datatypes = {
        VectorDtype.FLOAT32: m.Datatype.FLOAT32,
        VectorDtype.FLOAT16: m.Datatype.FLOAT16,
        VectorDtype.UINT8: m.Datatype.UINT8,
    }
    # float32 is left unset (the server's default), as collections made before dense_dtype.
    dense_type = None if spec.dense_dtype is VectorDtype.FLOAT32 else datatypes[spec.dense_dtype]

    def dense(size: int, quantization: Quantization, on_disk: bool) -> Any:
        return m.VectorParams(
            size=size,
            distance=m.Distance.COSINE,
            datatype=dense_type,
            quantization_config=_client_quantization(quantization),
            on_disk=True if on_disk else None,
            hnsw_config=m.HnswConfigDiff(on_disk=True) if on_disk else None,
        )

    def tokens(size: int, dtype: VectorDtype, on_disk: bool, quantization: Quantization) -> Any:
        uint8 = dtype is VectorDtype.UINT8
        return m.VectorParams(
            size=size,
            distance=m.Distance.DOT if uint8 else m.Distance.COSINE,
            multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
            hnsw_config=m.HnswConfigDiff(m=MULTI_HNSW_M),
            datatype=datatypes[dtype],
            quantization_config=_client_quantization(quantization),
            on_disk=True if on_disk else None,
        )

    def encoding(size: int, on_disk: bool) -> Any:
        return m.VectorParams(
            size=size,
            distance=m.Distance.DOT,
            datatype=dense_type,
            on_disk=True if on_disk else None,
            hnsw_config=m.HnswConfigDiff(on_disk=True) if on_disk else None,
        )

    return _named_vectors(spec, dense, tokens, encoding)


def spec_metadata(spec: CollectionSpec) -> dict[str, Any]:
    """What is stored next to a collection so ``open()`` can read the spec back."""
    return {SPEC_KEY: {"format": SPEC_FORMAT, "spec": spec.to_dict()}}


def spec_from_metadata(metadata: dict[str, Any] | None) -> CollectionSpec | None:
    """The spec written by ``spec_metadata`` (None when absent)."""
    entry = (metadata or {}).get(SPEC_KEY)
    if not isinstance(entry, dict) or "spec" not in entry:
        return None
    return CollectionSpec.from_dict(entry["spec"])


_PREFIX = re.compile(r"^dense_(\d+)$")


def spec_from_client_params(
    name: str, vectors: Any, collection_quantization: Any = None
) -> CollectionSpec:
    """Derive a spec from an existing collection's vector params (one not created by jina-vdb).

    Raises SchemaMismatchError when the collection lacks the named vectors jina-vdb uses.
    """
    m = _deps.models()
    if not isinstance(vectors, dict) or "dense" not in vectors:
        raise SchemaMismatchError(
            f"collection {name!r} has no named vector 'dense' (vectors: {vectors!r}); it was not "
            "created by jina-vdb: use another collection name"
        )
    dense = vectors["dense"]
    multi = vectors.get("multi")
    if multi is not None and multi.multivector_config is None:
        raise SchemaMismatchError(f"collection {name!r}: vector 'multi' is not a multivector")
    tokens: dict[str, Any] = {"multivector": multi is not None}
    if multi is not None:  # a dense-only collection keeps the spec defaults for token fields
        float16 = multi.datatype == m.Datatype.FLOAT16
        tokens.update(
            multivector_dtype=VectorDtype.FLOAT16 if float16 else VectorDtype.FLOAT32,
            multivector_dim=multi.size,
            multivector_on_disk=bool(multi.on_disk),
            multivector_quantization=_read_quantization(
                multi.quantization_config or collection_quantization
            ),
        )
    return CollectionSpec(
        dense_on_disk=bool(dense.on_disk),
        dim=dense.size,
        prefetch_dims=tuple(int(mt.group(1)) for key in vectors if (mt := _PREFIX.match(key))),
        quantization=_read_quantization(dense.quantization_config or collection_quantization),
        **tokens,
    )


def _read_quantization(config: Any) -> Quantization:
    """The Quantization of a qdrant-client quantization config (None: none).

    Product quantization (or a scalar type other than int8) is no option of the spec: the
    collection was not made by jina-vdb, and reading it as unquantized would misdescribe it.
    """
    m = _deps.models()
    if config is None:
        return Quantization.NONE
    if isinstance(config, m.ScalarQuantization) and config.scalar.type == m.ScalarType.INT8:
        return Quantization.INT8
    if isinstance(config, m.BinaryQuantization):
        return Quantization.BINARY
    raise SchemaMismatchError(
        f"quantization {type(config).__name__} is not one jina-vdb uses (int8 scalar, binary)"
    )


def edge_index_operations(indexes: PayloadIndexes) -> list[Any]:
    """qdrant-edge update operations creating these payload indexes."""
    qe = _deps.edge()
    types = {
        PayloadType.KEYWORD: qe.PayloadSchemaType.Keyword,
        PayloadType.INTEGER: qe.PayloadSchemaType.Integer,
        PayloadType.FLOAT: qe.PayloadSchemaType.Float,
        PayloadType.BOOL: qe.PayloadSchemaType.Bool,
    }
    return [qe.UpdateOperation.create_field_index(key, types[kind]) for key, kind in indexes]


def client_index_schema(kind: PayloadType) -> Any:
    """qdrant-client's ``field_schema`` for a payload index of this type."""
    m = _deps.models()
    return {
        PayloadType.KEYWORD: m.PayloadSchemaType.KEYWORD,
        PayloadType.INTEGER: m.PayloadSchemaType.INTEGER,
        PayloadType.FLOAT: m.PayloadSchemaType.FLOAT,
        PayloadType.BOOL: m.PayloadSchemaType.BOOL,
    }[kind]

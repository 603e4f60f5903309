"""Record: one document as stored (id, dense, token vectors, payload), and its validation."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import token_codec
from .errors import RecordError
from .muvera import encode_document
from .payload import MAX_PAYLOAD_BYTES, PayloadError, check_payload_values, payload_nbytes
from .payload_index import check_indexed_values
from .pooling import pool_tokens
from .spec import CollectionSpec, VectorDtype
from .vectors import l2_normalize, matryoshka_prefix

RecordId = int | str

#: Payload keys the connectors use themselves; user payloads may not set them.
RESERVED_PAYLOAD_KEYS = frozenset({"_jvdb_id"})

#: Namespace for mapping string ids to stable UUIDs (Qdrant accepts only ints and UUIDs).
ID_NAMESPACE = uuid.UUID("6f1f3c2e-5b7a-4d44-9a52-0c1e7c4b9a11")


class EmbeddingBatchLike(Protocol):
    """What the connectors need from ``embedder.EmbeddingBatch`` (numpy only, no torch)."""

    dense: np.ndarray
    multivectors: list[np.ndarray] | None


@dataclass
class Record:
    """One document: a dense vector, optionally its token vectors, and a JSON payload.

    Attributes:
        id: a non-negative int or a non-empty string (re-upserting an id overwrites it).
        dense: (d,) float vector, d = the collection's dim (or longer: Matryoshka-truncated).
            None only in records read back with ``get(..., with_vectors=False)``.
        multivector: (t, 128) token vectors, t >= 1; required when the collection has them.
        payload: JSON-serialisable dict, filterable.
    """

    id: RecordId
    dense: np.ndarray | None
    multivector: np.ndarray | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedRecord:
    """A validated record with every stored vector computed, ready for a backend to convert."""

    id: RecordId
    vectors: dict[str, np.ndarray]  # field name -> (d,) float32 or (t, 128) in storage dtype
    payload: dict[str, Any]
    nbytes: int  # estimated request size, for byte-bounded batches
    payload_bytes: int = 2  # the payload as compact UTF-8 JSON (Milvus limits this)


def stable_uuid(record_id: RecordId) -> str:
    """The UUID a string id maps to: the same string always gives the same UUID."""
    return str(uuid.uuid5(ID_NAMESPACE, str(record_id)))


def check_id(record_id: object, *, index: int | None = None) -> RecordId:
    """Validate one id (non-negative int < 2**63 or non-empty string)."""
    if isinstance(record_id, bool) or not isinstance(record_id, int | str):
        raise RecordError(
            f"id must be an int or str, got {type(record_id).__name__}",
            index=index,
            record_id=record_id,
        )
    if isinstance(record_id, int) and not 0 <= record_id < 2**63:
        raise RecordError("int ids must be in [0, 2**63)", index=index, record_id=record_id)
    if isinstance(record_id, str) and not record_id.strip():
        raise RecordError("string ids must not be empty", index=index, record_id=record_id)
    return record_id


def check_ids(ids: object) -> list[RecordId]:
    """A list of ids for ``get`` / ``delete``: any iterable of ids, never a bare id or string.

    A string is refused rather than read as its characters (``get("abc")`` would otherwise
    ask for "a", "b" and "c"); each id is checked like a record's (``ids[i]`` names it).
    """
    if isinstance(ids, str | bytes | bytearray | Mapping) or not isinstance(ids, Iterable):
        raise TypeError(
            f"ids must be a list of ints or strings, got {type(ids).__name__} {ids!r:.80}; "
            "for one id pass a list: [id]"
        )
    return [check_id(i, index=n) for n, i in enumerate(ids)]


def _check_vector(
    name: str, value: object, shape: tuple[int | None, ...], **where: Any
) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused below
            arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise RecordError(f"{name} is not a numeric array ({e})", **where) from e
    wrong = arr.ndim != len(shape) or any(
        s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)
    )
    if wrong:
        expected = "x".join("t" if s is None else str(s) for s in shape)
        raise RecordError(f"{name} must have shape ({expected}), got {arr.shape}", **where)
    if not np.isfinite(arr).all():
        raise RecordError(
            f"{name} contains NaN or inf (or values beyond float32's range, ~3.4e38)", **where
        )
    if arr.size == 0:
        raise RecordError(f"{name} is empty", **where)
    if (np.abs(arr).max(axis=-1) == 0).any():
        raise RecordError(f"{name} has an all-zero vector (cosine is undefined)", **where)
    return arr


def _check_payload(
    payload: object, max_bytes: int | None, **where: Any
) -> tuple[dict[str, Any], int]:
    """The payload as a dict and its JSON size; RecordError naming the bad value otherwise."""
    if payload is None:
        return {}, 2
    if not isinstance(payload, Mapping):
        raise RecordError(f"payload must be a dict, got {type(payload).__name__}", **where)
    try:
        check_payload_values(payload)
    except PayloadError as e:
        raise RecordError(str(e), **where) from None
    reserved = sorted(RESERVED_PAYLOAD_KEYS & set(payload))
    if reserved:
        raise RecordError(f"payload keys {reserved} are reserved by jina-vdb", **where)
    nbytes = payload_nbytes(payload)
    if max_bytes is not None and nbytes > max_bytes:
        raise RecordError(
            f"payload is {nbytes} bytes as JSON; this store takes at most {max_bytes}",
            **where,
        )
    return dict(payload), nbytes


def prepare_record(
    record: Record,
    spec: CollectionSpec,
    *,
    index: int | None = None,
    max_payload_bytes: int | None = MAX_PAYLOAD_BYTES,
) -> PreparedRecord:
    """Validate a record against a spec and compute every stored vector.

    A dense vector longer than ``spec.dim`` is Matryoshka-truncated (and renormalised);
    a shorter one is an error. Token vectors are pooled when the spec sets
    ``token_pooling`` (``connectors.pooling``). Raises RecordError naming the record.
    """
    record_id = check_id(record.id, index=index)
    where: dict[str, Any] = {"index": index, "record_id": record_id}
    dense = _check_vector("dense", record.dense, (None,), **where)
    if dense.shape[0] < spec.dim:
        raise RecordError(
            f"dense has {dense.shape[0]} dims, the collection needs {spec.dim}", **where
        )
    vectors: dict[str, np.ndarray] = {spec.dense_field: matryoshka_prefix(dense, spec.dim)}
    for k in spec.prefetch_dims:
        vectors[spec.prefix_field(k)] = matryoshka_prefix(dense, k)
    nbytes = 4 * sum(v.size for v in vectors.values())
    if spec.multivector:
        if record.multivector is None:
            raise RecordError(
                "multivector is missing but the collection stores token vectors", **where
            )
        multi = _check_vector(
            "multivector", record.multivector, (None, spec.multivector_dim), **where
        )
        if spec.token_pooling is not None:  # documents only: queries never pass here
            multi = pool_tokens(multi, spec.token_pooling)
        unit = l2_normalize(multi)
        if spec.multivector_dtype is VectorDtype.UINT8:
            multi = token_codec.to_codes(unit)  # (t, 128) uint8: what the store keeps
        else:
            dtype = np.float16 if spec.multivector_dtype is VectorDtype.FLOAT16 else np.float32
            multi = unit.astype(dtype)
        vectors[spec.multivector_field] = multi
        nbytes += multi.nbytes
        if spec.muvera is not None:  # the stored (pooled) tokens in float32, like the query
            fde = encode_document(unit, spec.muvera)
            vectors[spec.muvera_field] = fde
            nbytes += fde.nbytes
    elif record.multivector is not None:
        raise RecordError(
            "multivector given but the collection was created with multivector=False", **where
        )
    payload, payload_bytes = _check_payload(record.payload, max_payload_bytes, **where)
    check_indexed_values(payload, spec.payload_indexes, **where)
    nbytes += payload_bytes + 64
    return PreparedRecord(
        id=record_id, vectors=vectors, payload=payload, nbytes=nbytes, payload_bytes=payload_bytes
    )


def prepare_records(
    records: Sequence[Record],
    spec: CollectionSpec,
    check: Callable[[PreparedRecord, int], None] | None = None,
) -> list[PreparedRecord]:
    """Validate a whole batch before anything is written; duplicate ids in a batch are an error.

    ``check(prepared, index)`` adds a backend's own limits (raising RecordError naming it).
    """
    prepared = []
    seen: dict[RecordId, int] = {}
    for i, record in enumerate(records):
        if not isinstance(record, Record):
            raise RecordError(f"expected a Record, got {type(record).__name__}", index=i)
        p = prepare_record(record, spec, index=i)
        if p.id in seen:
            raise RecordError(
                f"duplicate id in one batch (also record {seen[p.id]})", index=i, record_id=p.id
            )
        if check is not None:
            check(p, i)
        seen[p.id] = i
        prepared.append(p)
    return prepared


def records_from_batch(
    batch: EmbeddingBatchLike,
    ids: Sequence[RecordId],
    payloads: Sequence[dict[str, Any] | None] | None = None,
) -> list[Record]:
    """Turn an embedder output (``.dense`` (n, d), ``.multivectors`` [(t_i, 128)]) into records."""
    n = len(batch.dense)
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} ids for a batch of {n} embeddings")
    if payloads is not None and len(payloads) != n:
        raise ValueError(f"got {len(payloads)} payloads for a batch of {n} embeddings")
    multis = batch.multivectors
    if multis is not None and len(multis) != n:
        raise ValueError(f"batch has {len(multis)} multivectors for {n} dense vectors")
    return [
        Record(
            id=ids[i],
            dense=batch.dense[i],
            multivector=None if multis is None else multis[i],
            payload=dict(payloads[i] or {}) if payloads is not None else {},
        )
        for i in range(n)
    ]


def byte_bounded_chunks(
    items: Sequence[PreparedRecord], max_bytes: int, max_count: int
) -> list[list[PreparedRecord]]:
    """Split records into request-sized chunks (a single oversized record gets a chunk alone)."""
    chunks: list[list[PreparedRecord]] = []
    current: list[PreparedRecord] = []
    size = 0
    for item in items:
        if current and (size + item.nbytes > max_bytes or len(current) >= max_count):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item.nbytes
    if current:
        chunks.append(current)
    return chunks

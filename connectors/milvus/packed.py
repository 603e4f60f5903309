"""The packed layout: each document's token matrix in a few rows of ``<name>__tokens``.

The default wherever Array of Structs is missing (Milvus Lite, servers < 2.6.4). A row holds
up to ``tokens_per_row`` consecutive token vectors as the base64 of their little-endian bytes
in the storage dtype (float16: 256 bytes per 128-d token; uint8, token_codec.py's codes: 128)
in a VARCHAR field: ``(pk = "<doc pk>#g<gen>.<part>", doc_id, blob VARCHAR(65535), stub
FLOAT_VECTOR(2))``. A 300-token float16 document is 2 rows (uint8: 1), where the token-row
layout (token_rows.py) takes 300, so a hybrid search fetches its ~100 candidates' tokens in
one read by primary key (on Milvus Lite, from its in-process engine: lite_engine.py).

Why a VARCHAR: Milvus Lite 3.x has no FLOAT16 / BINARY vector type, and returns a
FLOAT_VECTOR value element by element through Python floats (the token-row layout's cost:
~60 us per 128-d row); a string goes through as one buffer. VARCHAR holds at most 65,535
bytes on every Milvus, so 191 float16 (95 float32, 383 uint8) tokens of 128 dims per row; a longer
document takes as many rows as it needs (``tokens_per_row`` is recorded in the collection's
properties). Milvus needs a vector field in every collection: ``stub`` is two zeros, FLAT,
never searched.

Memory: Milvus Lite reads a whole collection into memory the first time a request names it.
``count``, ``info`` and dense searches never name ``<name>__tokens``; the first search that
needs token vectors loads it (about 1.33x the float16 bytes of every token: the base64 text),
not the ~8x of float32 rows with their keys that the token-row layout holds.
"""

from __future__ import annotations

import importlib
import logging
import math
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from .. import token_codec
from ..errors import (
    ConnectorError,
    MissingDependencyError,
    SchemaMismatchError,
    UnsupportedSpecError,
)
from ..spec import CollectionSpec, VectorDtype
from .companion import DOC_ID, Blocks, CompanionLayout, Owned, generation_key
from .convert import ID_MAX_BYTES, PK, Layout, pymilvus
from .layout import Target

logger = logging.getLogger(__name__)


@cache
def _pybase64() -> ModuleType:
    """``pybase64``, imported at first use: importing connectors.milvus needs no Milvus extra."""
    try:
        return importlib.import_module("pybase64")
    except ImportError as e:
        raise MissingDependencyError(
            "pybase64 is required for MilvusStore's packed layout: pip install 'jina-vdb[milvus]'"
        ) from e


BLOB = "blob"
STUB = "stub"
STUB_DIM = 2
#: VARCHAR max_length on every Milvus (servers refuse more; Lite enforces it too).
BLOB_MAX_CHARS = 65_535
#: Property recording the collection's rows' capacity (read back at open).
PROP_TOKENS_PER_ROW = "jvdb.tokens_per_row"
#: Base64 characters per write request and per fetch (the answer's size, ~1 request per
#: hybrid search of 100 candidates x 300 tokens; a scan streams through in such pieces).
WRITE_CHARS = 8 * 2**20
FETCH_CHARS = 16 * 2**20
#: Storage dtypes this layout can pack (little-endian on every machine). uint8: the codes of
#: token_codec.py (``round(127 d) + 128``, no sum-correction bytes: MaxSim runs in numpy).
_DTYPES: dict[VectorDtype, np.dtype[Any]] = {
    VectorDtype.FLOAT16: np.dtype("<f2"),
    VectorDtype.FLOAT32: np.dtype("<f4"),
    VectorDtype.UINT8: np.dtype("u1"),
}


def storage_dtype(spec: CollectionSpec) -> np.dtype[Any]:
    """The numpy dtype a packed row stores (UnsupportedSpecError for one it cannot pack)."""
    dtype = _DTYPES.get(spec.multivector_dtype)
    if dtype is None:
        valid = ", ".join(repr(d.value) for d in _DTYPES)
        raise UnsupportedSpecError(
            f"Milvus layout 'packed' stores token vectors as {valid}, not "
            f"{spec.multivector_dtype.value!r}"
        )
    return dtype


def tokens_per_row(spec: CollectionSpec) -> int:
    """Most token vectors whose base64 fits in one VARCHAR (191 for 128-d float16)."""
    token_bytes = spec.multivector_dim * storage_dtype(spec).itemsize
    fits = (BLOB_MAX_CHARS // 4 * 3) // token_bytes
    if fits < 1:
        raise UnsupportedSpecError(
            f"one {spec.multivector_dim}-d token vector takes {token_bytes} bytes; a packed "
            f"row holds at most {BLOB_MAX_CHARS // 4 * 3}: use layout='token_rows'"
        )
    return fits


def packed_schema() -> Any:
    """Schema of the companion collection in the packed layout."""
    DataType = pymilvus().DataType
    schema = pymilvus().MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(PK, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES + 32)
    schema.add_field(DOC_ID, DataType.VARCHAR, max_length=ID_MAX_BYTES)
    schema.add_field(BLOB, DataType.VARCHAR, max_length=BLOB_MAX_CHARS)
    schema.add_field(STUB, DataType.FLOAT_VECTOR, dim=STUB_DIM)
    return schema


def packed_index_params(varchar_index: str = "INVERTED") -> Any:
    """A scalar index on doc_id (deletes filter on it); FLAT on the stub (loading needs one)."""
    params = pymilvus().MilvusClient.prepare_index_params()
    params.add_index(
        field_name=DOC_ID, index_name=f"{DOC_ID}_{varchar_index.lower()}", index_type=varchar_index
    )
    params.add_index(
        field_name=STUB, index_name=f"{STUB}_flat", index_type="FLAT", metric_type="L2"
    )
    return params


class PackedLayout(CompanionLayout):
    """``tokens_per_row`` token vectors per companion row, base64 in a VARCHAR."""

    kind = Layout.PACKED

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._b64 = _pybase64()  # here, not at the first write: a plain MissingDependencyError
        self.dtype = storage_dtype(target.spec)
        self.tokens_per_row = tokens_per_row(target.spec)  # an existing one: from verify()
        self._set_fetch_size()

    def _set_fetch_size(self) -> None:
        token_bytes = self.target.spec.multivector_dim * self.dtype.itemsize
        row_chars = 4 * math.ceil(self.tokens_per_row * token_bytes / 3)
        self.rows_per_fetch = max(1, FETCH_CHARS // row_chars)

    def properties(self) -> dict[str, str]:
        return {PROP_TOKENS_PER_ROW: str(self.tokens_per_row)}

    def verify(self, description: dict[str, Any]) -> None:
        recorded = (description.get("properties") or {}).get(PROP_TOKENS_PER_ROW)
        try:
            per_row = int(str(recorded))
        except (TypeError, ValueError):
            raise SchemaMismatchError(
                f"collection {self.target.name!r} has layout 'packed' but no valid "
                f"{PROP_TOKENS_PER_ROW!r} property (got {recorded!r}); drop it and re-ingest"
            ) from None
        if per_row < 1:
            raise SchemaMismatchError(
                f"collection {self.target.name!r}: {PROP_TOKENS_PER_ROW} is {per_row}"
            )
        self.tokens_per_row = per_row
        self._set_fetch_size()

    def companion_schema(self) -> Any:
        return packed_schema()

    def companion_indexes(self) -> Any:
        return packed_index_params(self.target.server.varchar_index)

    def rows_of(self, key: str, gen: int, tokens: np.ndarray) -> list[dict[str, Any]]:
        data = np.ascontiguousarray(tokens, dtype=self.dtype)  # (t, dim)
        per = self.tokens_per_row
        b64 = self._b64
        return [
            {
                PK: generation_key(key, gen, part),
                DOC_ID: key,
                BLOB: b64.b64encode(data[start : start + per].tobytes()).decode("ascii"),
                STUB: [0.0] * STUB_DIM,
            }
            for part, start in enumerate(range(0, len(data), per))
        ]

    def row_keys(self, docs: dict[str, Owned]) -> dict[str, tuple[str, int]]:
        return {
            generation_key(key, gen, part): (key, part)
            for key, (n, gen) in docs.items()
            for part in range(math.ceil(n / self.tokens_per_row))
        }

    def fetch_fields(self) -> list[str]:
        return [BLOB]

    def _get_rows(self, keys: list[str]) -> list[dict[str, Any]]:
        """Straight from Milvus Lite's in-process engine where there is one (~10x faster than
        its gRPC loopback for a rerank's ~10 MB of rows: lite_engine.py)."""
        engine = self.target.engine
        if engine is not None:
            try:
                return engine.rows(self.tokens_name, keys, [BLOB])
            except Exception as e:  # noqa: BLE001 - gRPC gives the same rows, or a clear error
                logger.warning(
                    "reading token rows from Milvus Lite's engine failed (%s: %s); reading "
                    "them through gRPC from now on",
                    type(e).__name__,
                    e,
                )
                self.target.engine = None
        return super()._get_rows(keys)

    def flush_rows(self, batch: list[dict[str, Any]]) -> bool:
        return sum(len(row[BLOB]) for row in batch) >= WRITE_CHARS

    def decode(self, rows: list[dict[str, Any]], owners: dict[str, tuple[str, int]]) -> Blocks:
        dim = self.target.spec.multivector_dim
        token_bytes = dim * self.dtype.itemsize
        keys, starts, counts, raw = [], [], [], []
        b64 = self._b64
        for row in rows:
            key, part = owners[row[PK]]
            # pybase64 (SIMD) decodes ~90x faster than binascii: 0.6 ms, not ~25 ms, for a
            # hybrid search's 100 x 300 float16 tokens (10 MB of base64) on this machine.
            # validate=True is its fast path (and refuses any non-base64 character).
            data = b64.b64decode(row[BLOB], validate=True)
            count, rest = divmod(len(data), token_bytes)
            if rest or count > self.tokens_per_row:
                raise ConnectorError(
                    f"token row {row[PK]!r} of collection {self.target.name!r} holds "
                    f"{len(data)} bytes, not whole {dim}-d {self.dtype.name} tokens (at most "
                    f"{self.tokens_per_row}): the collection is damaged; re-ingest the document"
                )
            keys.append(key)
            starts.append(part * self.tokens_per_row)
            counts.append(count)
            raw.append(data)
        vectors = np.empty((sum(counts), dim), dtype=np.float32)  # (m, dim)
        if self.dtype == np.uint8:
            # One joined buffer (1 byte per dimension), decoded in one pass: a uint8 -> float32
            # cast is ~30x faster than float16's (no SIMD half conversion in numpy here).
            codes = np.frombuffer(b"".join(raw), np.uint8).reshape(-1, dim)
            token_codec.from_codes(codes, out=vectors)
        else:
            # Converted to float32 straight into one buffer (no joined float16 copy).
            offset = 0
            for data, count in zip(raw, counts, strict=True):
                block = np.frombuffer(data, self.dtype).reshape(count, dim)
                vectors[offset : offset + count] = block
                offset += count
        return keys, starts, np.asarray(counts, np.int64), vectors

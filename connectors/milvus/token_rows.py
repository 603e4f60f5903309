"""The token-row layout: one row per token vector in the companion collection ``<name>__tokens``.

Milvus's documented pattern before Array of Structs. Rows are ``(pk, doc_id, pos, vec
FLOAT_VECTOR(128))`` with a scalar index on ``doc_id`` (INVERTED; Trie on Milvus 2.3, which
has no INVERTED). Token vectors are never ANN-searched, so ``vec`` gets a FLAT index: it
costs nothing to build, where HNSW over ~300 rows per page dominated load time.

Superseded by the packed layout (packed.py) as the default wherever Array of Structs is
missing: a hybrid search here fetches ~300 rows per candidate (Milvus Lite: ~1.8 s at 2k
documents). Collections in this layout stay readable and writable, and ``layout='token_rows'``
still creates one. The generation protocol (atomic overwrites) is companion.py's; token-row
collections created before generations (no ``tok_gen`` field) keep ``"<doc pk>#<pos>"`` pks
(generation 0) and the old write order, with a warning at open: token rows first, the rows
past a shrunk length deleted, the documents rows last. The documents row's ``n_tokens`` bounds
every fetch, so rows at ``pos >= n_tokens`` (left by an interrupted shrink) are ignored.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .companion import (
    DOC_ID,
    Blocks,
    CompanionLayout,
    Owned,
    generation_key,
)
from .companion import (
    companion_name as companion_name,
)
from .convert import ID_MAX_BYTES, PK, TOKEN_GEN, Layout, in_expr, pymilvus
from .convert import N_TOKENS as N_TOKENS  # tests and callers read it here

logger = logging.getLogger(__name__)

POS = "pos"
VEC = "vec"
#: Token rows per write request (about 5 MB of float32 vectors).
ROWS_PER_REQUEST = 10_000


def token_schema(dim: int) -> Any:
    """Schema of the token collection."""
    DataType = pymilvus().DataType
    schema = pymilvus().MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(PK, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES + 16)
    schema.add_field(DOC_ID, DataType.VARCHAR, max_length=ID_MAX_BYTES)
    schema.add_field(POS, DataType.INT32)
    schema.add_field(VEC, DataType.FLOAT_VECTOR, dim=dim)
    return schema


def token_index_params(varchar_index: str = "INVERTED") -> Any:
    """A scalar index on doc_id (every delete filters on it); FLAT on the vectors (never
    ANN-searched). ``varchar_index``: INVERTED, or Trie on Milvus 2.3."""
    params = pymilvus().MilvusClient.prepare_index_params()
    params.add_index(
        field_name=DOC_ID, index_name=f"{DOC_ID}_{varchar_index.lower()}", index_type=varchar_index
    )
    params.add_index(
        field_name=VEC, index_name=f"{VEC}_flat", index_type="FLAT", metric_type="COSINE"
    )
    return params


def leftover_expr(shrunk: dict[str, int]) -> str:
    """Rows past each document's new length: ``(doc_id in [...] and pos >= n) or ...``."""
    by_length: dict[int, list[str]] = defaultdict(list)
    for key, n in shrunk.items():
        by_length[n].append(key)
    parts = [f"({in_expr(DOC_ID, keys)} and {POS} >= {n})" for n, keys in sorted(by_length.items())]
    return " or ".join(parts)


class TokenRowsLayout(CompanionLayout):
    """One companion row per token vector."""

    kind = Layout.TOKEN_ROWS

    def verify(self, description: dict[str, Any]) -> None:
        names = {f["name"] for f in description.get("fields", [])}
        self.generations = TOKEN_GEN in names
        if not self.generations:
            logger.warning(
                "Milvus collection %r predates atomic overwrites (no %r field): a record "
                "overwritten while the process dies can mix old and new token vectors; "
                "re-create it to get atomic overwrites",
                self.target.name,
                TOKEN_GEN,
            )

    def companion_schema(self) -> Any:
        return token_schema(self.target.spec.multivector_dim)

    def companion_indexes(self) -> Any:
        return token_index_params(self.target.server.varchar_index)

    def rows_of(self, key: str, gen: int, tokens: np.ndarray) -> list[dict[str, Any]]:
        vectors = tokens.astype(np.float32, copy=False)
        return [
            {PK: generation_key(key, gen, j), DOC_ID: key, POS: j, VEC: vectors[j]}
            for j in range(len(vectors))
        ]

    def row_keys(self, docs: dict[str, Owned]) -> dict[str, tuple[str, int]]:
        keys = {}
        for key, (n, gen) in docs.items():
            keys.update({generation_key(key, gen, j): (key, j) for j in range(n)})
        return keys

    def fetch_fields(self) -> list[str]:
        return [VEC]

    def flush_rows(self, batch: list[dict[str, Any]]) -> bool:
        return len(batch) >= ROWS_PER_REQUEST

    def decode(self, rows: list[dict[str, Any]], owners: dict[str, tuple[str, int]]) -> Blocks:
        found = [owners[r[PK]] for r in rows]
        vectors = np.stack([r[VEC] for r in rows]).astype(np.float32, copy=False)
        return [k for k, _ in found], [p for _, p in found], np.ones(len(rows), np.int64), vectors

    def cleanup_legacy(
        self, old: dict[str, Owned], keys: Sequence[str], tokens: Sequence[np.ndarray]
    ) -> None:
        """Collections without generations: drop the rows past a document's new length."""
        shrunk = {
            key: len(toks)
            for key, toks in zip(keys, tokens, strict=True)
            if old.get(key, (0, 0))[0] > len(toks)
        }
        if shrunk:
            t = self.target
            t.client.delete(self.tokens_name, filter=leftover_expr(shrunk), **t.request)

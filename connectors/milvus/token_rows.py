"""The token-row layout: one row per token vector in a companion collection ``<name>__tokens``.

Milvus's documented pattern before Array of Structs (and the only one Milvus Lite can run).
Rows are ``(pk = "<doc pk>#<position>", doc_id, pos, vec FLOAT_VECTOR(128))`` with an
INVERTED index on ``doc_id``. Token vectors are never ANN-searched (hybrid fetches the
candidates' rows by ``doc_id``; multivector mode streams every row), so ``vec`` gets a
FLAT index: it costs nothing to build, where HNSW over ~300 rows per page dominated load time.
The documents row keeps ``n_tokens``, so fetches are chunked under Milvus' 16,384-rows-per-
query cap and rows at ``pos >= n_tokens`` (left by an interrupted shrink) are ignored.

Write order (re-running an interrupted upsert always repairs it):

1. upsert the token rows (deterministic pks: an id's rows are overwritten in place);
2. delete the rows past the new length when the document had more tokens before;
3. upsert the documents rows (with ``n_tokens``) last.

An interruption before 3 leaves a new document invisible (its token rows are orphans that
reads never reach), or an existing one with its old documents row over a mix of old and new
token rows; nothing is ever duplicated. ``delete`` removes the documents rows first and the
token rows second, so an interruption leaves only invisible orphans.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import SchemaMismatchError
from ..vectors import l2_normalize
from .convert import (
    ID_MAX_BYTES,
    MAX_IDS_PER_EXPR,
    N_TOKENS,
    PK,
    QUERY_MAX_ROWS,
    Layout,
    and_expr,
    chunks,
    in_expr,
    pymilvus,
)
from .layout import Scored, Target, TokenLayout

logger = logging.getLogger(__name__)

DOC_ID = "doc_id"
POS = "pos"
VEC = "vec"
#: Token rows per write request (about 5 MB of float32 vectors).
ROWS_PER_REQUEST = 10_000
COMPANION_PROPERTY = "jvdb.companion_of"


def companion_name(name: str) -> str:
    """Name of the token collection of documents collection ``name``."""
    return f"{name}__tokens"


def token_schema(dim: int) -> Any:
    """Schema of the token collection."""
    DataType = pymilvus().DataType
    schema = pymilvus().MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(PK, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES + 16)
    schema.add_field(DOC_ID, DataType.VARCHAR, max_length=ID_MAX_BYTES)
    schema.add_field(POS, DataType.INT32)
    schema.add_field(VEC, DataType.FLOAT_VECTOR, dim=dim)
    return schema


def token_index_params() -> Any:
    """INVERTED on doc_id (every read filters on it); FLAT on the vectors (never ANN-searched)."""
    params = pymilvus().MilvusClient.prepare_index_params()
    params.add_index(field_name=DOC_ID, index_name=f"{DOC_ID}_inverted", index_type="INVERTED")
    params.add_index(field_name=VEC, index_name=f"{VEC}_flat", index_type="FLAT", metric_type="COSINE")
    return params


def token_rows(key: str, tokens: np.ndarray) -> list[dict[str, Any]]:
    """The companion rows of one document ((t, 128) tokens, already in the storage dtype)."""
    vectors = tokens.astype(np.float32, copy=False)
    return [{PK: f"{key}#{j}", DOC_ID: key, POS: j, VEC: vectors[j]} for j in range(len(vectors))]


def leftover_expr(shrunk: dict[str, int]) -> str:
    """Rows past each document's new length: ``(doc_id in [...] and pos >= n) or ...``."""
    by_length: dict[int, list[str]] = defaultdict(list)
    for key, n in shrunk.items():
        by_length[n].append(key)
    parts = [f"({in_expr(DOC_ID, keys)} and {POS} >= {n})" for n, keys in sorted(by_length.items())]
    return " or ".join(parts)


def fetch_plan(counts: dict[str, int], max_rows: int = QUERY_MAX_ROWS) -> list[list[str]]:
    """Group documents so that each ``doc_id in [...]`` query returns at most ``max_rows`` rows."""
    groups: list[list[str]] = []
    current: list[str] = []
    rows = 0
    for key, n in counts.items():
        if current and (rows + n > max_rows or len(current) >= MAX_IDS_PER_EXPR):
            groups.append(current)
            current, rows = [], 0
        current.append(key)
        rows += n
    if current:
        groups.append(current)
    return groups


class MaxSim:
    """Streaming exact MaxSim: feed token rows in any order, read the scores at the end.

    Keeps one (n_docs, q) array of each query token's best cosine so far, so memory stays
    flat however many rows stream through.
    """

    def __init__(self, query_tokens: np.ndarray, counts: dict[str, int]) -> None:
        self.query = l2_normalize(query_tokens)  # (q, 128)
        self.keys = list(counts)
        self.index = {key: i for i, key in enumerate(self.keys)}
        self.counts = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
        self.best = np.full((len(self.keys), len(self.query)), -np.inf, dtype=np.float32)  # (n, q)

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        """Fold a batch of token rows (doc_id, pos, vec) into the running maxima."""
        if not rows:
            return
        idx = np.fromiter((self.index.get(r[DOC_ID], -1) for r in rows), dtype=np.int64, count=len(rows))
        pos = np.fromiter((r[POS] for r in rows), dtype=np.int64, count=len(rows))
        # Orphans (no documents row) and rows past n_tokens (interrupted shrink) do not count.
        keep = np.flatnonzero((idx >= 0) & (pos < self.counts[np.maximum(idx, 0)]))
        if keep.size == 0:
            return
        vectors = l2_normalize(np.asarray([rows[i][VEC] for i in keep], dtype=np.float32))  # (m, 128)
        sims = vectors @ self.query.T  # (m, q)
        idx = idx[keep]
        order = np.argsort(idx, kind="stable")
        idx, sims = idx[order], sims[order]
        starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
        docs = idx[starts]
        self.best[docs] = np.maximum(self.best[docs], np.maximum.reduceat(sims, starts, axis=0))

    def top(self, limit: int) -> list[Scored]:
        """Best ``limit`` documents (documents with no token row seen are left out)."""
        seen = np.isfinite(self.best[:, 0]) if len(self.query) else np.zeros(len(self.keys), bool)
        scores = np.where(seen, self.best.sum(axis=1), -np.inf)
        order = np.argsort(-scores, kind="stable")[: min(limit, int(seen.sum()))]
        return [(self.keys[i], float(scores[i]), None) for i in order]


class TokenRowsLayout(TokenLayout):
    """Token vectors in ``<name>__tokens``; MaxSim in numpy over fetched rows."""

    kind = Layout.TOKEN_ROWS

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.tokens_name = companion_name(target.name)

    # -- creation --------------------------------------------------------------------
    def create_companions(self) -> None:
        t = self.target
        if t.client.has_collection(self.tokens_name, **t.request):
            props = t.client.describe_collection(self.tokens_name, **t.request).get("properties") or {}
            if props.get(COMPANION_PROPERTY) != t.name:
                raise SchemaMismatchError(
                    f"collection {self.tokens_name!r} exists and is not the token collection of {t.name!r}; "
                    "rename one of them"
                )
            # Left by an interrupted create or drop: its rows belong to no document.
            logger.warning("dropping orphan token collection %r", self.tokens_name)
            t.client.drop_collection(self.tokens_name, **t.request)
        t.client.create_collection(
            self.tokens_name, schema=token_schema(t.spec.multivector_dim), properties={COMPANION_PROPERTY: t.name},
            **t.create, **t.request,
        )
        # sync=False: pymilvus would poll the (empty, instantly indexed) collection every 0.5 s.
        t.client.create_index(self.tokens_name, token_index_params(), sync=False, **t.request)
        t.client.load_collection(self.tokens_name, **t.request)

    def open_companions(self) -> None:
        t = self.target
        if not t.client.has_collection(self.tokens_name, **t.request):
            raise SchemaMismatchError(f"token collection {self.tokens_name!r} of {t.name!r} is missing; drop {t.name!r} and re-ingest")
        state = t.client.get_load_state(self.tokens_name, **t.request).get("state")
        if getattr(state, "name", str(state)) != "Loaded":
            t.client.load_collection(self.tokens_name, **t.request)

    def drop_companions(self) -> None:
        t = self.target
        if t.client.has_collection(self.tokens_name, **t.request):
            t.client.drop_collection(self.tokens_name, **t.request)

    # -- writes ------------------------------------------------------------------------
    def write(self, keys: Sequence[str], rows: list[dict[str, Any]], tokens: Sequence[np.ndarray | None]) -> None:
        t = self.target
        old = {r[PK]: int(r[N_TOKENS]) for r in t.client.get(t.name, ids=list(keys), output_fields=[N_TOKENS], **t.request)}
        batch: list[dict[str, Any]] = []
        for key, toks in zip(keys, tokens):
            batch.extend(token_rows(key, toks))
            if len(batch) >= ROWS_PER_REQUEST:
                t.client.upsert(self.tokens_name, batch, **t.request)
                batch = []
        if batch:
            t.client.upsert(self.tokens_name, batch, **t.request)
        shrunk = {key: len(toks) for key, toks in zip(keys, tokens) if old.get(key, 0) > len(toks)}
        if shrunk:
            t.client.delete(self.tokens_name, filter=leftover_expr(shrunk), **t.request)
        for row, toks in zip(rows, tokens):
            row[N_TOKENS] = len(toks)
        t.client.upsert(t.name, rows, **t.request)

    def delete_tokens(self, keys: Sequence[str]) -> None:
        t = self.target
        for group in chunks(list(keys), MAX_IDS_PER_EXPR):
            t.client.delete(self.tokens_name, filter=in_expr(DOC_ID, group), **t.request)

    # -- reads ---------------------------------------------------------------------------
    def _counts(self, expr: str) -> Iterable[dict[str, Any]]:
        """(pk, n_tokens) of every documents row matching ``expr``."""
        t = self.target
        rows = t.client.query(t.name, filter=expr, output_fields=[N_TOKENS], limit=QUERY_MAX_ROWS, **t.request)
        if len(rows) < QUERY_MAX_ROWS:
            yield from rows
            return
        # More than one query can return: page through them all.
        it = t.client.query_iterator(t.name, batch_size=QUERY_MAX_ROWS, filter=expr, output_fields=[N_TOKENS], **t.request)
        try:
            while page := it.next():
                yield from page
        finally:
            it.close()

    def _fold(self, scorer: MaxSim, counts: dict[str, int]) -> None:
        t = self.target
        for group in fetch_plan(counts):
            rows = t.client.query(
                self.tokens_name,
                filter=in_expr(DOC_ID, group),
                output_fields=[DOC_ID, POS, VEC],
                limit=QUERY_MAX_ROWS,
                **t.request,
            )
            scorer.add(rows)

    def rerank(self, tokens: np.ndarray, candidates: Sequence[str], limit: int) -> list[Scored]:
        t = self.target
        counts: dict[str, int] = {}
        for group in chunks(list(candidates), MAX_IDS_PER_EXPR):
            for r in t.client.get(t.name, ids=list(group), output_fields=[N_TOKENS], **t.request):
                counts[r[PK]] = int(r[N_TOKENS])
        # Keep the candidates' order for ties (stable sort in MaxSim.top).
        ordered = {key: counts[key] for key in candidates if key in counts}
        scorer = MaxSim(tokens, ordered)
        self._fold(scorer, ordered)
        return scorer.top(limit)

    def score_all(self, tokens: np.ndarray, expr: str, limit: int) -> list[Scored]:
        counts = {r[PK]: int(r[N_TOKENS]) for r in self._counts(and_expr(expr))}
        scorer = MaxSim(tokens, counts)
        self._fold(scorer, counts)
        return scorer.top(limit)

    def tokens_of(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        t = self.target
        counts = {r[PK]: int(r[N_TOKENS]) for r in t.client.get(t.name, ids=list(keys), output_fields=[N_TOKENS], **t.request)}
        out: dict[str, np.ndarray] = {}
        for group in fetch_plan(counts):
            rows = t.client.query(
                self.tokens_name, filter=in_expr(DOC_ID, group), output_fields=[DOC_ID, POS, VEC], limit=QUERY_MAX_ROWS, **t.request
            )
            by_doc: dict[str, dict[int, Any]] = defaultdict(dict)
            for r in rows:
                if r[POS] < counts[r[DOC_ID]]:
                    by_doc[r[DOC_ID]][r[POS]] = r[VEC]
            for key, vecs in by_doc.items():
                out[key] = np.asarray([vecs[j] for j in sorted(vecs)], dtype=np.float32)
        return out

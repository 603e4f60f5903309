"""The token-row layout: one row per token vector in a companion collection ``<name>__tokens``.

Milvus's documented pattern before Array of Structs (and the only one Milvus Lite can run).
Rows are ``(pk = "<doc pk>#<position>", doc_id, pos, vec FLOAT_VECTOR(128))`` with a scalar
index on ``doc_id`` (INVERTED; Trie on Milvus 2.3, which has no INVERTED). Token vectors
are never ANN-searched (hybrid fetches the candidates' rows by primary key; multivector mode
streams every row), so ``vec`` gets a FLAT index: it costs nothing to build, where HNSW
over ~300 rows per page dominated load time.
The documents row keeps ``n_tokens``, so fetches are chunked under Milvus' 16,384-rows-per-
query cap and rows at ``pos >= n_tokens`` (left by an interrupted shrink) are ignored.

Overwrites are atomic per document (each record reads entirely old or entirely new, whatever
fails and wherever the process dies): token rows carry the document's *generation* in their
pks, ``"<doc pk>#g<gen>.<pos>"``, and the documents row names its generation (``tok_gen``).
Readers compute the pks from the documents row, so they only ever see the rows of the
generation that row names. A write:

1. reads the documents rows (n_tokens, tok_gen) of the batch's ids;
2. upserts the token rows of generation ``tok_gen + 1`` (new pks, invisible so far);
3. upserts the documents rows with the new generation: the switch, one row per record;
4. deletes the previous generation's rows by their pks.

Dying before 3 leaves every record old, with invisible rows of the next generation that a
re-run overwrites in place (it picks the same generation); dying after 3 leaves it new,
with the old rows invisible (left for ``delete``, which removes every row of a document by
``doc_id``). Collections created before generations (no ``tok_gen`` field) keep the old
``"<doc pk>#<pos>"`` pks (generation 0) and the old write order, with a warning at open:
token rows first, the rows past a shrunk length deleted, the documents rows last.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    TOKEN_GEN,
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
#: Token-row fetches a server gets at once.
FETCH_WORKERS = 4
COMPANION_PROPERTY = "jvdb.companion_of"
#: What a documents row says about its token rows: (n_tokens, generation).
Owned = tuple[int, int]


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


def token_key(key: str, gen: int, pos: int) -> str:
    """Primary key of a token row. Generation 0 (collections made before generations) keeps
    ``<key>#<pos>``; the text after the last '#' tells the two forms apart, so they never
    collide whatever the document keys contain."""
    return f"{key}#{pos}" if gen == 0 else f"{key}#g{gen}.{pos}"


def token_rows(key: str, gen: int, tokens: np.ndarray) -> list[dict[str, Any]]:
    """The companion rows of one document ((t, 128) tokens, already in the storage dtype)."""
    vectors = tokens.astype(np.float32, copy=False)
    return [
        {PK: token_key(key, gen, j), DOC_ID: key, POS: j, VEC: vectors[j]}
        for j in range(len(vectors))
    ]


def leftover_expr(shrunk: dict[str, int]) -> str:
    """Rows past each document's new length: ``(doc_id in [...] and pos >= n) or ...``."""
    by_length: dict[int, list[str]] = defaultdict(list)
    for key, n in shrunk.items():
        by_length[n].append(key)
    parts = [f"({in_expr(DOC_ID, keys)} and {POS} >= {n})" for n, keys in sorted(by_length.items())]
    return " or ".join(parts)


def token_keys(docs: dict[str, Owned]) -> dict[str, tuple[str, int]]:
    """Token row pk -> (document pk, position) for documents with these (n_tokens, gen)."""
    return {token_key(key, gen, j): (key, j) for key, (n, gen) in docs.items() for j in range(n)}


class MaxSim:
    """Streaming exact MaxSim: feed token vectors in any order, read the scores at the end.

    Keeps one (n_docs, q) array of each query token's best cosine so far, so memory stays
    flat however many token rows stream through.
    """

    def __init__(self, query_tokens: np.ndarray, keys: Sequence[str]) -> None:
        self.query = l2_normalize(query_tokens)  # (q, 128)
        self.keys = list(keys)
        self.index = {key: i for i, key in enumerate(self.keys)}
        self.best = np.full((len(self.keys), len(self.query)), -np.inf, dtype=np.float32)  # (n, q)

    def add(self, doc_keys: Sequence[str], vectors: np.ndarray) -> None:
        """Fold token vectors (m, 128) of documents ``doc_keys`` (m,) into the running maxima."""
        if not len(doc_keys):
            return
        idx = np.fromiter((self.index[k] for k in doc_keys), dtype=np.int64, count=len(doc_keys))
        sims = l2_normalize(vectors) @ self.query.T  # (m, q)
        order = np.argsort(idx, kind="stable")
        idx, sims = idx[order], sims[order]
        starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
        docs = idx[starts]
        self.best[docs] = np.maximum(self.best[docs], np.maximum.reduceat(sims, starts, axis=0))

    def top(self, limit: int) -> list[Scored]:
        """Best ``limit`` documents (documents with no token row seen are left out)."""
        seen = np.isfinite(self.best[:, 0])
        scores = np.where(seen, self.best.sum(axis=1), -np.inf)
        order = np.argsort(-scores, kind="stable")[: min(limit, int(seen.sum()))]
        return [(self.keys[i], float(scores[i]), None) for i in order]


class TokenRowsLayout(TokenLayout):
    """Token vectors in ``<name>__tokens``; MaxSim in numpy over fetched rows."""

    kind = Layout.TOKEN_ROWS

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.tokens_name = companion_name(target.name)
        self.generations = True  # False for collections created before tok_gen (verify())
        self._companion_ready = False

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

    # -- creation --------------------------------------------------------------------
    def create_companions(self) -> None:
        t = self.target
        if t.client.has_collection(self.tokens_name, **t.request):
            props = (
                t.client.describe_collection(self.tokens_name, **t.request).get("properties") or {}
            )
            if props.get(COMPANION_PROPERTY) != t.name:
                raise SchemaMismatchError(
                    f"collection {self.tokens_name!r} exists and is not "
                    f"the token collection of {t.name!r}; "
                    "rename one of them"
                )
            # Left by an interrupted create or drop: its rows belong to no document.
            logger.warning("dropping orphan token collection %r", self.tokens_name)
            t.client.drop_collection(self.tokens_name, **t.request)
        t.client.create_collection(
            self.tokens_name,
            schema=token_schema(t.spec.multivector_dim),
            properties={COMPANION_PROPERTY: t.name},
            **t.create,
            **t.request,
        )
        # sync=False: pymilvus would poll the (empty, instantly indexed) collection every 0.5 s.
        t.client.create_index(
            self.tokens_name,
            token_index_params(t.server.varchar_index),
            sync=False,
            **t.request,
        )
        # Loads beside the documents collection (a load takes ~3 s on 2.3, even empty);
        # the first use of token rows waits for it.
        t.client.load_collection(self.tokens_name, _async=True, **t.request)

    def open_companions(self) -> None:
        # Deferred to the first use of token rows: Milvus Lite reads a whole collection into
        # RAM the first time any request names it (has_collection included; measured: 180k
        # token rows, 1.6 s and ~380 MB), and count / info / dense searches never need them.
        self._companion_ready = False

    def _ensure_companion(self) -> None:
        """Check and load the token collection, once, before the first use of its rows."""
        if self._companion_ready:
            return
        t = self.target
        if not t.client.has_collection(self.tokens_name, **t.request):
            raise SchemaMismatchError(
                f"token collection {self.tokens_name!r} of {t.name!r} is missing; "
                f"drop {t.name!r} and re-ingest"
            )
        state = t.client.get_load_state(self.tokens_name, **t.request).get("state")
        if getattr(state, "name", str(state)) != "Loaded":
            t.client.load_collection(self.tokens_name, **t.request)
        self._companion_ready = True

    def drop_companions(self) -> None:
        t = self.target
        if t.client.has_collection(self.tokens_name, **t.request):
            t.client.drop_collection(self.tokens_name, **t.request)

    # -- writes ------------------------------------------------------------------------
    def write(
        self, keys: Sequence[str], rows: list[dict[str, Any]], tokens: Sequence[np.ndarray]
    ) -> None:
        t = self.target
        self._ensure_companion()
        old = self._owned(keys)
        gens = {key: old[key][1] + 1 if key in old else 1 for key in keys}
        if not self.generations:
            gens = dict.fromkeys(keys, 0)
        batch: list[dict[str, Any]] = []
        for key, toks in zip(keys, tokens, strict=True):
            batch.extend(token_rows(key, gens[key], toks))
            if len(batch) >= ROWS_PER_REQUEST:
                t.client.upsert(self.tokens_name, batch, **t.request)
                batch = []
        if batch:
            t.client.upsert(self.tokens_name, batch, **t.request)
        if not self.generations:
            self._delete_past_length(old, keys, tokens)
        for row, key, toks in zip(rows, keys, tokens, strict=True):
            row[N_TOKENS] = len(toks)
            if self.generations:
                row[TOKEN_GEN] = gens[key]
        t.client.upsert(t.name, rows, **t.request)  # the switch
        if self.generations:
            t.delete_keys(self.tokens_name, list(token_keys(old)))

    def _delete_past_length(
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

    def delete_tokens(self, keys: Sequence[str]) -> None:
        t = self.target
        self._ensure_companion()
        for group in chunks(list(keys), MAX_IDS_PER_EXPR):
            t.client.delete(self.tokens_name, filter=in_expr(DOC_ID, group), **t.request)

    # -- reads ---------------------------------------------------------------------------
    def _owned(self, keys: Sequence[str]) -> dict[str, Owned]:
        """(n_tokens, generation) of the documents that exist among ``keys``, in that order."""
        t = self.target
        found = {r[PK]: _owned(r) for r in t.rows(t.name, keys, self._fields())}
        return {key: found[key] for key in keys if key in found}

    def _fields(self) -> list[str]:
        return [N_TOKENS, TOKEN_GEN] if self.generations else [N_TOKENS]

    @property
    def candidate_fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._fields())

    def _matching(self, expr: str) -> dict[str, Owned]:
        """(n_tokens, generation) of every document matching ``expr`` (paging past 16,384)."""
        t = self.target
        rows = t.client.query(
            t.name, filter=expr, output_fields=self._fields(), limit=QUERY_MAX_ROWS, **t.read
        )
        if len(rows) >= QUERY_MAX_ROWS:
            rows = []
            it = t.client.query_iterator(
                t.name,
                batch_size=QUERY_MAX_ROWS,
                filter=expr,
                output_fields=self._fields(),
                **t.read,
            )
            try:
                while page := it.next():
                    rows.extend(page)
            finally:
                it.close()
        return {r[PK]: _owned(r) for r in rows}

    def _fetch(self, docs: dict[str, Owned]) -> Iterator[tuple[list[tuple[str, int]], np.ndarray]]:
        """Token rows of these documents as ((document pk, position) per row, (m, 128)) batches.

        By primary key, which the documents rows give: Milvus Lite answers a pk lookup from
        an index but scans every row of the collection for ``doc_id in [...]`` (measured:
        1.1 s against 3.1 s for 30k of 600k rows); rows of other generations, or past
        n_tokens, are never asked for. A server gets the chunks ``FETCH_WORKERS`` at a time
        (its nodes serve them in parallel); Lite, in-process behind the GIL, one by one.
        """
        self._ensure_companion()
        owners = token_keys(docs)
        groups = [list(g) for g in chunks(list(owners), MAX_IDS_PER_EXPR)]
        if self.target.server.lite or len(groups) < 2:
            found: Iterable[list[dict[str, Any]]] = map(self._get_rows, groups)
        else:
            with ThreadPoolExecutor(min(FETCH_WORKERS, len(groups))) as pool:
                found = list(pool.map(self._get_rows, groups))
        for rows in found:
            if len(rows):
                yield (
                    [owners[r[PK]] for r in rows],
                    np.stack([r[VEC] for r in rows]).astype(np.float32, copy=False),
                )

    def _get_rows(self, keys: list[str]) -> list[dict[str, Any]]:
        # strict_float32: pymilvus hands vectors over as one numpy array, not float lists.
        return self.target.rows(self.tokens_name, keys, [VEC], strict_float32=True)

    def _scores(self, tokens: np.ndarray, docs: dict[str, Owned], limit: int) -> list[Scored]:
        scorer = MaxSim(tokens, list(docs))
        for owners, vectors in self._fetch(docs):
            scorer.add([key for key, _ in owners], vectors)
        return scorer.top(limit)

    def rerank(
        self,
        tokens: np.ndarray,
        candidates: Sequence[str],
        limit: int,
        known: dict[str, dict[str, Any]] | None = None,
    ) -> list[Scored]:
        # n_tokens (and tok_gen) came with the dense candidates (one request fewer).
        fields, wanted = known or {}, self._fields()
        if all(all(f in fields.get(key, {}) for f in wanted) for key in candidates):
            docs = {key: _owned(fields[key]) for key in candidates}
        else:
            docs = self._owned(candidates)
        # Candidates keep their order for ties (stable sort in MaxSim.top).
        return self._scores(tokens, docs, limit)

    def score_all(self, tokens: np.ndarray, expr: str, limit: int) -> list[Scored]:
        return self._scores(tokens, self._matching(and_expr(expr)), limit)

    def tokens_of(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        parts: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
        for owners, vectors in self._fetch(self._owned(keys)):
            for (key, pos), vector in zip(owners, vectors, strict=True):
                parts[key][pos] = vector
        return {key: np.stack([vecs[j] for j in sorted(vecs)]) for key, vecs in parts.items()}


def _owned(row: dict[str, Any]) -> Owned:
    return int(row[N_TOKENS]), int(row.get(TOKEN_GEN) or 0)

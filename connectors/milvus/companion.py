"""Token vectors in a companion collection ``<name>__tokens``, MaxSim in numpy: what the
token-row layout (one row per token, token_rows.py) and the packed layout (a few rows per
document, packed.py) share.

The documents row keeps ``n_tokens`` and ``tok_gen``; the companion rows' primary keys are
computed from them, so a reader fetches exactly the rows of the generation the documents row
names (by primary key: Milvus Lite answers a pk lookup from a dict, a ``doc_id in [...]``
filter scans). Overwrites are atomic per document (each record reads entirely old or
entirely new, whatever fails and wherever the process dies). A write:

1. reads the documents rows (n_tokens, tok_gen) of the batch's ids;
2. upserts the companion rows of generation ``tok_gen + 1`` (new pks, invisible so far);
3. upserts the documents rows with the new generation: the switch, one row per record;
4. deletes the previous generation's rows by their pks.

Dying before 3 leaves every record old, with invisible rows of the next generation that a
re-run overwrites in place (it picks the same generation); dying after 3 leaves it new,
with the old rows invisible (left for ``delete``, which removes every row of a document by
``doc_id``).

The companion is touched only when token vectors are: ``count``, ``info`` and dense searches
never name it (Milvus Lite reads a whole collection into memory the first time a request
names it).
"""

from __future__ import annotations

import importlib
import logging
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import SchemaMismatchError
from ..vectors import l2_normalize
from .convert import (
    MAX_IDS_PER_EXPR,
    N_TOKENS,
    PK,
    QUERY_MAX_ROWS,
    TOKEN_GEN,
    and_expr,
    chunks,
    in_expr,
)
from .layout import Scored, Target, TokenLayout

logger = logging.getLogger(__name__)

DOC_ID = "doc_id"
#: Companion fetches a server gets at once.
FETCH_WORKERS = 4
COMPANION_PROPERTY = "jvdb.companion_of"
#: What a documents row says about its companion rows: (n_tokens, generation).
Owned = tuple[int, int]
#: Token vectors fetched in one piece: (document pk per block, first position per block,
#: tokens per block (b,), the blocks' vectors stacked (sum of counts, dim) float32).
Blocks = tuple[list[str], list[int], np.ndarray, np.ndarray]


def companion_name(name: str) -> str:
    """Name of the token collection of documents collection ``name``."""
    return f"{name}__tokens"


def generation_key(key: str, gen: int, part: int) -> str:
    """Primary key of companion row ``part`` of a document's generation ``gen``. Generation 0
    (token-row collections made before generations) keeps ``<key>#<part>``; the text after
    the last '#' tells the two forms apart, so they never collide whatever the keys contain."""
    return f"{key}#{part}" if gen == 0 else f"{key}#g{gen}.{part}"


class MaxSim:
    """Streaming exact MaxSim: feed token vectors in any order, read the scores at the end.

    Keeps one (n_docs, q) array of each query token's best cosine so far, so memory stays
    flat however many token vectors stream through.
    """

    def __init__(self, query_tokens: np.ndarray, keys: Sequence[str]) -> None:
        self.query = l2_normalize(query_tokens)  # (q, 128)
        self.keys = list(keys)
        self.index = {key: i for i, key in enumerate(self.keys)}
        self.best = np.full((len(self.keys), len(self.query)), -np.inf, dtype=np.float32)  # (n, q)

    def add(self, doc_keys: Sequence[str], counts: np.ndarray, vectors: np.ndarray) -> None:
        """Fold ``vectors`` (sum(counts), 128) into the running maxima: the first ``counts[0]``
        rows belong to ``doc_keys[0]``, the next ``counts[1]`` to ``doc_keys[1]``, ..."""
        if not len(vectors):
            return
        owner = np.fromiter((self.index[k] for k in doc_keys), dtype=np.int64, count=len(doc_keys))
        counts = np.asarray(counts, dtype=np.int64)
        # Cosine: divide the (m, q) dot products by the token norms rather than normalising
        # the (m, 128) tokens (stored tokens are unit vectors up to float16 rounding; a zero
        # token keeps similarity 0, as l2_normalize leaves it).
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))  # (m,)
        norms[norms == 0] = 1.0
        sims = (vectors @ self.query.T) / norms[:, None]  # (m, q)
        # Best token per block (a block is contiguous), then per document across its blocks:
        # a packed fetch has ~2 blocks per document, so the sort is over blocks, not tokens.
        kept = counts > 0
        starts = np.r_[0, np.cumsum(counts)[:-1]][kept]
        block_best = np.maximum.reduceat(sims, starts, axis=0)  # (b, q)
        owner = owner[kept]
        order = np.argsort(owner, kind="stable")
        owner, block_best = owner[order], block_best[order]
        firsts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        docs = owner[firsts]
        per_doc = np.maximum.reduceat(block_best, firsts, axis=0)  # (docs, q)
        self.best[docs] = np.maximum(self.best[docs], per_doc)

    def top(self, limit: int) -> list[Scored]:
        """Best ``limit`` documents (documents with no token vector seen are left out)."""
        seen = np.isfinite(self.best[:, 0])
        scores = np.where(seen, self.best.sum(axis=1), -np.inf)
        order = np.argsort(-scores, kind="stable")[: min(limit, int(seen.sum()))]
        return [(self.keys[i], float(scores[i]), None) for i in order]


class CompanionLayout(TokenLayout):
    """Token vectors in ``<name>__tokens``; subclasses say how rows hold them."""

    #: Most companion rows one ``query`` asks for (its answer stays a few MB).
    rows_per_fetch: int = MAX_IDS_PER_EXPR

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.tokens_name = companion_name(target.name)
        self.generations = True  # False for token-row collections created before tok_gen
        self._companion_ready = False

    # -- the row format (subclasses) ----------------------------------------------------------
    @abstractmethod
    def companion_schema(self) -> Any:
        """Schema of the companion collection."""

    @abstractmethod
    def companion_indexes(self) -> Any:
        """Index parameters of the companion collection."""

    @abstractmethod
    def rows_of(self, key: str, gen: int, tokens: np.ndarray) -> list[dict[str, Any]]:
        """The companion rows of one document ((t, dim) tokens in the storage dtype)."""

    @abstractmethod
    def row_keys(self, docs: dict[str, Owned]) -> dict[str, tuple[str, int]]:
        """Companion pk -> (document pk, part) of every row these documents own."""

    @abstractmethod
    def decode(self, rows: list[dict[str, Any]], owners: dict[str, tuple[str, int]]) -> Blocks:
        """The token vectors of fetched companion rows (``owners``: from ``row_keys``)."""

    @abstractmethod
    def fetch_fields(self) -> list[str]:
        """Companion fields ``decode`` needs."""

    def flush_rows(self, batch: list[dict[str, Any]]) -> bool:
        """Whether a pending write batch is big enough to send."""
        return len(batch) >= MAX_IDS_PER_EXPR

    def cleanup_legacy(
        self, old: dict[str, Owned], keys: Sequence[str], tokens: Sequence[np.ndarray]
    ) -> None:
        """Collections without generations: remove rows the new version does not overwrite."""
        return None

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
            schema=self.companion_schema(),
            properties={COMPANION_PROPERTY: t.name},
            **t.create,
            **t.request,
        )
        # sync=False: pymilvus would poll the (empty, instantly indexed) collection every 0.5 s.
        t.client.create_index(self.tokens_name, self.companion_indexes(), sync=False, **t.request)
        # Loads beside the documents collection (a load takes ~3 s on 2.3, even empty);
        # the first use of token vectors waits for it.
        t.client.load_collection(self.tokens_name, _async=True, **t.request)

    def open_companions(self) -> None:
        # Deferred to the first use of token vectors: count / info / dense searches never
        # need them, and Milvus Lite loads a whole collection the first time it is named.
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
        if t.server.lite:
            release_arrow_buffers()
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
            batch.extend(self.rows_of(key, gens[key], toks))
            if self.flush_rows(batch):
                t.client.upsert(self.tokens_name, batch, **t.request)
                batch = []
        if batch:
            t.client.upsert(self.tokens_name, batch, **t.request)
        if not self.generations:
            self.cleanup_legacy(old, keys, tokens)
        for row, key, toks in zip(rows, keys, tokens, strict=True):
            row[N_TOKENS] = len(toks)
            if self.generations:
                row[TOKEN_GEN] = gens[key]
        t.client.upsert(t.name, rows, **t.request)  # the switch
        if self.generations:
            t.delete_keys(self.tokens_name, list(self.row_keys(old)))

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

    def _fetch(self, docs: dict[str, Owned]) -> Iterator[Blocks]:
        """The token vectors of these documents, ``rows_per_fetch`` companion rows at a time
        (memory stays bounded however many documents: a scan streams through).

        By primary key, which the documents rows give; rows of other generations, or past
        n_tokens, are never asked for. A server gets ``FETCH_WORKERS`` requests at once (its
        nodes serve them in parallel); Lite, in-process behind the GIL, one by one.
        """
        self._ensure_companion()
        owners = self.row_keys(docs)
        groups = [list(g) for g in chunks(list(owners), self.rows_per_fetch)]
        if self.target.server.lite or len(groups) < 2:
            found: Iterable[list[dict[str, Any]]] = map(self._get_rows, groups)
        else:
            pool = ThreadPoolExecutor(min(FETCH_WORKERS, len(groups)))
            # map() keeps at most the workers' answers ahead of the consumer only if consumed
            # lazily: a scan would otherwise hold every answer at once.
            found = _bounded_map(pool, self._get_rows, groups, FETCH_WORKERS)
        for rows in found:
            if len(rows):
                yield self.decode(rows, owners)

    def _get_rows(self, keys: list[str]) -> list[dict[str, Any]]:
        # strict_float32: pymilvus hands float vectors over as one numpy array, not lists.
        return self.target.rows(self.tokens_name, keys, self.fetch_fields(), strict_float32=True)

    def _scores(self, tokens: np.ndarray, docs: dict[str, Owned], limit: int) -> list[Scored]:
        scorer = MaxSim(tokens, list(docs))
        for keys, _, counts, vectors in self._fetch(docs):
            scorer.add(keys, counts, vectors)
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
        owned = self._owned(keys)
        out = {
            key: np.zeros((n, self.target.spec.multivector_dim), np.float32)
            for key, (n, _) in owned.items()
            if n
        }
        for doc_keys, starts, counts, vectors in self._fetch(owned):
            offsets = np.r_[0, np.cumsum(counts)]
            for i, (key, start) in enumerate(zip(doc_keys, starts, strict=True)):
                out[key][start : start + counts[i]] = vectors[offsets[i] : offsets[i + 1]]
        return out


def release_arrow_buffers() -> None:
    """Give back the memory pyarrow's allocator kept after Milvus Lite (in this process)
    decoded a collection's Parquet files: measured 720 -> 480 MB RSS after loading 2k
    packed documents, about the decoding buffers. Nothing to do when Lite is not here."""
    try:
        pyarrow = importlib.import_module("pyarrow")
    except ImportError:
        return
    pyarrow.default_memory_pool().release_unused()


def _bounded_map(
    pool: ThreadPoolExecutor, fn: Any, groups: list[list[str]], ahead: int
) -> Iterator[list[dict[str, Any]]]:
    """``pool.map(fn, groups)`` in order, with at most ``ahead`` requests in flight."""
    with pool:
        pending = [pool.submit(fn, g) for g in groups[:ahead]]
        next_group = len(pending)
        while pending:
            result = pending.pop(0).result()
            if next_group < len(groups):
                pending.append(pool.submit(fn, groups[next_group]))
                next_group += 1
            yield result


def _owned(row: dict[str, Any]) -> Owned:
    return int(row[N_TOKENS]), int(row.get(TOKEN_GEN) or 0)

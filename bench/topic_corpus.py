"""A synthetic multi-vector corpus with topic structure, and exact float32 MaxSim over it.

Random unit vectors are too easy for approximate methods: every document is far from every
other, so any compression keeps the ranking. Real token vectors cluster (the same words,
the same visual patches recur across documents of a topic), and that is where pooling,
quantization and single-vector encodings lose ranks. Here:

- ``clusters`` unit centres in the 128-d token space; each of ``topics`` topics is a set of
  ``clusters_per_topic`` centres; topics share centres (drawn with replacement).
- a document draws a primary and a secondary topic, keeps ``doc_clusters`` centres of their
  union, and draws each of its ``tokens`` tokens around one of them
  (``centre + token_noise * gaussian``, renormalised);
- its dense vector is a fixed random projection (128 -> ``dim``) of its mean token, plus
  noise: it knows the document's topic mix, not its tokens (so a dense prefetch misses some
  of the exact MaxSim top-k, as on real data);
- a query is ``query_tokens`` of a target document's tokens plus ``query_noise``, and its
  dense vector is built the same way; the truth is the exact MaxSim ranking over the whole
  corpus (float32, numpy), not the target.

Documents are generated per batch from ``(seed, batch index)``: any batch can be generated
again (100k x 300 x 128 float32 is 15 GB: nothing is held).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

TOKEN_DIM = 128
#: Payload ``bucket`` = id % BUCKETS: a filter on one bucket selects 1% of the corpus.
BUCKETS = 100


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True)
class TopicCorpus:
    n: int
    tokens: int = 300
    dim: int = 2048
    seed: int = 0
    clusters: int = 2048
    topics: int = 200
    clusters_per_topic: int = 24
    doc_clusters: int = 12
    token_noise: float = 0.5
    dense_noise: float = 0.3
    batch: int = 250

    @cached_property
    def _space(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 10**9])
        centres = _unit(rng.standard_normal((self.clusters, TOKEN_DIM), dtype=np.float32))
        topics = rng.integers(0, self.clusters, (self.topics, self.clusters_per_topic))
        projection = rng.standard_normal((TOKEN_DIM, self.dim), dtype=np.float32)
        return centres, topics, projection / np.sqrt(TOKEN_DIM)

    def dense_of(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(..., t, 128) tokens -> (..., dim) unit dense vectors (projected mean + noise)."""
        mean = tokens.mean(axis=-2) @ self._space[2]
        mean = _unit(mean)
        noise = rng.standard_normal(mean.shape, dtype=np.float32) / np.sqrt(self.dim)
        return _unit(mean + self.dense_noise * noise)

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(ids (b,), dense (b, dim) float32, tokens (b, t, 128) float32) per batch."""
        for b in range(0, self.n, self.batch):
            yield self.make_batch(b // self.batch)

    def make_batch(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centres, topics, _ = self._space
        start = index * self.batch
        size = min(self.batch, self.n - start)
        rng = np.random.default_rng([self.seed, index])
        pair = rng.integers(0, self.topics, (size, 2))
        pool = np.concatenate([topics[pair[:, 0]], topics[pair[:, 1]]], axis=1)  # (b, 2c)
        own = np.take_along_axis(
            pool, rng.permuted(np.tile(np.arange(pool.shape[1]), (size, 1)), axis=1), axis=1
        )[:, : self.doc_clusters]  # (b, doc_clusters) centre indices
        pick = rng.integers(0, self.doc_clusters, (size, self.tokens))
        which = np.take_along_axis(own, pick, axis=1)  # (b, t)
        noise = rng.standard_normal((size, self.tokens, TOKEN_DIM), dtype=np.float32)
        tokens = _unit(centres[which] + self.token_noise * noise / np.sqrt(TOKEN_DIM))
        ids = np.arange(start, start + size)
        return ids, self.dense_of(tokens, rng), tokens.astype(np.float32)

    def queries(
        self, count: int, query_tokens: int = 32, query_noise: float = 0.5, stream: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(targets (q,), dense (q, dim), tokens (q, query_tokens, 128)), all float32.

        ``stream`` picks an independent draw of queries over the same documents (0: the
        bench's cached queries; others: held-out sets for checking a tuned option).

        Half of a query's tokens are noisy copies of the target's tokens, half are drawn
        around the centres of the target's clusters: every document sharing those clusters
        scores high, graded by how many it shares (the target usually first).
        """
        centres, _, _ = self._space
        key = [self.seed, 10**9 + 1] + ([stream] if stream else [])
        rng = np.random.default_rng(key)
        targets = np.sort(rng.choice(self.n, size=count, replace=False))
        toks = np.empty((count, query_tokens, TOKEN_DIM), dtype=np.float32)
        own = query_tokens // 2
        made: dict[int, np.ndarray] = {}
        for i, t in enumerate(targets):
            index = int(t) // self.batch
            if index not in made:  # targets are sorted: keep only the current batch
                made = {index: self.make_batch(index)[2]}
            doc_tokens = made[index][int(t) % self.batch]  # (t, 128)
            copies = doc_tokens[rng.choice(self.tokens, size=own, replace=False)]
            near = np.argmax(doc_tokens @ centres.T, axis=1)  # each token's cluster
            around = centres[rng.choice(near, size=query_tokens - own)]
            base = np.concatenate([copies, around])
            noise = rng.standard_normal(base.shape, dtype=np.float32) / np.sqrt(TOKEN_DIM)
            toks[i] = _unit(base + query_noise * noise)
        return targets, self.dense_of(toks, rng), toks


def exact_maxsim(corpus: TopicCorpus, queries: np.ndarray, chunk: int = 50) -> np.ndarray:
    """(q, n) float32 MaxSim of every query against every document, chunked over documents.

    Uses the float32 token vectors (not what a store keeps): the reference every storage
    option is measured against.
    """
    scores = np.empty((len(queries), corpus.n), dtype=np.float32)
    for ids, _, tokens in corpus.batches():
        scores[:, ids] = maxsim_block(queries, tokens, chunk)
    return scores


def maxsim_block(queries: np.ndarray, tokens: np.ndarray, chunk: int = 50) -> np.ndarray:
    """(q, b) float32 MaxSim of (q, qt, 128) queries against (b, t, 128) documents."""
    q, qt, _ = queries.shape
    flat = queries.reshape(q * qt, TOKEN_DIM)
    out = np.empty((q, len(tokens)), dtype=np.float32)
    for s in range(0, len(tokens), chunk):
        part = tokens[s : s + chunk]  # (c, t, 128)
        sim = flat @ part.reshape(-1, TOKEN_DIM).T  # (q*qt, c*t)
        best = sim.reshape(q, qt, len(part), tokens.shape[1]).max(axis=3)  # (q, qt, c)
        out[:, s : s + len(part)] = best.sum(axis=1)
    return out


def top_k(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[list[int]]:
    """Ids of the k best documents per query row (``mask``: only those documents)."""
    s = scores if mask is None else np.where(mask, scores, -np.inf)
    order = np.argsort(-s, axis=1)[:, :k]
    return [[int(i) for i in row if np.isfinite(s[q, i])] for q, row in enumerate(order)]

"""Small numpy helpers shared by every backend: normalisation, Matryoshka prefixes, MaxSim, RRF."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

import numpy as np

_EPS = 1e-12
K = TypeVar("K", bound=Hashable)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float32 ((d,) or (n, d)), safe at the float32 extremes.

    Each row is first divided by its largest magnitude: the norm of a row of 3e38s
    overflows float32 to inf (the row would become all zeros), and the norm of a row of
    1e-30s underflows to 0. Scaled rows have norms in [1, sqrt(d)]. All-zero rows stay zero.
    """
    x = np.asarray(x, dtype=np.float32)
    peak = np.max(np.abs(x), axis=-1, keepdims=True) if x.size else np.ones_like(x)
    scaled = x / np.where(peak > 0, peak, 1.0).astype(np.float32)
    norm = np.linalg.norm(scaled, axis=-1, keepdims=True)
    unit: np.ndarray = scaled / np.maximum(norm, _EPS)
    return unit


def matryoshka_prefix(dense: np.ndarray, k: int) -> np.ndarray:
    """First ``k`` dims of a dense vector (or rows), renormalised: the model's MRL truncation."""
    return l2_normalize(np.asarray(dense, dtype=np.float32)[..., :k])


def maxsim(query_tokens: np.ndarray, doc_tokens: np.ndarray) -> float:
    """Late-interaction score: sum over query tokens of the best cosine against the doc's tokens.

    Args:
        query_tokens: (q, 128) token vectors of the query.
        doc_tokens: (t, 128) token vectors of one document.
    """
    q = l2_normalize(query_tokens)  # (q, 128)
    d = l2_normalize(doc_tokens)  # (t, 128)
    return float((q @ d.T).max(axis=1).sum())  # (q, t) -> (q,) -> scalar


def maxsim_many(query_tokens: np.ndarray, docs: Sequence[np.ndarray]) -> np.ndarray:
    """MaxSim of one query against many documents in one matmul. Returns (n_docs,) float32."""
    if not docs:
        return np.zeros(0, dtype=np.float32)
    q = l2_normalize(query_tokens)  # (q, 128)
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    tokens = l2_normalize(np.concatenate(docs, axis=0))  # (sum t_i, 128)
    sims = tokens @ q.T  # (sum t_i, q)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    best = np.maximum.reduceat(sims, starts, axis=0)  # (n_docs, q): best doc token per query token
    scores: np.ndarray = best.sum(axis=1).astype(np.float32)
    return scores


def rrf(rankings: Sequence[Sequence[K]], k: int = 60) -> list[tuple[K, float]]:
    """Reciprocal rank fusion: score(id) = sum over lists of 1 / (k + rank), ranks from 1."""
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])

"""What token pooling costs in recall, without a database (README, "Pooling and recall").

Every document of a cached scale corpus (``bench/multivector_scale.py`` writes it: float16
tokens, queries and exact float32 MaxSim scores) is pooled by each variant, coded to uint8
as a ``multivector_dtype="uint8"`` collection keeps it (``connectors.token_codec``; queries
quantised as they are sent), and scored by exhaustive MaxSim in numpy; recall@10 is against
the exact top 10 for three query sets: the corpus' cached queries and two held-out draws
(``TopicCorpus.queries(stream=1|2)``, 40 and 200 queries, exact scores computed here from the
float32 documents and cached beside the pooled ones).

A variant is ``<observations>-<linkage>[+<representative>]``:

- observations: ``rows`` (each token described by its row of cosine distances to the other
  tokens, Ward-clustered: colpali-engine's ``HierarchicalTokenPooler`` and
  ``connectors.pooling`` today, which ``rows-ward`` calls) or ``tokens`` (the unit token
  vectors themselves);
- linkage: ``ward`` (euclidean), ``average`` / ``complete`` (cosine), or ``kcentre`` (greedy
  farthest-point selection of tokens, no tree);
- representative: renormalised mean (default), ``plain`` mean, or ``medoid`` (the member
  token closest to the mean).

``--factors 4 3 2.5``: clusters per document ``max(int(t / factor), 1)`` (300 tokens: 75,
100, 120). Pooling 20k documents takes ~2 minutes per variant on one core
(``OPENBLAS_NUM_THREADS=1``); results are cached in ``--cache``.

``python bench/pooling_recall.py --docs 20000 --factors 3 --variants rows-ward tokens-ward``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from topic_corpus import TOKEN_DIM, TopicCorpus, exact_maxsim, top_k  # noqa: E402

from connectors import token_codec  # noqa: E402
from connectors.pooling import pool_tokens  # noqa: E402
from connectors.vectors import l2_normalize  # noqa: E402

K = 10
HELD_OUT = {1: 40, 2: 200}  # query stream -> queries


def _labels(unit: np.ndarray, k: int, observations: str, linkage: str) -> np.ndarray:
    """(t,) cluster labels in 0..k-1 of (t, d) unit tokens."""
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import pdist

    sims = unit @ unit.T  # (t, t)
    if linkage == "kcentre":  # start at the token nearest the mean, add the farthest one
        chosen = [int(np.argmax(unit @ l2_normalize(unit.mean(axis=0))))]
        best = sims[chosen[0]].copy()
        for _ in range(k - 1):
            chosen.append(int(np.argmin(best)))
            best = np.maximum(best, sims[chosen[-1]])
        labels: np.ndarray = np.argmax(sims[:, chosen], axis=1)
        return labels
    points = (1.0 - sims) if observations == "rows" else unit
    if linkage == "ward":
        tree = hierarchy.linkage(points.astype(np.float64), method="ward")
    else:
        tree = hierarchy.linkage(pdist(unit.astype(np.float64), "cosine"), method=linkage)
    labels = hierarchy.fcluster(tree, t=k, criterion="maxclust") - 1
    return labels


def pool_variant(tokens: np.ndarray, k: int, variant: str) -> np.ndarray:
    """(t, d) tokens -> (<= k, d) float32 stored vectors of one variant."""
    unit = l2_normalize(np.asarray(tokens, dtype=np.float32))
    if variant == "rows-ward" and k == max(len(unit) // round(len(unit) / k), 1):
        return pool_tokens(unit, round(len(unit) / k))  # the store's own pooler
    name, _, representative = variant.partition("+")
    observations, linkage = name.split("-")
    labels = _labels(unit, k, observations, linkage)
    out = []
    for c in np.unique(labels):
        members = unit[labels == c]  # (m, d)
        mean = members.mean(axis=0)
        if representative == "medoid":
            out.append(members[np.argmax(members @ mean)])
        elif representative == "plain":
            out.append(mean)
        else:
            out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.asarray(out, dtype=np.float32)


def pooled_corpus(tokens: np.ndarray, k: int, variant: str, cache: Path) -> tuple[Any, Any]:
    path = cache / f"{len(tokens)}-k{k}-{variant}.npz"
    if path.exists():
        z = np.load(path)
        return z["vecs"], z["offs"]
    start = time.perf_counter()
    parts = [pool_variant(np.asarray(doc, dtype=np.float32), k, variant) for doc in tokens]
    offs = np.cumsum([0] + [len(p) for p in parts])  # (n + 1,) row offsets per document
    vecs = np.concatenate(parts)
    np.savez(path, vecs=vecs, offs=offs)
    print(f"# pooled {len(tokens)} x k={k} {variant} in {time.perf_counter() - start:.0f}s")
    return vecs, offs


def coded_maxsim(queries: np.ndarray, vecs: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """(q, n) MaxSim of uint8-coded documents with queries quantised as a store sends them."""
    docs = token_codec.from_codes(token_codec.to_codes(vecs))  # (rows, d)
    sent = np.empty_like(queries)
    for i, q in enumerate(queries):
        codes = token_codec.encode_query(q)
        p = codes.vectors[:, :TOKEN_DIM] - 128.0  # (qt, d) integers
        sent[i] = p * (127.0 / codes.scale)  # back to the query's own scale
    nq, qt, _ = sent.shape
    flat = sent.reshape(nq * qt, TOKEN_DIM)
    out = np.empty((nq, len(offs) - 1), dtype=np.float32)
    for s in range(0, len(offs) - 1, 500):
        e = min(len(offs) - 1, s + 500)
        sim = flat @ docs[offs[s] : offs[e]].T  # (nq * qt, rows of documents s..e)
        best = np.maximum.reduceat(sim, offs[s:e] - offs[s], axis=1)  # (nq * qt, e - s)
        out[:, s:e] = best.reshape(nq, qt, e - s).sum(axis=1)
    return out


def recall(scores: np.ndarray, exact: np.ndarray) -> float:
    hits = [len(set(a) & set(b)) for a, b in zip(top_k(exact, K), top_k(scores, K), strict=True)]
    return float(np.mean(hits)) / K


def held_out(corpus: TopicCorpus, stream: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    path = cache / f"held-out-{corpus.n}-s{stream}.npz"
    if not path.exists():
        _, _, queries = corpus.queries(HELD_OUT[stream], stream=stream)
        np.savez(path, tokens=queries, exact=exact_maxsim(corpus, queries))
    z = np.load(path)
    return z["tokens"], z["exact"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--factors", type=float, nargs="+", default=[4, 3])
    p.add_argument("--variants", nargs="+", default=["rows-ward", "tokens-ward"])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/jvdb-multivector-scale"))
    p.add_argument("--cache", type=Path, default=Path("/tmp/jvdb-pooling-recall"))
    args = p.parse_args()
    folder = args.workdir / f"corpus-{args.docs}x300-q40"
    if not (folder / "done.json").exists():
        raise SystemExit(f"error: no cached corpus in {folder}: run bench/multivector_scale.py")
    args.cache.mkdir(parents=True, exist_ok=True)
    corpus = TopicCorpus(n=args.docs)
    tokens = np.load(folder / "tokens.npy", mmap_mode="r")  # (n, t, 128) float16
    cached = np.load(folder / "queries.npz")["tokens"]
    sets = {"bench": (cached, np.load(folder / "exact.npy"))}
    sets.update({f"held-out-{HELD_OUT[s]}": held_out(corpus, s, args.cache) for s in HELD_OUT})
    for factor in args.factors:
        k = max(int(tokens.shape[1] / factor), 1)
        for variant in args.variants:
            vecs, offs = pooled_corpus(tokens, k, variant, args.cache)
            row = {"docs": args.docs, "clusters": k, "variant": variant}
            for name, (queries, exact) in sets.items():
                row[name] = round(recall(coded_maxsim(queries, vecs, offs), exact), 4)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

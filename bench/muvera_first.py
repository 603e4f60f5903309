"""MUVERA-first search vs hybrid vs exact MaxSim on a corpus with topic structure (not a test).

    python bench/muvera_first.py                                   # 3k docs x 300 tokens
    python bench/muvera_first.py --docs 1000 --params 4,16,10 3,16,8 --json out.json
    python bench/muvera_first.py --backend milvus-lite

Documents are drawn from shared token clusters (a document mixes a few topics, a topic is a
few cluster centres shared with other topics), so MUVERA's buckets and the dense vector can
miss documents the exact MaxSim ranks high, as on real data (random unit vectors are too
easy: every document is far from every other). The dense vector is a fixed projection of a
document's mean token plus noise: it knows the topic mix, not the tokens.

Reported per MUVERA parameter set (``k_sim,dim_proj,r_reps``): the encoding's width, the
first stage's candidate recall (how many of the exact top 10 are among the encoding's top
``--prefetch``, numpy), recall@10 of the stored collection's ``muvera`` and ``hybrid`` modes
against exact float32 MaxSim over the whole corpus, p50/p95 latency of each mode (wall time
of ``store.search`` after warm-up) and the insert rate with the encoding computed.

For another benchmark: ``CollectionSpec(muvera=MuveraParams(k_sim=.., dim_proj=.., r_reps=..))``
stores the encoding (computed by ``upsert`` from the token vectors) and
``store.search(query, mode="muvera", prefetch_limit=N)`` runs encoding top-N -> MaxSim.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import CollectionSpec, MuveraParams, Query, Record, VectorStore  # noqa: E402
from connectors.muvera import encode_document, encode_query  # noqa: E402
from connectors.vectors import l2_normalize, maxsim_many  # noqa: E402

DIM = 128  # the stored dense width (a Matryoshka-truncated vector: the bench is about tokens)


def make_corpus(
    n: int, tokens: int, queries: int, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    """(doc tokens [(t, 128)], doc dense (n, DIM), query tokens [(q, 128)], query dense)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((512, 128)))
    topics = rng.integers(0, len(centres), (64, 16))  # topics share centres
    projection = rng.standard_normal((128, DIM)) / np.sqrt(128)

    def dense(tok: np.ndarray) -> np.ndarray:
        mean = l2_normalize(tok.mean(axis=0) @ projection)
        return l2_normalize(mean + 0.3 * rng.standard_normal(DIM) / np.sqrt(DIM))

    docs, doc_dense, own = [], [], []
    for _ in range(n):
        mix = np.concatenate([topics[i] for i in rng.choice(len(topics), 2, replace=False)])
        clusters = rng.choice(mix, 10, replace=False)
        noise = 0.5 * rng.standard_normal((tokens, 128)) / np.sqrt(128)
        tok = l2_normalize(centres[rng.choice(clusters, tokens)] + noise).astype(np.float32)
        docs.append(tok)
        doc_dense.append(dense(tok))
        own.append(clusters)
    q_tokens, q_dense = [], []
    for target in rng.choice(n, queries, replace=False):
        copies = docs[target][rng.choice(tokens, 16, replace=False)]
        around = centres[rng.choice(own[target], 16)]
        base = np.concatenate([copies, around])
        tok = l2_normalize(base + 0.5 * rng.standard_normal(base.shape) / np.sqrt(128))
        q_tokens.append(tok.astype(np.float32))
        q_dense.append(dense(tok))
    return docs, np.stack(doc_dense), q_tokens, np.stack(q_dense)


def open_store(backend: str, folder: Path, spec: CollectionSpec) -> VectorStore:
    if backend == "qdrant-edge":
        from connectors.qdrant import QdrantStore

        return QdrantStore.create("bench", path=folder, spec=spec)
    from connectors.milvus import MilvusStore

    return MilvusStore.create("bench", uri=str(folder / "milvus.db"), spec=spec)


def timed_search(store: VectorStore, queries: list[Query], mode: str, prefetch: int) -> Any:
    for q in queries[:3]:  # warm-up
        store.search(q, mode=mode, limit=10, prefetch_limit=prefetch)
    times, results = [], []
    for q in queries:
        start = time.perf_counter()
        hits = store.search(q, mode=mode, limit=10, prefetch_limit=prefetch)
        times.append((time.perf_counter() - start) * 1000)
        results.append([h.id for h in hits])
    return results, times


def recall(results: list[list[int]], truth: list[list[int]]) -> float:
    pairs = zip(results, truth, strict=True)
    return float(np.mean([len(set(r) & set(t)) / len(t) for r, t in pairs]))


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    docs, doc_dense, q_tokens, q_dense = make_corpus(args.docs, args.tokens, args.queries)
    exact = np.stack([maxsim_many(q, docs) for q in q_tokens])  # (queries, docs) float32
    truth = [np.argsort(-row, kind="stable")[:10].tolist() for row in exact]
    queries = [Query(dense=d, multivector=t) for d, t in zip(q_dense, q_tokens, strict=True)]
    rows = []
    for text in args.params:
        k_sim, dim_proj, r_reps = (int(x) for x in text.split(","))
        params = MuveraParams(k_sim=k_sim, dim_proj=dim_proj, r_reps=r_reps)
        fdes = np.stack([encode_document(d, params) for d in docs])
        first = [
            np.argsort(-(fdes @ encode_query(q, params)))[: args.prefetch].tolist()
            for q in q_tokens
        ]
        spec = CollectionSpec(dim=DIM, prefetch_dims=(), muvera=params)
        with tempfile.TemporaryDirectory() as tmp, open_store(args.backend, Path(tmp), spec) as db:
            records = [Record(i, doc_dense[i], docs[i]) for i in range(len(docs))]
            start = time.perf_counter()
            for s in range(0, len(records), 250):
                db.upsert(records[s : s + 250])
            db.flush()
            rate = len(records) / (time.perf_counter() - start)
            row: dict[str, Any] = {
                "params": text,
                "fde_dim": params.dim,
                "candidate_recall": recall([f[: args.prefetch] for f in first], truth),
                "inserts_per_s": round(rate, 1),
            }
            for mode in ("muvera", "hybrid"):
                results, times = timed_search(db, queries, mode, args.prefetch)
                row[f"{mode}_recall@10"] = recall(results, truth)
                row[f"{mode}_p50_ms"] = round(statistics.median(times), 2)
                row[f"{mode}_p95_ms"] = round(float(np.percentile(times, 95)), 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--backend", choices=("qdrant-edge", "milvus-lite"), default="qdrant-edge")
    parser.add_argument(
        "--params",
        nargs="+",
        default=["5,16,20", "4,16,10", "3,16,8"],
        help="MUVERA k_sim,dim_proj,r_reps sets (the first: the defaults)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = run(args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()

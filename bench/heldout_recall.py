"""Recall@10 of a kept scale collection on held-out queries (not a test).

    python bench/multivector_scale.py --docs 100000 --options balanced --keep ...
    python bench/heldout_recall.py --docs 100000 --option balanced --queries 200 --stream 2

``bench/multivector_scale.py`` measures recall on the queries cached with its corpus (stream
0). This draws another set over the same documents (``TopicCorpus.queries(stream=)``),
computes their exact float32 MaxSim over the whole corpus (regenerating the documents: ~20
minutes of one core at 100k x 300 tokens for 200 queries) and searches the collection that
``--keep`` left in the workdir, in ``multivector`` (exhaustive) and ``hybrid`` mode.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from multivector_scale import BACKENDS, K  # noqa: E402
from topic_corpus import TopicCorpus, exact_maxsim, top_k  # noqa: E402

from connectors import Query  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=20000)
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--backend", default="qdrant-edge", choices=list(BACKENDS))
    p.add_argument("--option", default="balanced", help="the kept collection's option name")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--stream", type=int, default=2, help="query stream (0: the bench's own)")
    p.add_argument("--prefetch-limit", type=int, default=100)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/jvdb-multivector-scale"))
    args = p.parse_args(argv)

    folder = args.workdir / f"{args.backend}-{args.option}-{args.docs}"
    if not folder.exists():
        p.error(f"no kept collection in {folder}: run multivector_scale.py with --keep first")
    corpus = TopicCorpus(n=args.docs, tokens=args.tokens, dim=args.dim)
    start = time.perf_counter()
    _, dense, tokens = corpus.queries(args.queries, stream=args.stream)
    truth = top_k(exact_maxsim(corpus, tokens), K)  # exact float32 top 10 per query
    print(f"exact scores of {args.queries} queries in {time.perf_counter() - start:.0f}s")
    store = BACKENDS[args.backend].open(folder)
    found: dict[str, list[float]] = {"multivector": [], "hybrid": []}
    try:
        for i in range(args.queries):
            query = Query(dense=dense[i], multivector=tokens[i])
            for mode, hits in found.items():
                extra = {"prefetch_limit": args.prefetch_limit} if mode == "hybrid" else {}
                ids = {h.id for h in store.search(query, mode=mode, limit=K, **extra)[:K]}
                hits.append(len(ids & set(truth[i])) / K)
    finally:
        store.close()
    for mode, hits in found.items():
        mean = float(np.mean(hits))
        print(f"{mode}: recall@{K} {mean:.3f}, {len(hits)} queries of stream {args.stream}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

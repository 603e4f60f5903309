"""``jina_vdb.evaluation.metrics`` against trec_eval (through pytrec_eval), not a test.

The project computes nDCG@k, recall@k and MRR@k itself (four formulas, pure Python: see
the module's docstring for why no library). This script checks them against the reference
on random graded judgements and rankings, including queries whose judgements are all 0
and empty rankings::

    pip install pytrec-eval-terrier          # not a project dependency (it pulls scipy)
    python bench/eval_metrics_check.py --queries 500

Scores are strictly decreasing with rank, so trec_eval's re-sorting by score keeps our
order. trec_eval's ``recip_rank`` has no cutoff: MRR@10 is compared on rankings cut at 10.
Exits 1 when any query differs by more than 1e-9.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jina_vdb.evaluation.metrics import evaluate_run, parse_metric  # noqa: E402

#: ours -> pytrec_eval's measure (its result key is the measure with "." -> "_").
PAIRS = {"ndcg@10": "ndcg_cut.10", "recall@10": "recall.10", "recall@100": "recall.100"}


def random_set(
    rng: random.Random, n_queries: int, n_docs: int
) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    docs = [f"d{i}" for i in range(n_docs)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, list[str]] = {}
    for q in range(n_queries):
        judged = rng.sample(docs, rng.randint(1, 30))
        qrels[f"q{q}"] = {d: rng.choice([0, 0, 1, 2, 3]) for d in judged}
        run[f"q{q}"] = rng.sample(docs, rng.randint(0, 150))
    return qrels, run


def scored(run: dict[str, list[str]], cut: int | None = None) -> dict[str, dict[str, float]]:
    """pytrec_eval's run format (doc -> score, best highest); queries with no hits dropped."""
    out = {}
    for qid, ranking in run.items():
        kept = ranking[:cut] if cut else ranking
        if kept:
            out[qid] = {doc: float(len(kept) - i) for i, doc in enumerate(kept)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import pytrec_eval
    except ImportError:
        print("needs pytrec_eval: pip install pytrec-eval-terrier", file=sys.stderr)
        return 2
    qrels, run = random_set(random.Random(args.seed), args.queries, args.docs)
    metrics = [parse_metric(m) for m in (*PAIRS, "mrr@10")]
    ours = evaluate_run(run, qrels, metrics)
    theirs = pytrec_eval.RelevanceEvaluator(qrels, set(PAIRS.values())).evaluate(scored(run))
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(scored(run, cut=10))
    worst: dict[str, float] = {}
    for qid in qrels:  # a query with no hits is missing from pytrec_eval's answer: 0
        for name, measure in PAIRS.items():
            ref = theirs.get(qid, {}).get(measure.replace(".", "_"), 0.0)
            worst[name] = max(worst.get(name, 0.0), abs(ours[qid][name] - ref))
        ref = rr.get(qid, {}).get("recip_rank", 0.0)
        worst["mrr@10"] = max(worst.get("mrr@10", 0.0), abs(ours[qid]["mrr@10"] - ref))
    no_relevant = sum(all(g <= 0 for g in judged.values()) for judged in qrels.values())
    print(
        f"{len(qrels)} queries ({no_relevant} without a relevant document, "
        f"{sum(not r for r in run.values())} with no hits), pytrec_eval {pytrec_eval.__version__}"
    )
    for name, diff in worst.items():
        print(f"  {name:<11} max |ours - trec_eval| = {diff:.3g}")
    return 0 if max(worst.values()) <= 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Ranking metrics as trec_eval (and so pytrec_eval and BEIR) compute them: pure Python.

No numpy, no torch: ``bench/`` scripts import it without the model or a database client.
The definitions, for one query with graded judgements ``qrels`` (doc id -> grade) and a ranking:

- a document is **relevant** when its grade is > 0 (trec_eval's default relevance level
  1); a document missing from the qrels is not relevant;
- **nDCG@k**: DCG@k / IDCG@k, with DCG@k = sum over ranks i = 1..k of grade_i / log2(i + 1)
  (linear gain, as trec_eval's ``ndcg_cut``; grades <= 0 gain nothing) and IDCG@k the DCG
  of the k best grades in the qrels, retrieved or not;
- **recall@k**: relevant documents in the top k / relevant documents in the qrels;
- **MRR@k**: 1 / rank of the first relevant document in the top k (0 if none).

A query whose qrels hold no relevant document (only grade-0 rows) scores 0 on every metric
and counts in the mean, as in trec_eval and BEIR. Queries with no qrels rows at all are
not evaluated (BEIR keeps only the queries that appear in the qrels); the loader in
``jina_vdb.evaluation.beir`` says how many it left out. The ranking is taken as given:
trec_eval re-sorts a run by score (ties by doc id), which only differs on tied scores.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_METRICS",
    "Metric",
    "MetricName",
    "evaluate_run",
    "mean_metrics",
    "mrr_at_k",
    "ndcg_at_k",
    "parse_metric",
    "percentile",
    "recall_at_k",
]

#: qrels of one query: doc id -> graded relevance (BEIR's ``score`` column, an int).
Judgements = Mapping[str, int]


class MetricName(str, enum.Enum):
    NDCG = "ndcg"
    RECALL = "recall"
    MRR = "mrr"


@dataclass(frozen=True)
class Metric:
    """A metric at a rank cutoff, written ``name@k`` (``ndcg@10``)."""

    name: MetricName
    k: int

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k <= 0:
            raise ValueError(f"a metric's cutoff must be a positive int, got {self.k!r}")

    def __str__(self) -> str:
        return f"{self.name.value}@{self.k}"

    def score(self, ranking: Sequence[str], qrels: Judgements) -> float:
        return _FUNCTIONS[self.name](ranking, qrels, self.k)


_METRIC = re.compile(r"\s*([a-z]+)\s*@\s*(\d+)\s*")


def parse_metric(text: str) -> Metric:
    """``"ndcg@10"`` -> Metric(NDCG, 10); a ValueError listing the valid names otherwise."""
    match = _METRIC.fullmatch(text.lower())
    names = ", ".join(m.value for m in MetricName)
    if match is None:
        raise ValueError(f"a metric looks like NAME@K (e.g. ndcg@10), got {text!r}; names: {names}")
    try:
        name = MetricName(match.group(1))
    except ValueError:
        raise ValueError(f"unknown metric {match.group(1)!r} in {text!r}; names: {names}") from None
    return Metric(name, int(match.group(2)))


#: What ``jina-vdb eval`` reports (BEIR's headline nDCG@10, plus recall and MRR).
DEFAULT_METRICS: tuple[Metric, ...] = tuple(
    parse_metric(m) for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10")
)


def _check_ranking(ranking: Sequence[str]) -> None:
    seen: set[str] = set()
    for doc in ranking:
        if doc in seen:
            raise ValueError(f"document {doc!r} appears twice in one ranking")
        seen.add(doc)


def ndcg_at_k(ranking: Sequence[str], qrels: Judgements, k: int) -> float:
    """nDCG@k with linear gain and the log2(rank + 1) discount (trec_eval ``ndcg_cut``)."""
    _check_ranking(ranking)
    dcg = sum(
        max(qrels.get(doc, 0), 0) / math.log2(rank + 1)
        for rank, doc in enumerate(ranking[:k], start=1)
    )
    best = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(best, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranking: Sequence[str], qrels: Judgements, k: int) -> float:
    """Share of the relevant documents (grade > 0) found in the top k."""
    _check_ranking(ranking)
    relevant = {doc for doc, grade in qrels.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def mrr_at_k(ranking: Sequence[str], qrels: Judgements, k: int) -> float:
    """1 / rank of the first relevant document in the top k, 0 when there is none."""
    _check_ranking(ranking)
    for rank, doc in enumerate(ranking[:k], start=1):
        if qrels.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


_FUNCTIONS = {
    MetricName.NDCG: ndcg_at_k,
    MetricName.RECALL: recall_at_k,
    MetricName.MRR: mrr_at_k,
}


def evaluate_run(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Judgements],
    metrics: Iterable[Metric] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """Per-query scores: query id -> {``"ndcg@10"``: ...}, for every query in ``qrels``.

    ``run``: query id -> ranked doc ids, best first. A query in the qrels but not in the
    run scores 0 (it retrieved nothing); a query in the run but not in the qrels is refused
    (its score is undefined: BEIR drops such queries before searching).
    """
    extra = sorted(set(run) - set(qrels))
    if extra:
        raise ValueError(
            f"{len(extra)} queries of the run have no qrels (e.g. {extra[0]!r}); "
            "leave them out before evaluating"
        )
    metrics = tuple(metrics)
    return {
        qid: {str(m): m.score(run.get(qid, ()), judged) for m in metrics}
        for qid, judged in qrels.items()
    }


def mean_metrics(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over the queries (an empty mapping for no queries)."""
    if not per_query:
        return {}
    names = next(iter(per_query.values())).keys()
    n = len(per_query)
    return {name: sum(scores[name] for scores in per_query.values()) / n for name in names}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation (numpy's default method)."""
    if not values:
        return float("nan")
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile is in [0, 100], got {q!r}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

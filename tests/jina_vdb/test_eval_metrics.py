"""Ranking metrics against hand-computed values (trec_eval's definitions), on the BEIR fixture."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from jina_vdb.evaluation import load_dataset
from jina_vdb.evaluation.metrics import (
    DEFAULT_METRICS,
    Metric,
    MetricName,
    evaluate_run,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    parse_metric,
    percentile,
    recall_at_k,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "beir_tiny"
LOG2_3 = math.log2(3)  # the rank-2 discount


def test_ndcg_graded_linear_gain_log2_discount() -> None:
    qrels = {"a": 2, "b": 1, "c": 0}
    # c (grade 0) at rank 1, a (2) at rank 2, b (1) at rank 4:
    # DCG = 0/1 + 2/log2(3) + 1/log2(5); ideal: a then b = 2/1 + 1/log2(3)
    expected = (2 / LOG2_3 + 1 / math.log2(5)) / (2 + 1 / LOG2_3)
    assert ndcg_at_k(["c", "a", "x", "b"], qrels, 10) == pytest.approx(expected)
    assert expected == pytest.approx(0.643322, abs=1e-6)
    assert ndcg_at_k(["a", "b"], qrels, 10) == pytest.approx(1.0)
    # The cutoff applies to the ideal ranking too: at k=1 the ideal is "a" alone.
    assert ndcg_at_k(["b", "a"], qrels, 1) == pytest.approx(1 / 2)
    assert ndcg_at_k(["x", "y"], qrels, 10) == 0.0
    assert ndcg_at_k([], qrels, 10) == 0.0


def test_recall_and_mrr() -> None:
    qrels = {"a": 2, "b": 1, "c": 0}
    assert recall_at_k(["c", "a", "x", "b"], qrels, 2) == pytest.approx(1 / 2)
    assert recall_at_k(["c", "a", "x", "b"], qrels, 4) == pytest.approx(1.0)
    assert mrr_at_k(["c", "x", "b"], qrels, 10) == pytest.approx(1 / 3)  # grade 0 is not relevant
    assert mrr_at_k(["c", "x", "b"], qrels, 2) == 0.0


def test_a_query_without_relevant_documents_scores_zero() -> None:
    only_zero = {"a": 0}
    for metric in DEFAULT_METRICS:
        assert metric.score(["a", "b"], only_zero) == 0.0


def test_a_ranking_with_a_repeated_document_is_refused() -> None:
    with pytest.raises(ValueError, match="'a' appears twice"):
        ndcg_at_k(["a", "b", "a"], {"a": 1}, 10)


def test_fixture_metrics_match_hand_computed_values() -> None:
    data = load_dataset(FIXTURE, "test")
    filler = [f"d{i:02d}" for i in (2, 3, 4, 5, 6, 7, 10, 11, 12, 14)]  # 10 not relevant to q3
    run = {
        "q1": ["d02", "d01", "d05", "d03"],  # grades 0, 2, -, 1
        "q2": ["d07", "d05", "d06"],  # grades 1, -, 2
        "q3": ["d09", *filler, "d08"],  # d08 (grade 2) at rank 12: past @10, within @100
        "q4": [],  # retrieved nothing
        "q5": ["d16"],  # one of two relevant documents
        "q7": ["d16", "d01"],  # q7 is judged, but nothing is relevant to it
    }
    per_query = evaluate_run(run, data.qrels)
    ideal_q1 = 2 + 1 / LOG2_3  # grades 2 and 1
    expected = {
        "q1": ((2 / LOG2_3 + 1 / math.log2(5)) / ideal_q1, 1.0, 1.0, 1 / 2),
        "q2": ((1 + 2 / 2) / ideal_q1, 1.0, 1.0, 1.0),  # rank 3: log2(4) = 2
        "q3": (0.0, 0.0, 1.0, 0.0),
        "q4": (0.0, 0.0, 0.0, 0.0),
        "q5": (1 / (1 + 1 / LOG2_3), 1 / 2, 1 / 2, 1.0),
        "q7": (0.0, 0.0, 0.0, 0.0),
    }
    names = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
    assert set(per_query) == set(expected)  # q6 is judged in split dev only
    for qid, values in expected.items():
        assert [per_query[qid][n] for n in names] == pytest.approx(list(values)), qid
    means = mean_metrics(per_query)
    assert means["ndcg@10"] == pytest.approx((0.643322 + 0.760188 + 0.613147) / 6, abs=1e-6)
    assert means["recall@10"] == pytest.approx(2.5 / 6)
    assert means["recall@100"] == pytest.approx(3.5 / 6)
    assert means["mrr@10"] == pytest.approx(2.5 / 6)


def test_run_queries_without_qrels_are_refused() -> None:
    with pytest.raises(ValueError, match="1 queries of the run have no qrels"):
        evaluate_run({"q1": ["a"], "zz": ["b"]}, {"q1": {"a": 1}})


def test_parse_metric() -> None:
    assert parse_metric(" NDCG@10 ") == Metric(MetricName.NDCG, 10)
    assert str(parse_metric("mrr@5")) == "mrr@5"
    with pytest.raises(ValueError, match="unknown metric 'map'.*ndcg, recall, mrr"):
        parse_metric("map@10")
    with pytest.raises(ValueError, match="NAME@K"):
        parse_metric("ndcg")
    with pytest.raises(ValueError, match="positive int"):
        Metric(MetricName.NDCG, 0)


def test_percentile_interpolates_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 95) == pytest.approx(3 + 0.85)  # pos 2.85 between 3 and 4
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))


def test_metrics_and_loader_import_without_torch() -> None:
    """bench/ scripts reuse the metrics without the model: no torch, transformers or PIL."""
    code = (
        "import sys\n"
        "import jina_vdb.evaluation as e\n"
        "heavy = {'torch', 'transformers', 'PIL', 'qdrant_client', 'pymilvus'} & set(sys.modules)\n"
        "print(e.ndcg_at_k(['a'], {'a': 1}, 10), sorted(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=FIXTURE.parents[2],
    )
    assert out.stdout.strip() == "1.0 []"

"""``jina-vdb eval`` in a subprocess: the fixture on both embedded stores, and bad inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from ingest_helpers import REPO, cli_command, subprocess_env
from typer.testing import CliRunner

from connectors.query import SearchMode
from connectors.spec import CollectionSpec
from connectors.stores import open_store
from jina_vdb.cli.app import app
from jina_vdb.evaluation import evaluate_run, load_dataset, mean_metrics
from jina_vdb.evaluation.runner import choose_modes, plannable_modes

FIXTURE = REPO / "tests" / "fixtures" / "beir_tiny"


def _eval(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command("eval", *args),
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _read_run(path: Path) -> dict[str, dict[str, list[str]]]:
    """A TREC run file -> mode -> query id -> doc ids by rank (ranks checked)."""
    run: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for line in path.read_text().splitlines():
        qid, q0, doc, rank, _score, mode = line.split(" ")
        assert q0 == "Q0"
        assert int(rank) == len(run[mode][qid]) + 1
        run[mode][qid].append(doc)
    return run


def test_eval_scores_every_mode_from_the_rankings(
    store_url: str, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    model = ("--model", str(tiny_checkpoint), "--device", "cpu")
    run_file = tmp_path / "run.txt"
    result = _eval(
        str(FIXTURE), "--store", store_url, *model, "--json", "--run-file", str(run_file), "-q"
    )
    assert result.returncode == 0, result.stderr
    assert "ingest" in result.stderr and "added 20, skipped 0" in result.stderr
    report = json.loads(result.stdout)
    assert (report["documents"], report["queries"], report["unjudged_queries"]) == (20, 6, 1)
    assert report["collection"] == "eval_beir_tiny"

    with open_store(store_url, "eval_beir_tiny") as db:
        spec = db.spec
        # Record ids are the BEIR ids; the embedded text is title + " " + text.
        (d01,) = db.get(["d01"])
        assert d01.payload["text"].startswith("Berlin Berlin is the capital")
    expected_modes, _ = plannable_modes(spec)
    assert [r["mode"] for r in report["results"]] == [m.value for m in expected_modes]
    assert {m.value for m in expected_modes} == {m.value for m in SearchMode} - set(
        report["skipped_modes"]
    )

    # The reported means are the metrics of the rankings written to the run file.
    qrels = load_dataset(FIXTURE, "test").qrels
    run = _read_run(run_file)
    for mode_result in report["results"]:
        rankings = run[mode_result["mode"]]
        assert set(rankings) == set(qrels)
        assert all(len(r) == 20 for r in rankings.values())  # depth 100 > 20 documents
        assert all(d.startswith("d") for r in rankings.values() for d in r)
        expected = mean_metrics(evaluate_run(rankings, qrels))
        assert mode_result["scores"] == pytest.approx(expected)
        assert mode_result["foreign_hits"] == 0
        assert 0 < mode_result["p50_ms"] <= mode_result["p95_ms"]


def test_eval_table_reruns_without_reingesting(tmp_path: Path, tiny_checkpoint: Path) -> None:
    store = f"qdrant:{tmp_path / 'qdrant'}"
    common = ("--store", store, "--model", str(tiny_checkpoint), "--device", "cpu", "-q")
    first = _eval(str(FIXTURE), *common, "--modes", "dense,hybrid", "--limit", "2")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith(f"{FIXTURE} (split test): 20 documents, 2 queries")
    assert "1 without qrels in this split left out" in lines[0]
    assert lines[1].split() == [
        "mode",
        "ndcg@10",
        "recall@10",
        "recall@100",
        "mrr@10",
        "p50",
        "ms",
        "p95",
        "ms",
    ]
    assert [line.split()[0] for line in lines[2:4]] == ["dense", "hybrid"]
    assert lines[-1].startswith("latency: the store's search call per query (100 results")
    again = _eval(str(FIXTURE), *common, "--modes", "dense", "--no-ingest", "--split", "dev")
    assert again.returncode == 0, again.stderr
    assert "ingest" not in again.stderr
    assert "20 documents, 1 queries, 6 without qrels" in again.stdout


def _broken_copy(tmp_path: Path, file: str, old: str, new: str) -> Path:
    data = Path(shutil.copytree(FIXTURE, tmp_path / "beir"))
    text = (data / file).read_text()
    (data / file).write_text(text.replace(old, new, 1))
    return data


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("corpus.jsonl", '{"_id": "d03"', "{oops", "corpus.jsonl:3: not valid JSON"),
        ("qrels/test.tsv", "q1\td03\t1", "q1\td42\t1", "test.tsv:3: corpus-id 'd42' is not in"),
        ("qrels/test.tsv", "q1\td03\t1", "q8\td03\t1", "test.tsv:3: query-id 'q8' is not in"),
    ],
)
def test_eval_bad_dataset_is_one_line(
    tmp_path: Path, file: str, old: str, new: str, message: str
) -> None:
    data = _broken_copy(tmp_path, file, old, new)
    result = _eval(str(data), "--store", f"qdrant:{tmp_path / 'q'}", "--model", "tiny")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "q").exists()  # refused before anything was written


def test_eval_missing_file_unknown_mode_and_verbose(tmp_path: Path) -> None:
    data = _broken_copy(tmp_path, "queries.jsonl", "", "")
    (data / "queries.jsonl").unlink()
    store = ("--store", f"qdrant:{tmp_path / 'q'}", "--model", "tiny")
    missing = _eval(str(data), *store)
    assert missing.returncode == 1 and "queries.jsonl: no such file" in missing.stderr
    mode = _eval(str(FIXTURE), *store, "--modes", "dense,bm25")
    assert mode.returncode == 1
    assert "unknown search mode 'bm25'; valid modes: dense, multivector" in mode.stderr
    absent = _eval(str(FIXTURE), *store, "--no-ingest", "--collection", "nope")
    assert absent.returncode == 1
    assert "no collection 'nope' in" in absent.stderr and "leave out --no-ingest" in absent.stderr
    shallow = _eval(str(FIXTURE), *store, "--depth", "50")
    assert shallow.returncode == 1
    assert "--depth 50 is below the largest metric cutoff (100)" in shallow.stderr
    verbose = _eval(str(data), *store, "--verbose")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
    assert "DatasetError" in verbose.stderr


def test_modes_follow_the_spec() -> None:
    dense_only = CollectionSpec(dim=64, prefetch_dims=(16,), multivector=False)
    ok, refused = plannable_modes(dense_only)
    assert SearchMode.DENSE in ok and SearchMode.FUNNEL in ok
    assert {"multivector", "hybrid", "fusion"} <= set(refused)
    assert "multivector=False" in refused["hybrid"]
    with pytest.raises(ValueError, match="mode 'hybrid' cannot run on this collection"):
        choose_modes(dense_only, ["dense", "hybrid"])
    assert choose_modes(dense_only, ["DENSE", "dense"]) == ([SearchMode.DENSE], {})
    full = CollectionSpec(dim=64, prefetch_dims=(16,), multivector=True)
    ok, refused = plannable_modes(full)
    assert set(refused) == {"muvera"} and "MUVERA" in refused["muvera"]
    with_muvera = CollectionSpec(dim=64, prefetch_dims=(16,), multivector=True, muvera=True)
    assert plannable_modes(with_muvera) == (list(SearchMode), {})


def test_eval_a_collection_ingested_from_the_corpus_file(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """``jina-vdb ingest corpus.jsonl`` with any option (here MUVERA), then eval --no-ingest:
    hits map back through the ``_id`` kept in the payload, and the MUVERA mode is scored."""
    store = ("--store", f"qdrant:{tmp_path / 'qdrant'}", "--collection", "docs")
    model = ("--model", str(tiny_checkpoint), "--device", "cpu")
    ingest = CliRunner().invoke(
        app, ["ingest", str(FIXTURE / "corpus.jsonl"), *store, *model, "--muvera", "-q"]
    )
    assert ingest.exit_code == 0, ingest.output
    result = CliRunner().invoke(
        app, ["eval", str(FIXTURE), *store, *model, "--no-ingest", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["mode"] for r in report["results"]] == [m.value for m in SearchMode]
    assert all(r["foreign_hits"] == 0 for r in report["results"])
    assert report["skipped_modes"] == {}

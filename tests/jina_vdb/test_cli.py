"""The jina-vdb CLI: ingest / search / info on both embedded stores, errors, and the demo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ingest_helpers import REPO, cli_command, subprocess_env
from typer.testing import CliRunner

from jina_vdb.cli.app import app
from jina_vdb.sources.samples import write_sample_corpus

runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_ingest_search_info(store_url: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    write_sample_corpus(tmp_path / "corpus")
    model = ("--model", str(tiny_checkpoint), "--device", "cpu")
    where = ("--store", store_url, "--collection", "docs")
    first = _invoke(
        "ingest",
        str(tmp_path / "corpus"),
        *where,
        *model,
        "--task",
        "auto",
        "--dpi",
        "50",
        "-q",
        "--meta",
        "batch=7",
    )
    assert first.stdout.startswith("added 13, skipped 0 (unchanged), failed 0")
    again = _invoke(
        "ingest",
        str(tmp_path / "corpus"),
        *where,
        *model,
        "--task",
        "auto",
        "--dpi",
        "50",
        "-q",
        "--meta",
        "batch=7",
    )
    assert again.stdout.startswith("added 0, skipped 13 (unchanged), failed 0")

    hits = json.loads(
        _invoke("search", "quarterly revenue", *where, *model, "--limit", "4", "--json").stdout
    )
    assert len(hits) == 4 and all(h["payload"]["meta"] == {"batch": 7} for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    images = json.loads(
        _invoke("search", "a chart", *where, *model, "--filter", "kind=image", "--json").stdout
    )
    assert sorted(Path(h["payload"]["source"]).name for h in images) == [
        "receipt_table.png",
        "revenue_chart.png",
    ]
    by_image = _invoke(
        "search",
        *where,
        *model,
        "--image",
        str(tmp_path / "corpus/images/revenue_chart.png"),
        "--mode",
        "dense",
        "--limit",
        "1",
    )
    assert "revenue_chart.png" in by_image.stdout.splitlines()[2]  # an image finds itself first
    funnel = _invoke("search", "Berlin", *where, *model, "--mode", "funnel", "--limit", "3")
    assert [line.split()[0] for line in funnel.stdout.splitlines()[2:]] == ["1", "2", "3"]

    info = json.loads(_invoke("info", *where, "--json").stdout)
    assert (
        info["count"] == 13 and info["spec"]["dim"] == 64 and info["spec"]["prefetch_dims"] == [16]
    )
    assert info["disk_bytes"] > 13 * 64 * 4  # at least the dense vectors
    assert "count:" in _invoke("info", *where).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("info", "--store", "redis://localhost", "--collection", "docs"),
            "error: unknown store URL 'redis://localhost'",
        ),
        (
            ("info", "--store", "qdrant:{tmp}/none", "--collection", "docs"),
            "error: no collection 'docs' in qdrant:{tmp}/none; create it by ingesting into it: "
            "jina-vdb ingest PATH --store qdrant:{tmp}/none --collection docs",
        ),
        (
            ("search", "q", "--store", "qdrant:{tmp}", "--filter", "=3"),
            "error: cannot parse filter '=3'",
        ),
        (
            ("ingest", "{tmp}", "--store", "milvus+http://user:pw@host:19530", "--model", "tiny"),
            "error: store URL must not contain credentials",
        ),
    ],
)
def test_errors_are_one_clear_line_with_exit_code_1(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    assert (
        result.stderr.startswith(message.format(tmp=tmp_path))
        and len(result.stderr.strip().splitlines()) == 1
    ), result.stderr
    assert "pw" not in result.output


def test_console_errors_and_verbose_traceback_in_a_real_process(tmp_path: Path) -> None:
    plain = subprocess.run(
        cli_command("info", "--store", "nowhere", "-c", "docs"),
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 1 and plain.stderr.strip().splitlines() == [
        "error: unknown store URL 'nowhere'; expected qdrant:PATH, qdrant+http://HOST:6333, "
        "qdrant+grpc://HOST:6334, milvus:PATH.db or milvus+http://HOST:19530"
    ]
    verbose = subprocess.run(
        cli_command("info", "--store", "nowhere", "-c", "docs", "--verbose"),
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verbose.returncode == 1 and "Traceback (most recent call last)" in verbose.stderr


def test_offline_hub_error_suggests_the_tiny_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    # Offline and an empty cache, whatever this machine can reach: the hub must not be tried.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    result = runner.invoke(
        app, ["ingest", str(tmp_path / "a.txt"), "--store", f"qdrant:{tmp_path / 'q'}"]
    )
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "error: cannot download 'jinaai/jina-embeddings-v4' from the Hugging Face hub"
    )
    assert "--model tiny" in line


def test_demo_runs_offline_with_the_tiny_model(tmp_path: Path) -> None:
    env = subprocess_env(JINA_VDB_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    cmd = cli_command("demo", "--model", "tiny", "--workdir", str(tmp_path / "demo"))
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "added 13, skipped 0" in result.stdout and result.stdout.count("\nquery: ") == 5
    assert result.stdout.count("\n   1  ") == 5 and result.stdout.count("\n   3  ") == 5
    assert list(
        (tmp_path / "cache").glob("tiny-*/model.safetensors.index.json")
    )  # the tiny model is cached

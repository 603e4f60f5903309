"""``--compile`` on the CLI: refused where it cannot apply, same hits where it does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ingest_helpers import run_cli, write_text_corpus


def test_compile_with_ray_is_refused_in_one_line(tmp_path: Path) -> None:
    write_text_corpus(tmp_path / "corpus", n=2)
    where = ("--store", f"qdrant:{tmp_path / 'q'}", "--collection", "docs")
    done = run_cli("ingest", str(tmp_path / "corpus"), *where, "--model", "tiny", "--compile",
                   "--ray", "local")  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--compile is not supported with --ray" in lines[0]
    assert not (tmp_path / "q").exists()  # refused before anything was written


@pytest.mark.slow
def test_compiled_ingest_finds_what_eager_ingest_finds(tmp_path: Path) -> None:
    write_text_corpus(tmp_path / "corpus", n=8)
    hits = {}
    for name, extra in (("eager", ()), ("compiled", ("--compile",))):
        where = ("--store", f"qdrant:{tmp_path / name}", "--collection", "docs")
        common = ("--model", "tiny", "--device", "cpu")
        done = run_cli("ingest", str(tmp_path / "corpus"), *where, *common, *extra, "-q",
                       timeout=900)  # fmt: skip
        assert done.returncode == 0, done.stderr
        found = run_cli("search", "river bank", *where, *common, "--limit", "5", "--json")
        assert found.returncode == 0, found.stderr
        hits[name] = json.loads(found.stdout)
    assert [h["id"] for h in hits["compiled"]] == [h["id"] for h in hits["eager"]]
    for a, b in zip(hits["compiled"], hits["eager"], strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)

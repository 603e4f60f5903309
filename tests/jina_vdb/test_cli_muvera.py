"""``jina-vdb ingest --muvera`` and ``search --mode muvera`` in real processes, both stores."""

from __future__ import annotations

import json
from pathlib import Path

from ingest_helpers import run_cli, write_text_corpus


def _ids(result) -> list[str]:
    assert result.returncode == 0, result.stderr[-2000:]
    return [h["payload"]["source"] for h in json.loads(result.stdout)]


def test_muvera_ingest_and_search(store_url: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    write_text_corpus(tmp_path / "texts", 8)
    model = ("--model", str(tiny_checkpoint), "--device", "cpu")
    where = ("--store", store_url, "-c", "mv")
    params = ("--muvera-params", "k_sim=3,dim_proj=8,r_reps=4,seed=7")
    done = run_cli("ingest", str(tmp_path / "texts"), *where, *model, *params, "-q")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "added 8" in done.stdout
    info = json.loads(run_cli("info", *where, "--json").stdout)
    assert info["spec"]["muvera"] == {"k_sim": 3, "dim_proj": 8, "r_reps": 4, "seed": 7}
    # The encoding's candidates cover the corpus: the MaxSim rerank gives the exact ranking.
    search = ("search", "Document 3", *where, *model, "--json", "--limit", "5")
    muvera = _ids(run_cli(*search, "--mode", "muvera", "--prefetch-limit", "8"))
    exact = _ids(run_cli(*search, "--mode", "multivector"))
    assert muvera == exact and len(muvera) == 5
    narrow = _ids(run_cli(*search, "--mode", "muvera", "--prefetch-limit", "5"))
    assert len(narrow) == 5 and set(narrow) <= {str(p) for p in (tmp_path / "texts").iterdir()}


def test_muvera_mode_on_a_collection_without_it_is_one_clear_line(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    write_text_corpus(tmp_path / "texts", 2)
    model = ("--model", str(tiny_checkpoint), "--device", "cpu")
    where = ("--store", f"qdrant:{tmp_path / 'q'}", "-c", "plain")
    assert run_cli("ingest", str(tmp_path / "texts"), *where, *model, "-q").returncode == 0
    result = run_cli("search", "Document 1", *where, *model, "--mode", "muvera")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: mode 'muvera' needs the collection's MUVERA field")
    assert "--muvera" in line
    # Adding --muvera to an existing collection without it is refused, naming the field.
    again = run_cli("ingest", str(tmp_path / "texts"), *where, *model, "-q", "--muvera")
    assert again.returncode == 1
    assert "muvera: existing=None" in again.stderr.strip().splitlines()[-1]


def test_bad_muvera_params_fail_before_the_model_loads(tmp_path: Path) -> None:
    where = ("--store", f"qdrant:{tmp_path / 'q'}", "-c", "x", "--model", "/nonexistent/model")
    for value, message in (
        ("k_sim=three", "error: --muvera-params takes comma-separated key=int pairs"),
        ("bits=3", "error: --muvera-params 'bits=3': unknown muvera parameters ['bits']"),
        ("k_sim=0", "error: --muvera-params 'k_sim=0': muvera k_sim must be an int in [1, 10]"),
    ):
        result = run_cli("ingest", str(tmp_path), *where, "--muvera-params", value)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(message), line
    assert not (tmp_path / "q").exists()

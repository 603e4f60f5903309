"""The CLI on Milvus, in real processes: one-line errors (pymilvus' own logging silenced without
--verbose), nothing created by a read, and ingest + search on the real 2.3.5 server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from ingest_helpers import run_cli, write_text_corpus

_cli = run_cli


def test_search_on_a_missing_milvus_lite_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    result = _cli("search", "q", "--store", f"milvus:{path}", "-c", "docs", "--model", "tiny")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: no ") and "'docs'" in line and str(path) in line
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_server_errors_are_one_line_unless_verbose(milvus_server: Any) -> None:
    store = f"milvus+{milvus_server.uri}"
    plain = _cli("info", "--store", store, "-c", "bad-name")
    assert plain.returncode == 1
    (line,) = plain.stderr.strip().splitlines()  # no pymilvus [ERROR] log, no traceback
    assert line.startswith(f"error: Milvus at {milvus_server.uri} refused a request")
    assert "Invalid collection name" in line
    verbose = _cli("info", "--store", store, "-c", "bad-name", "--verbose")
    assert verbose.returncode == 1
    assert "[ERROR][_log_rpc_error]" in verbose.stderr and "Traceback" in verbose.stderr


def test_ingest_and_search_on_the_real_server(milvus_server: Any, tmp_path: Path) -> None:
    write_text_corpus(tmp_path / "texts", 6)
    store, name = f"milvus+{milvus_server.uri}", f"cli_{uuid.uuid4().hex[:8]}"
    common = ("--store", store, "-c", name, "--model", "tiny")
    done = _cli("ingest", str(tmp_path / "texts"), *common, "--quiet", "--prefetch-dims", "none")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "added 6" in done.stdout
    hits = _cli("search", "Document 3", *common, "--json")
    assert hits.returncode == 0, hits.stderr[-2000:]
    assert len(json.loads(hits.stdout)) == 6

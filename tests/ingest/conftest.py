"""Fixtures for the ingestion and CLI tests (the tiny checkpoint comes from tests/conftest.py)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: The embedded stores every ingestion test runs on: name -> store URL inside a folder.
STORES = {
    "qdrant-edge": lambda tmp: f"qdrant:{tmp / 'qdrant'}",
    "milvus-lite": lambda tmp: f"milvus:{tmp / 'milvus.db'}",
}


@pytest.fixture(params=sorted(STORES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh embedded store URL, once per backend."""
    return STORES[request.param](tmp_path)


@pytest.fixture(autouse=True)
def _restore_log_levels() -> Iterator[None]:
    """The CLI sets jina-vdb's logger levels; put them back so other tests see the defaults."""
    names = ("connectors", "embedder")
    saved = {n: logging.getLogger(n).level for n in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for running jina-vdb in a subprocess from the repository root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "connectors.cli", *args]


def write_text_corpus(folder: Path, n: int = 12, *, words: int = 30) -> list[Path]:
    """``n`` small distinct text files (deterministic)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"doc_{i:03d}.txt"
        path.write_text(
            " ".join(f"word{i}_{j}" for j in range(words)) + f". Document {i}.", encoding="utf-8"
        )
        paths.append(path)
    return paths

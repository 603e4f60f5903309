"""Fixtures for the ingestion and CLI tests (the tiny checkpoint comes from tests/conftest.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

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

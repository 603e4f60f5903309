"""Shared fixtures: one tiny random jina-embeddings-v4 checkpoint per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random checkpoint in the real layout (read-only: copy it before changing it)."""
    from embedder.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-jina-v4"), seed=0)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_checkpoint: Path):
    """The tiny checkpoint loaded once on CPU in float32 (the precision the tests compare in)."""
    from embedder import JinaV4Embedder

    return JinaV4Embedder.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32")


def start_local_milvus(folder: Path) -> Any:
    """A started ``LocalMilvusServer`` in ``folder``; skipped (failed under CI) without the
    ``milvus`` package, which the ``test`` extra installs."""
    import importlib.util
    import os

    if importlib.util.find_spec("milvus") is None:
        message = "the milvus package (a real local Milvus server) is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI installs it with the 'test' extra")
        pytest.skip(f"{message}: pip install 'jina-vdb[test]'")
    from connectors.milvus.testing import LocalMilvusServer

    server = LocalMilvusServer(folder)
    server.start()
    return server


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):
    """A real Milvus 2.3.5 standalone (PyPI ``milvus``) on free loopback ports, for the session.

    Data lives in a temp folder; the server is stopped by its PID at the end.
    """
    server = start_local_milvus(tmp_path_factory.mktemp("milvus-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def own_milvus_server(tmp_path_factory: pytest.TempPathFactory):
    """A Milvus server of the test module's own, for tests that kill and restart it."""
    server = start_local_milvus(tmp_path_factory.mktemp("milvus-own"))
    try:
        yield server
    finally:
        server.stop()

"""Shared fixtures: one tiny random jina-embeddings-v4 checkpoint per test session."""

from __future__ import annotations

from pathlib import Path

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

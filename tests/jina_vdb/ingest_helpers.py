"""Shared checks: a store holds exactly these items, once each, with the right vectors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from connectors import VectorStore
from connectors.vectors import l2_normalize, matryoshka_prefix

REPO = Path(__file__).resolve().parents[2]
TINY_DIM, TINY_PREFETCH = 64, (16,)


def direct_encoding(embedder: Any, item: Any) -> tuple[np.ndarray, np.ndarray]:
    """Encode one item on its own, the way a user would without the pipeline."""
    content = item.load()
    if str(item.modality.value) == "text":
        batch = embedder.encode_text([content], task=item.task, prompt_name="passage")
    else:
        batch = embedder.encode_image([content], task=item.task)
    return batch.dense[0], batch.multivectors[0]


def assert_store_holds(store: VectorStore, items: Sequence[Any], embedder: Any) -> None:
    """Exactly ``items`` are stored, once each, with direct-encoding vectors and their payloads."""
    ids = [it.id for it in items]
    assert len(set(ids)) == len(ids)
    assert store.count() == len(ids)
    records = store.get(ids, with_vectors=True)
    assert [r.id for r in records] == ids
    for item, record in zip(items, records, strict=False):
        dense, multi = direct_encoding(embedder, item)
        np.testing.assert_allclose(
            record.dense, matryoshka_prefix(dense, store.spec.dim), atol=1e-4, err_msg=str(item.id)
        )
        assert record.multivector is not None and record.multivector.shape == multi.shape, item.id
        # token vectors are stored as float16
        np.testing.assert_allclose(
            record.multivector, l2_normalize(multi), atol=3e-3, err_msg=str(item.id)
        )
        assert record.payload == item.payload


class SpyEncoder:
    """The real encoder, counting what it is asked to encode (and optionally failing on purpose)."""

    def __init__(
        self,
        inner: Any,
        *,
        poison: str | None = None,
        broken: bool = False,
        gate: threading.Event | None = None,
    ) -> None:
        self.inner, self.poison, self.broken, self.gate = inner, poison, broken, gate
        self.calls: list[int] = []
        self.encoded = 0

    def _check(self, contents: Sequence[Any]) -> None:
        if self.gate is not None:
            assert self.gate.wait(timeout=30), "test gate never opened"
        self.calls.append(len(contents))
        if self.broken:
            raise RuntimeError("the encoder is broken")
        if self.poison and any(isinstance(c, str) and self.poison in c for c in contents):
            raise ValueError(f"cannot encode text containing {self.poison!r}")
        self.encoded += len(contents)

    def encode_text(self, texts: Sequence[str], **kw: Any) -> Any:
        self._check(texts)
        return self.inner.encode_text(texts, **kw)

    def encode_image(self, images: Sequence[Any], **kw: Any) -> Any:
        self._check(images)
        return self.inner.encode_image(images, **kw)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for running jina-vdb in a subprocess from the repository root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jina_vdb.cli", *args]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``jina-vdb ARGS`` in a subprocess from the repository root, output captured."""
    return subprocess.run(
        cli_command(*args),
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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

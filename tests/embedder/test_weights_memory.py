"""Resident weights stay within the model's own size, and task switches stay exact (issue 17)."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from embedder import CheckpointError, JinaV4Embedder
from embedder.footprint import tensor_bytes_by_device
from embedder.testing import random_embedder

TEXTS = ["short", "def f(x):\n    return x * 2\n", "Paris is the capital of France. " * 6]
# Switching back and forth, repeats, and every task after every other.
SEQUENCE = ["retrieval", "code", "retrieval", "text-matching", "code", "code", "retrieval",
            "text-matching", "retrieval", "code"]  # fmt: skip


def _load(folder: Path, dtype: str = "float32") -> JinaV4Embedder:
    return JinaV4Embedder.from_pretrained(folder, device="cpu", dtype=dtype)


def _budget_parts(emb: JinaV4Embedder) -> tuple[int, int, int]:
    """(bytes held on the CPU, the model's parameter bytes, the LoRA factors' bytes)."""
    held = tensor_bytes_by_device(emb)["cpu"]
    params = sum(p.numel() * p.element_size() for p in emb._model.parameters())
    factors = tensor_bytes_by_device(emb._lora.factors)["cpu"]
    return held, params, factors


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resident_weights_within_budget_after_switches(tiny_checkpoint: Path, dtype: str) -> None:
    """Everything the embedder holds on its device, counted by walking its references.

    The budget is 1.1x the model's parameter bytes at the real shapes, where the three
    tasks' LoRA factors are 4.9 % of the model. The tiny model's factors are ~50 % of it
    (rank 32 against hidden size 64), so the bound here is stated on what is left after
    the factors: at most 5 % above the parameters. A second copy of the adapted base
    weights (the old design) is ~40 % of the tiny model and fails it.
    """
    emb = _load(tiny_checkpoint, dtype)
    for task in SEQUENCE:
        emb.encode_text(TEXTS[:1], task=task)
        held, params, factors = _budget_parts(emb)
        assert held - factors <= 1.05 * params, (task, held, params, factors)
    buffers = sum(b.numel() * b.element_size() for b in emb._model.buffers())
    assert held == params + buffers + factors  # nothing else stays resident


def test_random_model_within_budget() -> None:
    emb = random_embedder("tiny", device="cpu", dtype="float32")
    for task in SEQUENCE[:4]:
        emb.encode_text(TEXTS[:1], task=task)
    held, params, factors = _budget_parts(emb)
    assert held - factors <= 1.05 * params


def _assert_equal(a, b) -> None:
    assert torch.equal(torch.from_numpy(a.dense), torch.from_numpy(b.dense))
    for x, y in zip(a.multivectors, b.multivectors, strict=True):
        assert torch.equal(torch.from_numpy(x), torch.from_numpy(y))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_any_task_sequence_equals_a_fresh_model_per_task(tiny_checkpoint: Path, dtype: str) -> None:
    fresh = {t: _load(tiny_checkpoint, dtype).encode_text(TEXTS, task=t) for t in set(SEQUENCE)}
    assert not np.array_equal(fresh["retrieval"].dense, fresh["code"].dense)
    emb = _load(tiny_checkpoint, dtype)
    for task in SEQUENCE:
        _assert_equal(emb.encode_text(TEXTS, task=task), fresh[task])


def test_random_model_switches_are_exact() -> None:
    fresh = {
        t: random_embedder("tiny", device="cpu", seed=5).encode_text(TEXTS, task=t)
        for t in ("retrieval", "code")
    }
    emb = random_embedder("tiny", device="cpu", seed=5)
    for task in ["code", "retrieval", "code", "retrieval"]:
        _assert_equal(emb.encode_text(TEXTS, task=task), fresh[task])


def test_one_task_never_reads_the_checkpoint_again(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    emb = _load(folder)
    before = emb.encode_text(TEXTS, task="code")
    shutil.rmtree(folder)  # the base weights' only copy off the device
    _assert_equal(emb.encode_text(TEXTS, task="code"), before)
    with pytest.raises(CheckpointError, match="must stay in place"):
        emb.encode_text(TEXTS, task="retrieval")


def test_changed_checkpoint_is_refused_not_merged(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    emb = _load(folder)
    emb.encode_text(TEXTS, task="retrieval")
    shard = folder / "model-00001-of-00002.safetensors"
    tensors = load_file(shard)
    save_file({k: v + 1 for k, v in tensors.items()}, str(shard), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"{shard.name} changed since the model was loaded"):
        emb.encode_text(TEXTS, task="code")
    # Half-merged weights are never used: the task that was live before must re-merge
    # too, and cannot.
    with pytest.raises(CheckpointError, match="changed since"):
        emb.encode_text(TEXTS, task="retrieval")


def test_spilled_base_weights_are_removed_with_the_model() -> None:
    emb = random_embedder("tiny", device="cpu")
    files = emb._lora._base.files
    assert files and all(p.is_file() for p in files)
    folder = files[0].parent
    del emb
    gc.collect()
    assert not os.path.exists(folder)

"""The benchmarks' reference-style path computes what the project computes, and restores the
model; the throughput benchmark's dry run writes every JSON key the GPU session reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

TEXTS = [
    "how do vector databases store embeddings?",
    "x",
    "def embed(texts): return model.encode_text(texts) " * 12,
]


@pytest.fixture
def fresh_embedder(tiny_checkpoint: Path):
    """A tiny embedder with no task merged yet (the reference-style path needs that)."""
    from embedder import JinaV4Embedder

    return JinaV4Embedder.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32")


def test_reference_style_texts_match_the_project_path(fresh_embedder) -> None:
    import reference_style

    from embedder import PromptName, Task

    dense, multi, tokens = reference_style.encode_texts(
        fresh_embedder, TEXTS, Task.CODE, PromptName.PASSAGE
    )
    out = fresh_embedder.encode_text(TEXTS, task="code", prompt_name="passage")
    assert tokens == int(out.token_counts.sum())
    np.testing.assert_array_less(0.99999, (dense * out.dense).sum(axis=1))
    for ref, got in zip(multi, out.multivectors, strict=True):
        assert ref.shape == got.shape
        np.testing.assert_array_less(0.99999, (ref * got).sum(axis=1))
    # Another task's adapter gives other vectors: the unmerged update is really applied.
    other = fresh_embedder.encode_text(TEXTS, task="retrieval", prompt_name="passage")
    assert (dense * other.dense).sum(axis=1).min() < 0.9999


def test_reference_style_images_match_the_project_path(fresh_embedder) -> None:
    import reference_style
    from PIL import Image

    rng = np.random.default_rng(0)
    pages = [Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)) for _ in range(3)]
    dense, multi = reference_style.encode_images(fresh_embedder, pages, 602112)
    out = fresh_embedder.encode_image(pages, task="retrieval")
    np.testing.assert_array_less(0.99999, (dense * out.dense).sum(axis=1))
    assert [m.shape for m in multi] == [m.shape for m in out.multivectors]


def test_reference_mode_restores_the_model_and_refuses_merged_weights(fresh_embedder) -> None:
    import reference_style

    from embedder import Task

    model = fresh_embedder._model

    def state() -> dict[str, tuple[int, int, bool]]:
        return {
            name: (
                id(mod),
                len(mod._forward_hooks),
                "_output_capturing_hooks_installed" in vars(mod),
            )
            for name, mod in model.named_modules()
        }

    before = state()
    lm = model.model.language_model
    with reference_style.reference_mode(fresh_embedder, Task.RETRIEVAL) as held:
        q_proj = lm.layers[0].self_attn.q_proj
        assert isinstance(q_proj, reference_style.UnmergedLoRALinear)
        ids, _ = fresh_embedder._processor.tokenize_texts(["abc"], ["Query: "], 64)
        model(fresh_embedder._processor.collate_text(ids))
        hidden_states, logits = held[0]
        assert len(hidden_states) == len(lm.layers) + 1
        assert logits.shape[-1] == lm.embed_tokens.num_embeddings  # full vocabulary
    # The same modules, and no hook left behind (torch.compile cannot trace transformers'
    # hidden-state collectors).
    assert state() == before
    assert "forward" not in vars(lm)
    fresh_embedder.encode_text(["abc"], task="retrieval")  # merges retrieval
    with pytest.raises(RuntimeError, match="merged"):
        with reference_style.reference_mode(fresh_embedder, Task.RETRIEVAL):
            pass


@pytest.mark.slow
def test_embed_throughput_dry_run_writes_every_key(tmp_path: Path) -> None:
    out = tmp_path / "throughput.jsonl"
    cmd = [sys.executable, str(ROOT / "bench" / "embed_throughput.py"), "--model", "tiny",
           "--device", "cpu", "--smoke", "--variants", "packed", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    summary = lines[-1]
    assert summary["stage"] == "summary"
    for key in (
        "project_tok_per_s", "project_pages_per_s", "project_pages_per_s_1806336",
        "project_queries_per_s", "single_query_p50_ms", "single_query_p95_ms",
        "reference_tok_per_s", "reference_pages_per_s", "reference_queries_per_s",
        "reference_single_query_p50_ms", "tok_per_s_ratio", "pages_per_s_ratio",
        "project_tok_per_s_packed", "single_query_p50_ms_packed", "project_pages_per_s_packed",
    ):  # fmt: skip
        assert summary[key] > 0, key
    assert summary["reference_vs_project_dense_cos_min"] > 0.9999
    assert summary["packed"] is False  # CPU: the primary run is padded

"""The vision tower's window attention: batched SDPA (CPU, reference) and varlen (CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from embedder.attention import (
    VISION_ATTENTION,
    VISION_GROUPED_ATTENTION,
    _varlen_attention,
    _varlen_kernel,
    grouped_windowed_sdpa,
    sdpa_by_length,
    varlen_available,
    windowed_sdpa,
)
from embedder.model import set_vision_varlen


def test_packed_windows_equal_per_window_sdpa() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = [64, 48, 64, 16, 64, 48, 3]
    heads, dim, total = 4, 16, sum(lengths)
    q, k, v = (torch.randn(1, heads, total, dim, generator=gen) for _ in range(3))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    got, _ = windowed_sdpa(None, q, k, v, scaling=0.25, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    assert got.shape == (1, total, heads, dim)
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        want = F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], scale=0.25)
        torch.testing.assert_close(got[:, a:b], want.transpose(1, 2), rtol=0, atol=1e-6)
    # Without boundaries (called per window, like any backend) it is plain SDPA.
    plain, _ = windowed_sdpa(None, q, k, v, scaling=0.25)
    want = F.scaled_dot_product_attention(q, k, v, scale=0.25).transpose(1, 2)
    torch.testing.assert_close(plain, want, rtol=0, atol=1e-6)


def test_vision_tower_uses_it_and_text_keeps_sdpa(tiny_embedder) -> None:
    model = tiny_embedder._model.model
    assert model.visual.blocks[0].attn.config._attn_implementation == VISION_ATTENTION
    assert model.language_model.layers[0].self_attn.config._attn_implementation == "sdpa"


@pytest.mark.skipif(not varlen_available(), reason=f"torch {torch.__version__}: no varlen")
def test_varlen_adapter_fits_this_torchs_kernel_signature() -> None:
    """The adapter's call goes through this torch's varlen op on meta tensors (its fake kernel).

    No kernel runs, so this checks on CPU what the GPU path would pass (the keywords for
    causal/non-causal, scale, GQA by repeat or ``enable_gqa``) against the installed torch:
    the GPU image's torch (2.11) takes ``window_size`` and ``scale`` but no ``enable_gqa``.
    """
    run = _varlen_kernel()
    assert run is not None
    cu = torch.tensor([0, 4, 10], dtype=torch.int32).to("meta")
    # The decoder (16 query heads over 2 key/value heads, d 128, causal); the vision tower.
    for heads_kv, dim, causal in ((2, 128, True), (16, 80, False)):
        q = torch.empty(10, 16, dim, device="meta", dtype=torch.bfloat16)
        kv = torch.empty(10, heads_kv, dim, device="meta", dtype=torch.bfloat16)
        for scale in (None, dim**-0.5):
            out = run(q, kv, kv, cu, 6, scale, causal)
            assert out.shape == (10, 16, dim) and out.dtype == torch.bfloat16


def test_cpu_dispatch_is_the_grouped_reference_bit_for_bit() -> None:
    """Off CUDA the varlen kernel is never picked: today's grouped SDPA, exactly."""
    gen = torch.Generator().manual_seed(1)
    lengths = [64, 64, 32, 64, 16, 240]  # windows, then a full-attention block
    heads, dim, total = 4, 16, sum(lengths)
    cu = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int32)
    for dtype in (torch.float32, torch.bfloat16):  # bf16 too: only CUDA half takes varlen
        q, k, v = (torch.randn(1, heads, total, dim, generator=gen).to(dtype) for _ in range(3))
        flat = [t[0].transpose(0, 1) for t in (q, k, v)]  # (N, heads, d)
        assert _varlen_attention(*flat, cu, max(lengths), 0.25, causal=False) is None
        got, _ = windowed_sdpa(None, q, k, v, scaling=0.25, cu_seq_lens_q=cu, max_length_q=240)
        ref, _ = grouped_windowed_sdpa(None, q, k, v, scaling=0.25, cu_seq_lens_q=cu)
        today = sdpa_by_length(*flat, cu.tolist(), 0.25, causal=False).unsqueeze(0)
        assert torch.equal(got, ref) and torch.equal(got, today)


def test_vision_varlen_switch_keeps_cpu_images_bit_identical(tiny_embedder) -> None:
    model = tiny_embedder._model
    attn = model.model.visual.blocks[0].attn
    kwargs = dict(task="retrieval", max_pixels=60_000)
    try:
        set_vision_varlen(model, False)
        assert attn.config._attn_implementation == VISION_GROUPED_ATTENTION
        grouped = tiny_embedder.encode_image(_pages(), **kwargs)
    finally:
        set_vision_varlen(model, True)
    assert attn.config._attn_implementation == VISION_ATTENTION
    auto = tiny_embedder.encode_image(_pages(), **kwargs)
    assert np.array_equal(auto.dense, grouped.dense)
    for a, b in zip(auto.multivectors, grouped.multivectors, strict=True):
        assert np.array_equal(a, b)
    attn.config._attn_implementation = "eager"  # a tower built with another attention
    try:
        with pytest.raises(ValueError, match="'eager', not the project's windowed attention"):
            set_vision_varlen(model, True)
    finally:
        attn.config._attn_implementation = VISION_ATTENTION


def _pages() -> list[Image.Image]:
    rng = np.random.default_rng(5)
    sizes = [(140, 140), (300, 196), (84, 420)]  # several windows, edge windows partial
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def _min_cosines(a, b) -> tuple[float, float]:
    """Lowest dense and per-token multi-vector cosine of two normalised outputs."""
    assert a.dense.shape == b.dense.shape
    dense = float((a.dense.astype(np.float32) * b.dense.astype(np.float32)).sum(axis=1).min())
    tokens = min(
        float((x.astype(np.float32) * y.astype(np.float32)).sum(axis=1).min())
        for x, y in zip(a.multivectors, b.multivectors, strict=True)
    )
    return dense, tokens


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch varlen kernel)")
def test_gpu_vision_varlen_matches_grouped_at_real_head_shapes() -> None:
    """16 heads, head_dim 80, windows of 64 patches and per-image full blocks, in bf16."""
    assert varlen_available(), f"torch {torch.__version__} lacks torch.nn.attention.varlen"
    # Three images (h x w patches); windows of 8 x 8 patches, partial at the right/bottom.
    images = [(36, 50), (20, 28), (8, 8)]
    windows = [
        min(8, h - i) * min(8, w - j)
        for h, w in images
        for i in range(0, h, 8)
        for j in range(0, w, 8)
    ]
    full = [h * w for h, w in images]
    total = sum(full)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for lengths in (windows, full):
        cu = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int32)
        q, k, v = (
            torch.randn(1, 16, total, 80, generator=gen, device="cuda", dtype=torch.bfloat16)
            for _ in range(3)
        )
        args = dict(scaling=80**-0.5, cu_seq_lens_q=cu.cuda(), max_length_q=max(lengths))
        got, _ = windowed_sdpa(None, q, k, v, **args)
        flat = [t[0].transpose(0, 1) for t in (q, k, v)]  # (N, heads, d)
        kernel = _varlen_attention(
            *flat, args["cu_seq_lens_q"], max(lengths), 80**-0.5, causal=False
        )
        assert kernel is not None and torch.equal(got[0], kernel)  # the varlen kernel served
        ref, _ = grouped_windowed_sdpa(None, q.float(), k.float(), v.float(), **args)
        cos = F.cosine_similarity(got.float().flatten(2), ref.flatten(2), dim=-1)
        assert float(cos.min()) >= 0.999, (len(lengths), float(cos.min()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch varlen kernel)")
def test_gpu_image_embeddings_varlen_match_grouped_in_bf16() -> None:
    from embedder.testing import random_embedder

    assert varlen_available(), f"torch {torch.__version__} lacks torch.nn.attention.varlen"
    emb = random_embedder("tiny", device="cuda", dtype="bfloat16", seed=1)
    kwargs = dict(task="retrieval", max_pixels=200_000)
    varlen = emb.encode_image(_pages(), **kwargs)
    set_vision_varlen(emb._model, False)
    grouped = emb.encode_image(_pages(), **kwargs)
    assert np.array_equal(varlen.token_counts, grouped.token_counts)
    dense, tokens = _min_cosines(varlen, grouped)
    assert dense >= 0.999 and tokens >= 0.999, (dense, tokens)

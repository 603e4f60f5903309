"""The batched window attention equals one SDPA call per window, and the vision tower uses it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from embedder.attention import VISION_ATTENTION, windowed_sdpa


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

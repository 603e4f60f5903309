"""Batched window attention for the vision tower (one SDPA call per window length).

With ``sdpa``, transformers' Qwen2.5-VL vision attention loops in Python over every
attention window of every image: 28 windowed blocks x ~46 windows x 64 pages is ~80k
tiny SDPA calls per batch, which dominates image throughput on a GPU. For
flash-attention backends it instead passes the packed sequence plus ``cu_seqlens``
(the window boundaries) in one call. This function takes that call and runs all windows
of equal length as one batched ``scaled_dot_product_attention``: the same math, per
window, with a handful of kernel launches.

transformers picks the packed call for any implementation whose name contains "flash"
(``is_flash_attention_requested``), hence the name. When called without ``cu_seqlens``
(per window, as for any other backend) it is plain SDPA, so it stays correct either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

VISION_ATTENTION = "flash_jina_windowed_sdpa"


def windowed_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """Non-causal attention over packed windows; returns (1, N, heads, head_dim)."""
    if cu_seq_lens_q is None:  # one window at a time: plain SDPA
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, scale=scaling
        )
        return out.transpose(1, 2).contiguous(), None  # (B, N, heads, d)
    _, heads, total, dim = query.shape  # (1, heads, N, d)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (N, heads, d)
    out = torch.empty_like(q)  # (N, heads, d)
    bounds = cu_seq_lens_q.tolist()
    starts, lengths = bounds[:-1], [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    by_length: dict[int, list[int]] = {}
    for start, length in zip(starts, lengths, strict=True):
        if length > 0:
            by_length.setdefault(length, []).append(start)
    for length, group in by_length.items():
        first = torch.tensor(group, device=q.device)  # (n,)
        rows = (first[:, None] + torch.arange(length, device=q.device)).reshape(-1)  # (n * L,)
        shape = (len(group), length, heads, dim)

        def gather(
            t: torch.Tensor, rows: torch.Tensor = rows, shape: tuple = shape
        ) -> torch.Tensor:
            return t.index_select(0, rows).view(shape).transpose(1, 2)  # (n, heads, L, d)

        res = F.scaled_dot_product_attention(gather(q), gather(k), gather(v), scale=scaling)
        out.index_copy_(0, rows, res.transpose(1, 2).reshape(-1, heads, dim))  # (n * L, heads, d)
    if sum(lengths) != total:
        raise ValueError(f"window boundaries cover {sum(lengths)} of {total} positions")
    return out.unsqueeze(0), None  # (1, N, heads, d)


def register() -> None:
    """Make the function known to transformers (idempotent; called when a model is built)."""
    from transformers import AttentionInterface

    AttentionInterface.register(VISION_ATTENTION, windowed_sdpa)

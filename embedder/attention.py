"""Attention over packed sequences: the vision tower's windows and the decoder's packed rows.

Vision: with ``sdpa``, transformers' Qwen2.5-VL vision attention loops in Python over
every attention window of every image: 28 windowed blocks x ~46 windows x 64 pages is
~80k tiny SDPA calls per batch, which dominates image throughput on a GPU. For
flash-attention backends it instead passes the packed sequence plus ``cu_seqlens``
(the window boundaries, or the image boundaries in the full-attention blocks) in one call.
:func:`windowed_sdpa` takes that call: on CUDA in bf16/fp16 it is one non-causal call of
torch's varlen kernel per block; elsewhere (and always for :data:`VISION_GROUPED_ATTENTION`,
the reference) it runs all windows of equal length as one batched
``scaled_dot_product_attention``: the same math, per window, with a handful of kernel
launches. The ``cu_seqlens`` already follow the window-permuted token order (each image's
tokens stay contiguous under the permutation), so neither path permutes. transformers
picks the packed call for any implementation whose name contains "flash"
(``is_flash_attention_requested``), hence the names. When called without ``cu_seqlens``
(per window, as for any other backend) it is plain SDPA, so it stays correct either way.

Decoder: :func:`packed_causal_attention` serves packed text rows (see
:mod:`.packing`): the sequences of a batch lie end to end in one row and
``cu_seq_lens_q`` marks where each starts. Attention is causal within a sequence and
never crosses into another. On CUDA in bf16/fp16 it is torch's variable-length flash
kernel (``torch.nn.attention.varlen``); elsewhere (the CPU reference and tests) causal
SDPA per sequence, grouped by length. Its name has no "flash" in it, so transformers
builds the decoder's usual masks; called without ``cu_seq_lens_q`` (a padded batch) it
is exactly transformers' own sdpa function with the same mask.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from functools import cache, partial

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

VISION_ATTENTION = "flash_jina_windowed_sdpa"  # varlen kernel on CUDA half, else grouped SDPA
VISION_GROUPED_ATTENTION = "flash_jina_windowed_sdpa_grouped"  # grouped SDPA everywhere
DECODER_ATTENTION = "jina_packed_causal_sdpa"
_VARLEN_DTYPES = (torch.bfloat16, torch.float16)


def windowed_sdpa(
    module: torch.nn.Module | None,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    *,
    varlen: bool = True,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """Non-causal attention over packed windows; returns (1, N, heads, head_dim).

    torch's varlen kernel where it serves (CUDA, bf16/fp16) unless ``varlen=False``
    (:func:`grouped_windowed_sdpa`), else SDPA batched per window length.
    """
    if cu_seq_lens_q is None:  # one window at a time: plain SDPA
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, scale=scaling
        )
        return out.transpose(1, 2).contiguous(), None  # (B, N, heads, d)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (N, heads, d)
    max_len = kwargs.get("max_length_q")
    res = (
        _varlen_attention(q, k, v, cu_seq_lens_q, max_len, scaling, causal=False)
        if varlen
        else None
    )
    if res is None:
        res = sdpa_by_length(q, k, v, cu_seq_lens_q.tolist(), scaling, causal=False)
    return res.unsqueeze(0), None  # (1, N, heads, d)


# The CPU path everywhere: the reference for the varlen kernel (VISION_GROUPED_ATTENTION).
grouped_windowed_sdpa = partial(windowed_sdpa, varlen=False)


def sdpa_by_length(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bounds: list[int],
    scale: float | None,
    *,
    causal: bool,
) -> torch.Tensor:
    """SDPA within each segment ``bounds[i]:bounds[i+1]`` of a packed row, batched by length.

    Non-causal segments are grouped by exact length. Causal ones are grouped by a length
    bucket (:func:`_bucket`) and right-padded to it: under a causal mask a real position
    never sees the padding after it, so this is exact, and short texts of many lengths
    take a few SDPA calls instead of one per length.

    Args:
        q: (N, heads_q, d); k, v: (N, heads_kv, d) with heads_q a multiple of heads_kv.
        bounds: Segment starts and the end, ``[0, ..., N]``.

    Returns:
        (N, heads_q, d).
    """
    total, heads, dim = q.shape
    gqa = k.shape[1] != heads
    out = torch.empty_like(q)  # (N, heads_q, d)
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if sum(lengths) != total:
        raise ValueError(f"segment boundaries cover {sum(lengths)} of {total} positions")
    groups: dict[int, list[tuple[int, int]]] = {}
    for start, length in zip(bounds[:-1], lengths, strict=True):
        if length > 0:
            groups.setdefault(_bucket(length) if causal else length, []).append((start, length))
    for width, group in groups.items():
        starts = torch.tensor([a for a, _ in group], device=q.device)  # (n,)
        ends = torch.tensor([a + n for a, n in group], device=q.device)  # (n,)
        idx = starts[:, None] + torch.arange(width, device=q.device)  # (n, W)
        real = idx < ends[:, None]  # (n, W), False on the right padding
        idx = idx.clamp(max=total - 1)  # padding reads any row: only padding sees it

        def gather(t: torch.Tensor, idx: torch.Tensor = idx) -> torch.Tensor:
            return t[idx].transpose(1, 2)  # (n, heads, W, d)

        res = F.scaled_dot_product_attention(
            gather(q), gather(k), gather(v), scale=scale, is_causal=causal, enable_gqa=gqa
        )  # (n, heads_q, W, d)
        out.index_copy_(0, idx[real], res.transpose(1, 2)[real])  # real rows only
    return out


def _bucket(length: int) -> int:
    """``length`` rounded up: to 16 up to 128, then to 1/8 of its power of two (<= 12.5 %)."""
    step = max(16, 1 << max(0, length.bit_length() - 4))
    return -(-length // step) * step


def packed_causal_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """Causal attention within each packed sequence; returns (1, N, heads, head_dim).

    ``query`` is (1, heads_q, N, d), ``key`` / ``value`` (1, heads_kv, N, d), as the decoder
    layer hands them over. Without ``cu_seq_lens_q`` in ``kwargs`` it is transformers'
    sdpa function, called with exactly the arguments it was given.
    """
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, **kwargs)
    if not isinstance(cu_seqlens, torch.Tensor) or query.shape[0] != 1:
        raise ValueError("packed attention needs one row and cu_seq_lens_q as a tensor")
    scaling = kwargs.get("scaling")
    scale = float(scaling) if isinstance(scaling, (int, float)) else None
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (N, heads, d)
    out = _varlen_attention(q, k, v, cu_seqlens, kwargs.get("max_length_q"), scale, causal=True)
    if out is None:
        bounds = cu_seqlens.tolist()  # a device sync per layer off CUDA's fast path
        out = sdpa_by_length(q, k, v, bounds, scale, causal=True)
    return out.unsqueeze(0), None  # (1, N, heads_q, d)


def _varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_len: object,
    scale: float | None,
    *,
    causal: bool,
) -> torch.Tensor | None:
    """torch's varlen kernel on (N, heads, d) rows: (N, heads_q, d), or None where it can't run.

    It runs on CUDA in bf16/fp16 when this torch has it; None elsewhere (the caller's SDPA
    reference), with a warning once when CUDA half precision lacks the kernel.
    """
    if not (q.is_cuda and q.dtype in _VARLEN_DTYPES):
        return None
    varlen = _varlen_kernel()
    if varlen is None:
        _warn_no_varlen()
        return None
    if isinstance(max_len, torch.Tensor) or max_len is None:  # older transformers: a 0-d tensor
        longest = max_len if max_len is not None else (cu_seqlens[1:] - cu_seqlens[:-1]).max()
        max_len = int(longest)  # a device sync; transformers 5.2x passes an int
    if not isinstance(max_len, int):
        raise ValueError(f"varlen attention needs max_length_q as an int, got {max_len!r}")
    # The flash kernel reads rows at one stride: no-ops when the layer's layout is (N, h, d).
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    return varlen(q, k, v, cu_seqlens, max_len, scale, causal)  # (N, heads_q, d)


@cache
def _warn_no_varlen() -> None:
    logger.warning(
        "torch %s has no torch.nn.attention.varlen kernel: attention over packed "
        "sequences / vision windows runs as SDPA per segment length (slower)",
        torch.__version__,
    )


VarlenFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, "float | None", bool],
    torch.Tensor,
]


@cache
def _varlen_kernel() -> VarlenFn | None:
    """torch's varlen flash attention, adapted to the installed signature; None if absent.

    torch 2.10 takes ``is_causal``; later versions take ``window_size=(-1, 0)`` for causal
    (``(-1, -1)``: no window, non-causal), and ``enable_gqa`` (from 2.12) for fewer
    key/value heads than query heads. Without ``enable_gqa`` the key/value heads are
    repeated (the kernel then sees plain MHA). The last argument of the returned function
    is ``causal``.
    """
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    masks: dict[bool, dict[str, object]]  # causal -> the keyword arguments saying so
    if "window_size" in params:
        masks = {True: {"window_size": (-1, 0)}, False: {"window_size": (-1, -1)}}
    elif "is_causal" in params:
        masks = {True: {"is_causal": True}, False: {"is_causal": False}}
    else:
        logger.warning("torch.nn.attention.varlen.varlen_attn has no causal option: not used")
        return None
    native_gqa = "enable_gqa" in params
    has_scale = "scale" in params

    def run(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cu: torch.Tensor,
        max_len: int,
        scale: float | None,
        causal: bool,
    ) -> torch.Tensor:
        extra = dict(masks[causal])
        if k.shape[1] != q.shape[1]:
            if native_gqa:
                extra["enable_gqa"] = True
            else:
                groups = q.shape[1] // k.shape[1]
                k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        if has_scale:
            extra["scale"] = scale
        elif scale is not None and abs(scale - q.shape[-1] ** -0.5) > 1e-12:
            raise ValueError(f"this torch's varlen_attn cannot take scale={scale}")
        out = varlen_attn(q, k, v, cu, cu, max_len, max_len, **extra)  # type: ignore[arg-type]
        return out if isinstance(out, torch.Tensor) else out[0]  # (N, heads_q, d)

    return run


def varlen_available() -> bool:
    """Whether this torch has the variable-length flash kernel the CUDA packed paths use."""
    return _varlen_kernel() is not None


def register() -> None:
    """Make the functions known to transformers (idempotent; called when a model is built).

    The decoder function gets sdpa's mask builder, so a padded batch sees the same mask.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(VISION_ATTENTION, windowed_sdpa)
    AttentionInterface.register(VISION_GROUPED_ATTENTION, grouped_windowed_sdpa)
    AttentionInterface.register(DECODER_ATTENTION, packed_causal_attention)
    AttentionMaskInterface.register(DECODER_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])

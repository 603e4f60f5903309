"""Packed batches: a batch's sequences end to end in one row, no compute spent on padding.

A right-padded batch of B sequences costs B x longest tokens in every projection and MLP
of the decoder; length-sorted batches waste little, but passages of mixed lengths still
spend ~20-40% on padding (issue 13). Packed, the batch is one row of N = sum(lengths)
tokens: each sequence keeps its own positions (restarting at 0; for images the same
3-D M-RoPE positions the padded path computes), attention stays inside each sequence
(``cu_seqlens`` boundaries, see :func:`embedder.attention.packed_causal_attention`),
and the dense mean pool and the multi-vector projector run per sequence. The outputs
have the padded path's shapes, so everything downstream is unchanged.

The padded path stays the default off CUDA and the reference the tests compare with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from transformers import Qwen2_5_VLConfig

from . import attention
from .errors import OptionError
from .model import EmbedderOutput, JinaV4Model, ModelInputs, mrope_position_ids
from .options import Packing

logger = logging.getLogger(__name__)


@dataclass
class PackedInputs:
    """One batch packed into a single row (N real tokens of B sequences)."""

    input_ids: torch.Tensor  # (1, N) int64
    position_ids: torch.Tensor  # (3, 1, N) int64, restarting per sequence
    cu_seqlens: torch.Tensor  # (B + 1,) int32, sequence boundaries in the row
    segment: torch.Tensor  # (N,) int64, which sequence each token belongs to
    pool_mask: torch.Tensor  # (N,) bool, tokens averaged into the dense vector
    pool_counts: torch.Tensor  # (B,) float32, pooled tokens per sequence (at least 1)
    scatter_index: torch.Tensor  # (N,) int64, each token's place in the padded (B * L) grid
    attention_mask: torch.Tensor  # (B, L) bool, the padded layout the outputs come back in
    max_length: int  # longest sequence (the varlen kernel's max_q / max_k)
    pixel_values: torch.Tensor | None = None  # (sum patches, C*T*P*P) float32
    image_grid_thw: torch.Tensor | None = None  # (n_images, 3) int64

    def to(self, device: torch.device) -> PackedInputs:
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=True)
            if isinstance(getattr(self, f.name), torch.Tensor)
            else getattr(self, f.name)
            for f in fields(self)
        }
        return PackedInputs(**moved)


def pack(batch: ModelInputs, config: Qwen2_5_VLConfig) -> PackedInputs:
    """Turn a right-padded batch (on the CPU) into one packed row.

    Positions are the padded path's own, gathered at the real tokens, so both paths see
    exactly the same rotary positions.
    """
    mask = batch.attention_mask.bool()  # (B, L)
    bsz, width = mask.shape
    lengths = mask.sum(dim=1)  # (B,)
    if batch.pixel_values is None:
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)[mask]  # (N,) arange per sequence
        position_ids = pos.expand(3, -1)  # (3, N), M-RoPE: t = h = w for text
    else:
        if batch.image_grid_thw is None:
            raise ValueError("pixel_values given without image_grid_thw")
        full = mrope_position_ids(batch.input_ids, mask.long(), batch.image_grid_thw, config)
        position_ids = full[:, mask]  # (3, N)
    cu = torch.zeros(bsz + 1, dtype=torch.int32)
    cu[1:] = lengths.cumsum(0)
    rows = torch.arange(bsz).unsqueeze(1).expand(bsz, width)  # (B, L)
    cols = torch.arange(width).unsqueeze(0).expand(bsz, width)  # (B, L)
    pool = batch.pool_mask[mask]  # (N,)
    segment = rows[mask]  # (N,)
    counts = batch.pool_mask.sum(dim=1).float().clamp(min=1.0)  # (B,)
    return PackedInputs(
        input_ids=batch.input_ids[mask].unsqueeze(0),  # (1, N)
        position_ids=position_ids.unsqueeze(1).contiguous(),  # (3, 1, N)
        cu_seqlens=cu,
        segment=segment,
        pool_mask=pool,
        pool_counts=counts,
        scatter_index=(rows * width + cols)[mask],  # (N,)
        attention_mask=mask,
        max_length=int(lengths.max()),
        pixel_values=batch.pixel_values,
        image_grid_thw=batch.image_grid_thw,
    )


@torch.inference_mode()
def forward_packed(
    model: JinaV4Model, batch: PackedInputs, *, multivector: bool = True
) -> EmbedderOutput:
    """:meth:`JinaV4Model.forward` for a packed row; the same outputs, in the padded layout.

    The model's decoder must use :data:`embedder.attention.DECODER_ATTENTION`
    (:func:`enable_packing`); any other attention would let sequences see each other.
    """
    lm = model.model.language_model
    if lm.config._attn_implementation != attention.DECODER_ATTENTION:
        raise RuntimeError("forward_packed on a model whose decoder was not set up for packing")
    ids = batch.input_ids  # (1, N)
    embeds = lm.embed_tokens(ids)  # (1, N, H)
    if batch.pixel_values is not None:
        if batch.image_grid_thw is None:
            raise ValueError("pixel_values given without image_grid_thw")
        embeds = model.merge_images(embeds, ids, batch.pixel_values, batch.image_grid_thw)
    if model.compiled_decoder is not None:  # opt-in, see embedder.compiled
        return _packed_heads(
            model,
            model.compiled_decoder.run_packed(
                embeds, batch.position_ids, batch.segment, batch.cu_seqlens, batch.max_length
            ),  # (N, H)
            batch,
            multivector,
        )
    hidden = lm(
        inputs_embeds=embeds,
        # A ready mask per layer type skips transformers' mask building (an N x N mask).
        attention_mask=dict.fromkeys(lm.config.layer_types),
        position_ids=batch.position_ids,
        use_cache=False,
        cu_seq_lens_q=batch.cu_seqlens,
        cu_seq_lens_k=batch.cu_seqlens,
        max_length_q=batch.max_length,
        max_length_k=batch.max_length,
    ).last_hidden_state[0]  # (N, H), after the final RMSNorm
    return _packed_heads(model, hidden, batch, multivector)


def _packed_heads(
    model: JinaV4Model, hidden: torch.Tensor, batch: PackedInputs, multivector: bool
) -> EmbedderOutput:
    bsz, width = batch.attention_mask.shape
    pooled = hidden.float() * batch.pool_mask.unsqueeze(-1)  # (N, H) float32, unpooled zeroed
    summed = pooled.new_zeros(bsz, hidden.shape[-1])  # (B, H)
    if summed.is_cuda:  # atomic adds
        summed.index_add_(0, batch.segment, pooled)
    else:  # CPU index_add_ takes ~8x longer than a sorted accumulate here
        summed.index_put_((batch.segment,), pooled, accumulate=True)
    dense = F.normalize(summed / batch.pool_counts.unsqueeze(-1), dim=-1)  # (B, H)
    multi = None
    if multivector:
        proj = model.multi_vector_projector(hidden)  # (N, P), model dtype
        rows = F.normalize(proj.float(), dim=-1)  # (N, P) float32
        multi = rows.new_zeros(bsz * width, rows.shape[-1])  # (B * L, P)
        multi = multi.index_copy_(0, batch.scatter_index, rows).view(bsz, width, -1)  # (B, L, P)
    return EmbedderOutput(dense=dense, multi=multi, mask=batch.attention_mask)


def resolve_packing(
    requested: Packing, device: torch.device, dtype: torch.dtype, attn_implementation: str
) -> bool:
    """Whether batches are packed: ``auto`` packs on CUDA where the varlen kernel serves.

    Raises:
        OptionError: ``packed`` with an attention implementation other than ``sdpa``.
    """
    if requested is Packing.PADDED:
        return False
    if attn_implementation == attention.DECODER_ATTENTION:  # already set up on this model
        attn_implementation = "sdpa"
    if attn_implementation != "sdpa":
        if requested is Packing.PACKED:
            raise OptionError(
                f"packing='packed' needs attn_implementation='sdpa', got "
                f"{attn_implementation!r}: packed rows use the project's variable-length "
                "attention in place of sdpa; use packing='padded' with this implementation"
            )
        logger.info("packing: padded (attention %s)", attn_implementation)
        return False
    fast = device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
    if fast and not attention.varlen_available():
        message = "torch %s has no torch.nn.attention.varlen kernel"
        if requested is Packing.AUTO:
            logger.warning("packing: padded, " + message, torch.__version__)
            return False
        logger.warning(
            "packing: packed with per-sequence SDPA (slow), " + message, torch.__version__
        )
    elif requested is Packing.AUTO and not fast:
        logger.info("packing: padded (%s, %s)", device.type, dtype)
        return False
    elif requested is Packing.PACKED and not fast:
        logger.info("packing: packed with per-sequence SDPA on %s (%s)", device.type, dtype)
    else:
        logger.info("packing: packed rows, varlen attention")
    return True


def enable_packing(model: JinaV4Model) -> None:
    """Route the decoder's attention through the packed-capable function (idempotent).

    Padded batches keep working on the model: without sequence boundaries the function
    is transformers' sdpa with sdpa's mask.
    """
    attention.register()
    lm = model.model.language_model
    configs = {id(m.config): m.config for m in lm.modules() if hasattr(m, "config")}
    for cfg in configs.values():
        cfg._attn_implementation = attention.DECODER_ATTENTION

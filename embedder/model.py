"""The forward pass: Qwen2.5-VL backbone -> final norm -> dense mean pool + multi-vector head.

The backbone is transformers' own ``Qwen2_5_VLModel`` used by composition: no LM head
(the embedding needs no logits) and no list of per-layer hidden states. One forward
gives both outputs, since both read the last decoder layer after the final RMSNorm.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel

from . import attention
from .config import ModelSpec
from .errors import EmbedderError

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

    from .compiled import CompiledDecoder

logger = logging.getLogger(__name__)

# The LoRA-adapted Linears of every decoder layer, as the adapter file names them.
LORA_LAYER_MODULES = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
PROJECTOR = "multi_vector_projector"


@dataclass
class ModelInputs:
    """One padded batch, ready for :meth:`JinaV4Model.forward` (right padding)."""

    input_ids: torch.Tensor  # (B, L) int64
    attention_mask: torch.Tensor  # (B, L) int64, 1 = real token
    pool_mask: torch.Tensor  # (B, L) bool, tokens averaged into the dense vector
    pixel_values: torch.Tensor | None = None  # (sum patches, C*T*P*P) float32
    image_grid_thw: torch.Tensor | None = None  # (n_images, 3) int64

    def to(self, device: torch.device) -> ModelInputs:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        return ModelInputs(
            input_ids=move(self.input_ids),
            attention_mask=move(self.attention_mask),
            pool_mask=move(self.pool_mask),
            pixel_values=None if self.pixel_values is None else move(self.pixel_values),
            image_grid_thw=None if self.image_grid_thw is None else move(self.image_grid_thw),
        )


@dataclass
class EmbedderOutput:
    """What one forward returns (torch, on the model's device)."""

    dense: torch.Tensor  # (B, H) float32, L2-normalised, full hidden size
    multi: torch.Tensor | None  # (B, L, P) float32, per-token L2-normalised; None if skipped
    mask: torch.Tensor  # (B, L) bool, the tokens that belong in ``multi``


class JinaV4Model(nn.Module):
    """Qwen2.5-VL backbone plus the multi-vector projector; LoRA is merged by :mod:`.lora`.

    Submodule names mirror the reference model (``model.language_model.layers...``,
    ``multi_vector_projector``) so that adapter keys map onto them one to one.
    """

    def __init__(self, config: Qwen2_5_VLConfig, spec: ModelSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        self.model = Qwen2_5_VLModel(config)
        self.multi_vector_projector = nn.Linear(spec.hidden_size, spec.multi_vector_dim, bias=True)
        #: (embeds, attention mask, positions) -> last hidden state; set by
        #: ``JinaV4Embedder.enable_compile`` (a plain object, not a submodule).
        self.compiled_decoder: CompiledDecoder | None = None

    def lora_targets(self) -> dict[str, nn.Linear]:
        """Adapted module name (reference naming) -> Linear, for every layer and the projector."""
        targets: dict[str, nn.Linear] = {}
        for i, _ in enumerate(self.model.language_model.layers):
            for sub in LORA_LAYER_MODULES:
                name = f"model.language_model.layers.{i}.{sub}"
                targets[name] = cast(nn.Linear, self.get_submodule(name))
        targets[PROJECTOR] = self.multi_vector_projector
        return targets

    @torch.inference_mode()
    def forward(self, batch: ModelInputs, *, multivector: bool = True) -> EmbedderOutput:
        lm = self.model.language_model
        ids, attn = batch.input_ids, batch.attention_mask
        embeds = lm.embed_tokens(ids)  # (B, L, H)
        if batch.pixel_values is None:
            # Positions follow the mask, so any padding side gives the same result.
            pos = (attn.long().cumsum(-1) - 1).clamp(min=0)  # (B, L)
            position_ids = pos.unsqueeze(0).expand(3, -1, -1)  # (3, B, L), M-RoPE: t = h = w
        else:
            grid = batch.image_grid_thw
            if grid is None:
                raise EmbedderError("pixel_values given without image_grid_thw")
            embeds = self.merge_images(embeds, ids, batch.pixel_values, grid)  # (B, L, H)
            position_ids = mrope_position_ids(ids, attn, grid, self.config)  # (3, B, L)
        hidden = self._decode(embeds, attn, position_ids)  # (B, L, H), after the final RMSNorm
        return self._heads(hidden, batch, multivector)

    def _decode(
        self, embeds: torch.Tensor, attn: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        if self.compiled_decoder is not None:  # opt-in, see embedder.compiled
            return self.compiled_decoder(embeds, attn, position_ids)  # (B, L, H)
        lm = self.model.language_model
        return lm(
            inputs_embeds=embeds, attention_mask=attn, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # (B, L, H)

    def _heads(self, hidden: torch.Tensor, batch: ModelInputs, multivector: bool) -> EmbedderOutput:
        pool = batch.pool_mask.to(torch.float32).unsqueeze(-1)  # (B, L, 1)
        summed = (hidden.float() * pool).sum(dim=1)  # (B, H) float32
        dense = F.normalize(summed / pool.sum(dim=1).clamp(min=1.0), dim=-1)  # (B, H)
        multi = None
        if multivector:
            proj = self.multi_vector_projector(hidden)  # (B, L, P), model dtype
            multi = F.normalize(proj.float(), dim=-1)  # (B, L, P) float32
        return EmbedderOutput(dense=dense, multi=multi, mask=batch.attention_mask.bool())

    def merge_images(
        self,
        embeds: torch.Tensor,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        grid_thw: torch.Tensor,
    ) -> torch.Tensor:
        """Token embeddings (..., L, H) with the vision tower's features at the image tokens."""
        image_embeds = self._image_features(pixel_values, grid_thw)
        image_mask = (input_ids == self.config.image_token_id).unsqueeze(-1)  # (..., L, 1)
        if int(image_mask.sum()) != image_embeds.shape[0]:
            raise EmbedderError(
                f"{int(image_mask.sum())} image tokens in the batch but the vision tower "
                f"gave {image_embeds.shape[0]} features"
            )
        return embeds.masked_scatter(image_mask, image_embeds.to(embeds.dtype))  # (..., L, H)

    def _image_features(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        visual = self.model.visual
        out = visual(pixel_values.to(visual.dtype), grid_thw=grid_thw)
        # transformers 5.x returns an output object whose pooler_output holds the merged
        # (LLM-side) features; older versions returned that tensor directly.
        feats = out if isinstance(out, torch.Tensor) else out.pooler_output
        return feats  # (sum(t*h*w) / merge^2, H)


def mrope_position_ids(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    grid_thw: torch.Tensor,
    config: Qwen2_5_VLConfig,
) -> torch.Tensor:
    """Qwen2.5-VL 3D rotary positions for sequences holding at most one image each.

    Text tokens advance all three axes together; an image's tokens get (t, row, col) grid
    coordinates offset by the position where the image starts, and the text after it
    resumes at ``start + max(rows, cols)``. Padding gets 0 (it is masked anyway).

    Returns:
        (3, B, L) int64 position ids.
    """
    merge = config.vision_config.spatial_merge_size
    bsz, seq = input_ids.shape
    out = torch.zeros(3, bsz, seq, dtype=torch.long, device=input_ids.device)  # (3, B, L)
    grids = grid_thw.tolist()
    ids_cpu = input_ids.tolist()
    lengths = attention_mask.sum(-1).tolist()
    next_image = 0
    for b in range(bsz):
        row = ids_cpu[b][: lengths[b]]
        try:
            start = row.index(config.image_token_id)
        except ValueError:
            pos = torch.arange(lengths[b], device=input_ids.device)
            out[:, b, : lengths[b]] = pos
            continue
        t, h, w = grids[next_image]
        next_image += 1
        gh, gw = h // merge, w // merge
        n_img = t * gh * gw
        tt, hh, ww = torch.meshgrid(
            torch.arange(t), torch.arange(gh), torch.arange(gw), indexing="ij"
        )
        img = torch.stack([tt, hh, ww]).reshape(3, -1) + start  # (3, n_img)
        after = torch.arange(lengths[b] - start - n_img) + start + max(gh, gw)  # (n_after,)
        pos = torch.cat(
            [torch.arange(start).expand(3, -1), img, after.expand(3, -1)], dim=1
        )  # (3, length)
        out[:, b, : lengths[b]] = pos.to(input_ids.device)
    return out


def build_model(
    config: Qwen2_5_VLConfig, spec: ModelSpec, device: torch.device, dtype: torch.dtype
) -> JinaV4Model:
    """Build the model with uninitialised parameters on ``device`` (fast, no random init).

    Parameters are created on the meta device and then allocated empty; the caller must
    fill every one (load a checkpoint, or random weights for a benchmark). Non-persistent
    buffers (rotary inverse frequencies) are not in any checkpoint: they are copied from a
    one-layer twin built on the CPU, so their values are exactly what transformers computes.
    """
    with torch.device("meta"):
        model = JinaV4Model(config, spec)
    model.to(dtype)  # still on meta: only the dtype changes (buffers are replaced below)
    model.to_empty(device=device)
    _restore_buffers(model, config, spec, device)
    _batch_vision_windows(model)
    model.eval().requires_grad_(False)
    logger.info(
        "built Qwen2.5-VL backbone: %d layers, hidden %d, vision depth %d, attention %s / %s",
        config.text_config.num_hidden_layers,
        spec.hidden_size,
        config.vision_config.depth,
        model.model.language_model.config._attn_implementation,
        model.model.visual.config._attn_implementation,
    )
    return model


def _batch_vision_windows(model: JinaV4Model) -> None:
    """Swap the vision tower's sdpa for the same math without a Python loop over windows.

    Set after construction: transformers checks implementation names at init and would
    try to import a flash-attention kernel for this one (see :mod:`.attention`).
    """
    configs = _vision_configs(model)
    if any(c._attn_implementation != "sdpa" for c in configs):
        return  # eager / flash-attention were asked for: leave them
    attention.register()
    for cfg in configs:
        cfg._attn_implementation = attention.VISION_ATTENTION


def set_vision_varlen(model: JinaV4Model, on: bool) -> None:
    """Vision windows through torch's varlen kernel where it runs (on), or grouped SDPA (off).

    Off is the reference the GPU tests and the benchmark compare against; on CPU both are
    the same grouped SDPA. Refused for a tower built with another attention (eager, flash).
    """
    names = (attention.VISION_ATTENTION, attention.VISION_GROUPED_ATTENTION)
    configs = _vision_configs(model)
    if any(c._attn_implementation not in names for c in configs):
        raise ValueError(
            "set_vision_varlen: the vision tower uses "
            f"{configs[0]._attn_implementation!r}, not the project's windowed attention"
        )
    for cfg in configs:
        cfg._attn_implementation = names[0] if on else names[1]


def _vision_configs(model: JinaV4Model) -> list[PreTrainedConfig]:
    visual = model.model.visual
    return list({id(m.config): m.config for m in visual.modules() if hasattr(m, "config")}.values())


def _restore_buffers(
    model: JinaV4Model, config: Qwen2_5_VLConfig, spec: ModelSpec, device: torch.device
) -> None:
    twin_cfg = copy.deepcopy(config)
    twin_cfg.text_config.num_hidden_layers = 1
    twin_cfg.text_config.intermediate_size = 8
    twin_cfg.text_config.vocab_size = 8
    twin_cfg.vision_config.depth = 1
    twin_cfg.vision_config.intermediate_size = 8
    with torch.device("cpu"):
        twin = JinaV4Model(twin_cfg, spec)
    twin_buffers = dict(twin.named_buffers())
    persistent = set(model.state_dict())
    for name, buf in model.named_buffers():
        if name in persistent:
            continue
        key = re.sub(r"\.(layers|blocks)\.\d+\.", r".\1.0.", name)
        if key not in twin_buffers or twin_buffers[key].shape != buf.shape:
            raise EmbedderError(f"cannot initialise non-persistent buffer {name!r}")
        # Replace rather than copy into: transformers keeps these in float32 whatever the
        # model dtype, and so must we.
        owner, _, leaf = name.rpartition(".")
        model.get_submodule(owner)._buffers[leaf] = twin_buffers[key].to(device)

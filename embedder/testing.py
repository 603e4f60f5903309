"""Random jina-embeddings-v4 models for tests, demos and benchmarks.

:func:`make_tiny_checkpoint` writes a small random model in exactly the real repository
layout (file names, legacy tensor names, adapters with every task, tokenizer with the
Qwen special tokens), so loading it exercises the same code as the real checkpoint.
:func:`random_embedder` builds a random model in memory, at tiny or at the real shapes,
and runs it through the same forward path (for throughput benchmarks).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from .options import Task

logger = logging.getLogger(__name__)

# The Qwen2 tokenizer's pre-tokenisation pattern (transformers' Qwen2Tokenizer uses it too).
PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2.5's added tokens, in id order right after the BPE vocabulary (real: 151643...).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
)  # fmt: skip
_CORPUS = """\
Query: what is the capital of France? Passage: Paris is the capital and largest city of France.
Query: how do vector databases store embeddings? Passage: A vector database indexes dense
vectors with HNSW graphs and stores multi-vector documents for late interaction (MaxSim).
Describe the image. The chart shows quarterly revenue growing from 12.5 to 19.75 million.
def embed(texts: list[str]) -> np.ndarray:
    return model.encode_text(texts, task="retrieval", prompt_name="passage")
for (int i = 0; i < n; ++i) { sum += x[i] * y[i]; }  // dot product
SELECT id, score FROM documents WHERE lang = 'en' ORDER BY score DESC LIMIT 10;
Les modèles multilingues comprennent le français, l'allemand (Größe, Übung) et l'espagnol (año).
Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 2048 128; dates 2025-06-24; prices $3.50 and EUR 7.
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a step.
Retrieval, text matching and code search each have their own LoRA adapter in the model.
"""
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LORA_RANK = 32
_PRESETS: dict[str, dict[str, Any]] = {
    # The real backbone: Qwen2.5-VL-3B (SPEC-model.md).
    "full": dict(
        text=dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16,
                  num_key_value_heads=2, intermediate_size=11008, vocab_size=151936,
                  rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                    out_hidden_size=2048, fullatt_block_indexes=[7, 15, 23, 31]),
        matryoshka_dims=[128, 256, 512, 1024, 2048],
    ),
    # Between the two, for CPU benchmarks of the decoder (bench/compiled_decoder.py).
    "mid": dict(
        text=dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=2, intermediate_size=2048, vocab_size=None,
                  rope_scaling={"type": "mrope", "mrope_section": [8, 12, 12]}),
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                    out_hidden_size=512, fullatt_block_indexes=[1]),
        matryoshka_dims=[128, 256, 512],
    ),
    # Small enough for CPU tests; the image path keeps patch 14, temporal 2, merge 2.
    "tiny": dict(
        text=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=128, vocab_size=None,
                  rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                    out_hidden_size=64, fullatt_block_indexes=[1]),
        matryoshka_dims=[16, 32, 64],
    ),
}  # fmt: skip


def train_tokenizer(vocab_size: int = 512) -> Tokenizer:
    """A Qwen2-style byte-level BPE trained on a small built-in corpus, plus Qwen's specials."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS]
    )
    return tok


def _token_id(tok: Tokenizer, token: str) -> int:
    found = tok.token_to_id(token)
    if found is None:
        raise ValueError(f"the tiny tokenizer lacks the special token {token!r}")
    return found


def write_tokenizer(folder: Path) -> dict[str, int]:
    """Write tokenizer.json, vocab.json, merges.txt, tokenizer_config.json; return special ids."""
    tok = train_tokenizer()
    tok.save(str(folder / "tokenizer.json"))
    tok.model.save(str(folder))  # vocab.json + merges.txt, as the real repo ships them
    ids = {t: _token_id(tok, t) for t in QWEN_SPECIAL_TOKENS}
    added = {
        str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": not t.endswith("tool_call>")}
        for t in QWEN_SPECIAL_TOKENS
    }  # fmt: skip
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 32768,
        "split_special_tokens": False,
    }
    _write_json(folder / "tokenizer_config.json", config)
    return ids


def config_dict(preset: str, special_ids: dict[str, int]) -> dict[str, Any]:
    """config.json content: flat Qwen2.5-VL keys, nested vision_config, plus the jina keys."""
    p = _PRESETS[preset]
    text = dict(p["text"])
    if text["vocab_size"] is None:  # tiny: the tokenizer's size, rounded up like Qwen's
        text["vocab_size"] = 64 * math.ceil((max(special_ids.values()) + 1) / 64)
    vision = {"hidden_act": "silu", "in_chans": 3, "patch_size": 14, "spatial_merge_size": 2,
              "spatial_patch_size": 14, "temporal_patch_size": 2, "window_size": 112,
              "tokens_per_second": 2, **p["vision"]}  # fmt: skip
    return {
        "architectures": ["JinaEmbeddingsV4Model"],
        "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0,
        "bos_token_id": special_ids["<|endoftext|>"],
        "eos_token_id": special_ids["<|im_end|>"],
        "vision_start_token_id": special_ids["<|vision_start|>"],
        "vision_end_token_id": special_ids["<|vision_end|>"],
        "vision_token_id": special_ids["<|vision_pad|>"],
        "image_token_id": special_ids["<|image_pad|>"],
        "video_token_id": special_ids["<|video_pad|>"],
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "max_position_embeddings": 128000,
        "max_window_layers": 70,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        **text,
        "vision_config": vision,
        "task_names": [t.value for t in Task],
        "matryoshka_dims": p["matryoshka_dims"],
        "truncate_dim": None,
        "multi_vector_projector_dim": 128,
        "single_vector_pool_strategy": "mean",
    }


def preprocessor_dict() -> dict[str, Any]:
    return {
        "min_pixels": 3136,
        "max_pixels": 602112,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "JinaEmbeddingsV4Processor",
    }


def adapter_config_dict() -> dict[str, Any]:
    modules = "down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj"
    return {
        "peft_type": "LORA",
        "task_type": "FEATURE_EXTRACTION",
        "base_model_name_or_path": "jinaai/jina-embeddings-v4",
        "r": LORA_RANK,
        "lora_alpha": LORA_RANK,
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": False,
        "init_lora_weights": "gaussian",
        "inference_mode": True,
        "exclude_modules": ".*visual.*",
        "target_modules": f"(.*(model).*({modules}).*$|.*(multi_vector_projector).*$)",
    }


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _random_like(name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Random values of a sensible scale per tensor kind (norms near 1, small biases)."""
    if len(shape) == 1:
        is_norm = "norm" in name or "ln_q" in name
        base = torch.ones(shape) if is_norm else torch.zeros(shape)
        return base + torch.randn(shape, generator=gen) * (0.1 if is_norm else 0.02)
    if "embed_tokens" in name:
        return torch.randn(shape, generator=gen)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=gen) / math.sqrt(fan_in)


def _lora_tensors(
    targets: dict[str, tuple[int, int]], gen: torch.Generator
) -> Iterator[tuple[str, torch.Tensor]]:
    for task in Task:
        for module, (out_f, in_f) in targets.items():
            prefix = f"base_model.model.{module}"
            a = torch.randn(LORA_RANK, in_f, generator=gen) / math.sqrt(in_f)  # (r, in)
            b = torch.randn(out_f, LORA_RANK, generator=gen) * (
                0.3 / math.sqrt(LORA_RANK)
            )  # (out, r)
            yield f"{prefix}.lora_A.{task.value}.weight", a
            yield f"{prefix}.lora_B.{task.value}.weight", b


def make_tiny_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random jina-embeddings-v4 checkpoint in exactly the real layout.

    Files: config.json, preprocessor_config.json, tokenizer.json, tokenizer_config.json,
    vocab.json, merges.txt, model-00001-of-00002.safetensors, model-00002-of-00002.safetensors,
    model.safetensors.index.json (legacy tensor names, bf16) and adapters/adapter_config.json
    plus adapters/adapter_model.safetensors (non-zero LoRA for every task and the projector).

    Args:
        path: Folder to write (created if needed).
        seed: Seed for every random tensor (the tokenizer is deterministic).

    Returns:
        The folder, ready for ``JinaV4Embedder.from_pretrained``.
    """
    from .loading import legacy_key, read_config
    from .model import JinaV4Model

    folder = Path(path)
    (folder / "adapters").mkdir(parents=True, exist_ok=True)
    special_ids = write_tokenizer(folder)
    _write_json(folder / "config.json", config_dict("tiny", special_ids))
    _write_json(folder / "preprocessor_config.json", preprocessor_dict())
    _write_json(folder / "adapters" / "adapter_config.json", adapter_config_dict())
    config, spec = read_config(folder)
    with torch.device("meta"):
        skeleton = JinaV4Model(config, spec)
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        legacy_key(name): _random_like(name, tuple(t.shape), gen).to(torch.bfloat16)
        for name, t in skeleton.state_dict().items()
    }
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2 :]}  # fmt: skip
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(folder / shard), metadata={"format": "pt"})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    _write_json(folder / "model.safetensors.index.json", index)
    targets = {n: (m.out_features, m.in_features) for n, m in skeleton.lora_targets().items()}
    lora = {k: v.to(torch.bfloat16) for k, v in _lora_tensors(targets, gen)}
    save_file(
        lora, str(folder / "adapters" / "adapter_model.safetensors"), metadata={"format": "pt"}
    )
    return folder


@torch.no_grad()
def _fill_random_(model: torch.nn.Module, seed: int) -> None:
    """Random weights on the model's own device (fast on a GPU: no CPU init, no host copies).

    Drawn in float32 whatever the model's dtype, then cast: one seed is one model in every
    dtype (torch 2.11 on CPU draws other values for bfloat16 than for float32 from the same
    generator; 2.13 draws the same ones).
    """
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        draw = p if p.dtype == torch.float32 else torch.empty(p.shape, device=device)
        if p.ndim == 1:
            is_norm = "norm" in name or "ln_q" in name
            draw.normal_(0.0, 0.1 if is_norm else 0.02, generator=gen)
            if is_norm:
                draw.add_(1.0)
        elif "embed_tokens" in name:
            draw.normal_(0.0, 1.0, generator=gen)
        else:
            draw.normal_(0.0, 1.0 / math.sqrt(math.prod(p.shape[1:])), generator=gen)
        if draw is not p:
            p.copy_(draw)


def random_embedder(
    preset: str = "full",
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    packing: str = "auto",
) -> Any:
    """A JinaV4Embedder with random weights, built in memory (no checkpoint written).

    ``preset="full"`` has the exact shapes of jina-embeddings-v4 (Qwen2.5-VL-3B backbone,
    36 layers, 32-block vision tower, rank-32 LoRA for 3 tasks); ``"tiny"`` is the test
    model. Only the weights' source differs from ``from_pretrained``: the model, LoRA,
    processor and encoder are the same classes, so the forward path is the same. The
    tokenizer is the small trained one (token *counts* differ from Qwen's, shapes don't).
    """
    from .base_weights import BaseWeights
    from .config import resolve_device, resolve_dtype
    from .encoder import JinaV4Embedder
    from .loading import load_tokenizer, read_config, read_image_spec
    from .lora import LoraFactors, TaskLoRA
    from .model import build_model
    from .processing import Processor

    folder = Path(tempfile.mkdtemp(prefix="jina-v4-random-"))
    special_ids = write_tokenizer(folder)
    _write_json(folder / "config.json", config_dict(preset, special_ids))
    _write_json(folder / "preprocessor_config.json", preprocessor_dict())
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    config, spec = read_config(folder, attn_implementation)
    model = build_model(config, spec, dev, dt)
    _fill_random_(model, seed)
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    factors: dict[Task, dict[str, LoraFactors]] = {}
    for task in Task:
        factors[task] = {}
        for name, lin in model.lora_targets().items():
            # float32 draws, then the dtype (as in _fill_random_): the same factors in every dtype
            a = torch.randn(LORA_RANK, lin.in_features, generator=gen, device=dev)
            b = torch.randn(lin.out_features, LORA_RANK, generator=gen, device=dev)
            a, b = (a / math.sqrt(lin.in_features)).to(dt), (b * 0.01).to(dt)
            factors[task][name] = LoraFactors(a=a, b=b)
    # No checkpoint to re-read the base weights from on a task switch: write them out.
    base = BaseWeights.spill({n: lin.weight for n, lin in model.lora_targets().items()})
    lora = TaskLoRA(model.lora_targets(), factors, scale=1.0, base=base)
    processor = Processor(load_tokenizer(folder), read_image_spec(folder), config)
    return JinaV4Embedder(model, lora, processor, device=dev, dtype=dt, packing=packing)

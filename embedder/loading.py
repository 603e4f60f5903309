"""All disk / hub I/O: the checkpoint layout, legacy key mapping, adapters, tokenizer.

The layout is jinaai/jina-embeddings-v4's: config.json (Qwen2.5-VL plus jina keys),
preprocessor_config.json, tokenizer files, two safetensors shards with an index, using
the *legacy* Qwen2.5-VL tensor names, and ``adapters/`` holding every task's LoRA.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoTokenizer, Qwen2_5_VLConfig

from .base_weights import BaseWeights
from .config import JINA_CONFIG_KEYS, ImageSpec, ModelSpec
from .errors import CheckpointError
from .lora import LoraFactors, TaskLoRA
from .model import LORA_LAYER_MODULES, PROJECTOR, JinaV4Model, build_model
from .options import Task

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
ADAPTER_DIR = "adapters"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Checkpoint tensors the embedder deliberately does not use (logged, never silent).
IGNORED_KEYS = frozenset({"lm_head.weight"})
_HUB_PATTERNS = [
    "config.json",
    "preprocessor_config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "tokenizer*",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "adapters/adapter_config.json",
    "adapters/adapter_model.safetensors",
]
# Legacy (checkpoint) name prefix -> JinaV4Model name prefix. Current transformers
# names are accepted as they are, so re-saved checkpoints load too.
_KEY_MAP = (
    ("model.language_model.", "model.language_model."),
    ("model.visual.", "model.visual."),
    ("model.", "model.language_model."),
    ("visual.", "model.visual."),
    (f"{PROJECTOR}.", f"{PROJECTOR}."),
)
_ADAPTER_KEY = re.compile(
    r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<task>[^.]+)\.weight$"
)


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A local folder as is; anything else is taken as a hub id and downloaded (cached)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        raise CheckpointError(
            f"{name!r} is neither a checkpoint folder nor a hub id like 'jinaai/jina-embeddings-v4'"
        )
    from huggingface_hub import snapshot_download

    logger.info("downloading %s from the Hugging Face hub (cached)", name)
    return Path(snapshot_download(repo_id=name, allow_patterns=_HUB_PATTERNS))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {path.name} in {path.parent}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e


def read_config(
    folder: Path, attn_implementation: str = "sdpa"
) -> tuple[Qwen2_5_VLConfig, ModelSpec]:
    """config.json -> the backbone config (jina keys removed) and the head spec."""
    raw = _read_json(folder / CONFIG_FILE)
    qwen = {k: v for k, v in raw.items() if k not in JINA_CONFIG_KEYS and k != "auto_map"}
    qwen["architectures"] = ["Qwen2_5_VLModel"]
    config = Qwen2_5_VLConfig.from_dict(qwen)
    config._attn_implementation = attn_implementation  # propagates to text and vision
    return config, ModelSpec.from_config(raw, hidden_size=config.text_config.hidden_size)


def read_image_spec(folder: Path) -> ImageSpec:
    return ImageSpec.from_config(_read_json(folder / PREPROCESSOR_FILE))


def load_tokenizer(folder: Path) -> Any:
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load the tokenizer from {folder}: {e}") from e


def map_checkpoint_key(key: str) -> str | None:
    """Checkpoint tensor name -> JinaV4Model state-dict name (None: not a known prefix)."""
    for old, new in _KEY_MAP:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def legacy_key(name: str) -> str:
    """JinaV4Model state-dict name -> the released checkpoint's (legacy Qwen2.5-VL) name."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model.") :]
    if name.startswith("model.visual."):
        return name[len("model.") :]
    return name


def _shard_files(folder: Path) -> dict[str, list[str]]:
    """Shard file name -> the tensor names the index puts there."""
    index_path = folder / INDEX_FILE
    if not index_path.exists() and (folder / SINGLE_FILE).is_file():
        with safe_open(folder / SINGLE_FILE, framework="pt") as f:
            return {SINGLE_FILE: list(f.keys())}
    weight_map = _read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{INDEX_FILE} has no weight_map")
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        shards.setdefault(shard, []).append(key)
    missing = sorted(s for s in shards if not (folder / s).is_file())
    if missing:
        raise CheckpointError(
            f"missing weight shard(s) {missing} listed in {INDEX_FILE} ({folder})"
        )
    return shards


def _report_key_mismatch(what: str, unknown: list[str], missing: list[str]) -> None:
    if not unknown and not missing:
        return
    parts = []
    if unknown:
        parts.append(f"{len(unknown)} unknown key(s): {sorted(unknown)[:20]}")
    if missing:
        parts.append(f"{len(missing)} missing key(s): {sorted(missing)[:20]}")
    raise CheckpointError(f"{what} does not match the model: " + "; ".join(parts))


def load_backbone_weights(model: JinaV4Model, folder: Path) -> dict[str, tuple[Path, str]]:
    """Load every shard tensor into ``model`` (in place), mapping legacy names.

    Names and shapes are checked from the shard headers before anything is copied; then
    tensors are copied one at a time, so loading needs no second copy of the model (each
    tensor's file pages are released once it has been copied).

    Returns:
        Model state-dict name -> (shard file, checkpoint key): where each tensor lives.

    Raises:
        CheckpointError: A shard is missing, a tensor name is unknown, a model tensor is
            not in the checkpoint, or a shape differs; the message lists them.
    """
    expected = model.state_dict()
    where: dict[str, tuple[Path, str]] = {}
    unknown: list[str] = []
    bad_shapes: list[str] = []
    for shard, keys in _shard_files(folder).items():
        with safe_open(folder / shard, framework="pt") as f:
            present = set(f.keys())
            absent = [k for k in keys if k not in present]
            if absent:
                raise CheckpointError(
                    f"{shard} lacks {len(absent)} tensor(s) its index lists: {absent[:10]}"
                )
            for key in keys:
                if key in IGNORED_KEYS:
                    logger.info("ignoring checkpoint tensor %s (not needed for embeddings)", key)
                    continue
                name = map_checkpoint_key(key)
                if name is None or name not in expected:
                    unknown.append(key)
                    continue
                shape = tuple(f.get_slice(key).get_shape())
                if shape != tuple(expected[name].shape):
                    bad_shapes.append(
                        f"{name}: checkpoint {shape} vs model {tuple(expected[name].shape)}"
                    )
                where[name] = (folder / shard, key)
    missing = [legacy_key(k) for k in expected if k not in where]
    _report_key_mismatch("checkpoint", unknown, missing)
    if bad_shapes:
        raise CheckpointError(f"checkpoint shapes do not match the config: {bad_shapes[:10]}")
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for name, (path, key) in where.items():
        by_file.setdefault(path, []).append((name, key))
    with torch.no_grad():
        for path, pairs in by_file.items():
            with safe_open(path, framework="pt") as f:
                for name, key in pairs:
                    expected[name].copy_(f.get_tensor(key))  # casts to the model dtype
    logger.info("loaded %d backbone tensors from %s", len(where), folder)
    return where


def load_adapters(
    model: JinaV4Model, folder: Path, tasks: tuple[Task, ...], base: BaseWeights
) -> TaskLoRA:
    """Read adapters/ (all tasks in one file), check every tensor, return the task switcher.

    peft's own loader is deliberately not used: with this layout it loads nothing and
    only warns (see the spec). Keys are mapped here and counted: ``layers * 7 * tasks * 2``
    plus ``tasks * 2`` for the projector.
    """
    adir = folder / ADAPTER_DIR
    cfg = _read_json(adir / ADAPTER_CONFIG)
    weights = adir / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"missing adapter file {ADAPTER_DIR}/{ADAPTER_WEIGHTS} in {folder}")
    rank, alpha = int(cfg["r"]), float(cfg.get("lora_alpha", cfg["r"]))
    scale = alpha / rank**0.5 if cfg.get("use_rslora") else alpha / rank
    targets = model.lora_targets()
    device = next(model.parameters()).device
    ab: dict[tuple[Task, str, str], torch.Tensor] = {}
    unknown: list[str] = []
    with safe_open(weights, framework="pt", device=str(device)) as f:
        for key in f.keys():
            m = _ADAPTER_KEY.match(key)
            module = _adapter_module(m.group("module")) if m else None
            task = m.group("task") if m else None
            if module not in targets or task not in {t.value for t in tasks}:
                unknown.append(key)
                continue
            ab[(Task(task), module, m.group("ab"))] = f.get_tensor(key)
    missing = [
        _adapter_key(module, side, task)
        for task in tasks
        for module in targets
        for side in "AB"
        if (task, module, side) not in ab
    ]
    _report_key_mismatch(f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}", unknown, missing)
    n_layers = len(model.model.language_model.layers)
    expected_count = n_layers * len(LORA_LAYER_MODULES) * len(tasks) * 2 + len(tasks) * 2
    if len(ab) != expected_count:  # cannot differ after the checks above; kept as a guard
        raise CheckpointError(f"adapter tensors: found {len(ab)}, expected {expected_count}")
    factors = _check_factor_shapes(ab, targets, tasks, rank)
    logger.info(
        "loaded %d LoRA tensors (r=%d, alpha=%g) for tasks %s",
        len(ab),
        rank,
        alpha,
        [t.value for t in tasks],
    )
    return TaskLoRA(targets, factors, scale, base)


def _adapter_module(name: str) -> str:
    # The reference's key form is model.language_model.layers.N...; accept the older
    # model.layers.N... too (same modules, pre-4.52 transformers naming).
    if name.startswith("model.layers."):
        return "model.language_model." + name[len("model.") :]
    return name


def _adapter_key(module: str, side: str, task: Task) -> str:
    return f"base_model.model.{module}.lora_{side}.{task.value}.weight"


def _check_factor_shapes(
    ab: Mapping[tuple[Task, str, str], torch.Tensor],
    targets: Mapping[str, torch.nn.Linear],
    tasks: tuple[Task, ...],
    rank: int,
) -> dict[Task, dict[str, LoraFactors]]:
    factors: dict[Task, dict[str, LoraFactors]] = {}
    bad: list[str] = []
    for task in tasks:
        factors[task] = {}
        for module, linear in targets.items():
            a, b = ab[(task, module, "A")], ab[(task, module, "B")]
            if a.shape != (rank, linear.in_features) or b.shape != (linear.out_features, rank):
                bad.append(f"{module} [{task.value}]: A {tuple(a.shape)}, B {tuple(b.shape)}")
            factors[task][module] = LoraFactors(a=a, b=b)
    if bad:
        raise CheckpointError(f"adapter shapes do not match the model (r={rank}): {bad[:10]}")
    return factors


def check_layout(folder: Path) -> None:
    """Fail fast, naming the file, before anything large is allocated or read."""
    required = [CONFIG_FILE, PREPROCESSOR_FILE, f"{ADAPTER_DIR}/{ADAPTER_CONFIG}"]
    required.append(f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}")
    if not (folder / "tokenizer.json").is_file():
        required += ["vocab.json", "merges.txt"]
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"missing checkpoint file(s) {missing} in {folder}")
    _shard_files(folder)


def load_model(
    folder: Path, device: torch.device, dtype: torch.dtype, attn_implementation: str = "sdpa"
) -> tuple[JinaV4Model, TaskLoRA]:
    """Build the model on ``device`` and fill it from the checkpoint folder."""
    check_layout(folder)
    config, spec = read_config(folder, attn_implementation)
    model = build_model(config, spec, device, dtype)
    where = load_backbone_weights(model, folder)
    # The adapted Linears' base weights stay in the checkpoint: re-read on a task switch.
    base = BaseWeights({m: where[f"{m}.weight"] for m in model.lora_targets()}, dtype)
    lora = load_adapters(model, folder, spec.tasks, base)
    return model, lora

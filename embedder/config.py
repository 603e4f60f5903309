"""Checkpoint specs (config.json, preprocessor_config.json) and the device / dtype choice.

The closed option sets, prompt rules and default budgets live in the torch-free
:mod:`embedder.options`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import CheckpointError, OptionError
from .options import MULTI_VECTOR_DIM, Task

logger = logging.getLogger(__name__)

# config.json keys that jina-embeddings-v4 adds on top of the Qwen2.5-VL config.
JINA_CONFIG_KEYS = (
    "task_names",
    "matryoshka_dims",
    "truncate_dim",
    "multi_vector_projector_dim",
    "single_vector_pool_strategy",
)


@dataclass(frozen=True)
class ModelSpec:
    """The embedding-head facts read from config.json (jina extras plus the hidden size)."""

    hidden_size: int
    task_names: tuple[str, ...]
    matryoshka_dims: tuple[int, ...]
    truncate_dim: int | None
    multi_vector_dim: int
    pool_strategy: str = "mean"

    def __post_init__(self) -> None:
        unknown = [t for t in self.task_names if t not in Task.values()]
        if unknown or not self.task_names:
            raise CheckpointError(
                f"config.json task_names={list(self.task_names)!r}: expected a non-empty subset of "
                f"{list(Task.values())!r}"
            )
        if self.pool_strategy != "mean":
            raise CheckpointError(
                f"config.json single_vector_pool_strategy={self.pool_strategy!r}: only 'mean' "
                "is supported"
            )
        bad = [d for d in self.matryoshka_dims if not 0 < d <= self.hidden_size]
        if bad:
            raise CheckpointError(
                f"config.json matryoshka_dims={list(self.matryoshka_dims)!r}: every dim must be "
                f"in 1..{self.hidden_size} (the hidden size)"
            )
        if self.truncate_dim is not None and self.truncate_dim not in self.valid_dims:
            raise CheckpointError(
                f"config.json truncate_dim={self.truncate_dim!r} is not one of {self.valid_dims!r}"
            )
        if self.multi_vector_dim <= 0:
            raise CheckpointError(
                f"config.json multi_vector_projector_dim={self.multi_vector_dim!r} must be > 0"
            )

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(Task(t) for t in self.task_names)

    @property
    def valid_dims(self) -> tuple[int, ...]:
        """Matryoshka dims plus the full hidden size (no truncation)."""
        return tuple(sorted(set(self.matryoshka_dims) | {self.hidden_size}))

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], hidden_size: int) -> ModelSpec:
        """Read the jina extras of a config.json dict; missing ones are a CheckpointError."""
        missing = [k for k in ("task_names", "matryoshka_dims") if k not in raw]
        if missing:
            raise CheckpointError(f"config.json lacks the jina-embeddings-v4 keys {missing}")
        truncate = raw.get("truncate_dim")
        return cls(
            hidden_size=int(hidden_size),
            task_names=tuple(raw["task_names"]),
            matryoshka_dims=tuple(int(d) for d in raw["matryoshka_dims"]),
            truncate_dim=None if truncate is None else int(truncate),
            multi_vector_dim=int(raw.get("multi_vector_projector_dim", MULTI_VECTOR_DIM)),
            pool_strategy=str(raw.get("single_vector_pool_strategy", "mean")),
        )

    def resolve_truncate_dim(self, truncate_dim: int | None) -> int:
        """The dense output width for a call: the argument, else config.json's, else full."""
        dim = self.truncate_dim if truncate_dim is None else truncate_dim
        if dim is None:
            return self.hidden_size
        if isinstance(dim, bool) or not isinstance(dim, int) or dim not in self.valid_dims:
            raise OptionError(
                f"truncate_dim={dim!r} is not supported; expected one of {self.valid_dims!r} "
                "(config.json matryoshka_dims) or None for the full vector"
            )
        return dim


@dataclass(frozen=True)
class ImageSpec:
    """Image preprocessing settings from preprocessor_config.json."""

    min_pixels: int
    max_pixels: int
    patch_size: int
    temporal_patch_size: int
    merge_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if not 0 < self.min_pixels <= self.max_pixels:
            raise CheckpointError(
                f"preprocessor_config.json: need 0 < min_pixels <= max_pixels, got "
                f"min_pixels={self.min_pixels}, max_pixels={self.max_pixels}"
            )

    @property
    def factor(self) -> int:
        """Images are resized to multiples of this many pixels on each side."""
        return self.patch_size * self.merge_size

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> ImageSpec:
        size = raw.get("size") or {}
        try:
            return cls(
                min_pixels=int(raw.get("min_pixels") or size["shortest_edge"]),
                max_pixels=int(raw.get("max_pixels") or size["longest_edge"]),
                patch_size=int(raw.get("patch_size", 14)),
                temporal_patch_size=int(raw.get("temporal_patch_size", 2)),
                merge_size=int(raw.get("merge_size", 2)),
                image_mean=_triple(raw["image_mean"]),
                image_std=_triple(raw["image_std"]),
            )
        except KeyError as e:
            raise CheckpointError(f"preprocessor_config.json lacks {e.args[0]!r}") from e

    def check_vision_config(self, vision: Any) -> None:
        """The processor must cut patches exactly as the vision tower expects them."""
        pairs = {
            "patch_size": (self.patch_size, vision.patch_size),
            "temporal_patch_size": (self.temporal_patch_size, vision.temporal_patch_size),
            "merge_size": (self.merge_size, vision.spatial_merge_size),
        }
        bad = {k: v for k, v in pairs.items() if v[0] != v[1]}
        if bad:
            raise CheckpointError(
                "preprocessor_config.json disagrees with config.json vision_config: "
                + ", ".join(f"{k} {a} != {b}" for k, (a, b) in bad.items())
            )


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """CUDA when available, else CPU; an explicit device is checked, never silently swapped."""
    if device is None:
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        reason = "auto: CUDA available" if chosen.type == "cuda" else "auto: no CUDA device"
    else:
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise OptionError(f"device={device!r} is not a torch device string") from e
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise OptionError(f"device={device!r} was requested but CUDA is not available")
        reason = "requested"
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", torch.cuda.current_device())
    logger.info("embedder device: %s (%s)", chosen, reason)
    return chosen


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA (the checkpoint's own dtype), float32 on CPU; overridable."""
    if dtype is None:
        chosen = torch.bfloat16 if device.type == "cuda" else torch.float32
        reason = "auto"
    else:
        if isinstance(dtype, str):
            key = dtype.removeprefix("torch.")
            if key not in _DTYPES:
                raise OptionError(
                    f"dtype={dtype!r} is not supported; expected one of {list(_DTYPES)}"
                )
            chosen = _DTYPES[key]
        elif dtype in _DTYPES.values():
            chosen = dtype
        else:
            raise OptionError(f"dtype={dtype!r} is not supported; expected one of {list(_DTYPES)}")
        reason = "requested"
    logger.info("embedder dtype: %s (%s)", str(chosen).removeprefix("torch."), reason)
    return chosen

"""Task LoRA adapters: all tasks' factors resident, one task merged into the live weights.

Why merge on a task switch (and not peft, and not unmerged LoRA):

* Speed. An unmerged LoRA costs two extra skinny matmuls (rank 32) per adapted Linear on
  every forward: extra kernel launches and memory traffic for ~3 % more FLOPs. A merged
  weight runs the plain Linear, and merging happens only when the task changes.
* Mixed-task batches. The encoder groups items by task before batching, so a "mixed"
  call is one homogeneous run per task; every item sees exactly the same batches, and so
  the same bits, whether its call was mixed or not.
* No drift. Each merge computes ``W0 + scale * B @ A`` from the exact base weight
  ``W0``, never ``W - B @ A`` (not exact in floating point): any sequence of tasks gives
  bit-identical weights, the same as a freshly loaded model.

Where ``W0`` lives. It used to be a second device-resident copy of every adapted weight
(+5.2 GB in bf16 for the 3B model: 1.79x the model's size). Now it stays off the device
(:mod:`.base_weights`: the checkpoint's own files, or a temporary copy for a model built
in memory). The live weights hold ``W0`` until the first task is merged, so a process
that only ever uses one task never reads it back; each later switch re-reads ``W0`` one
tensor at a time (transient memory: one tensor) and re-merges. Measured on a 2-core CPU
at the full shapes: see README "Memory needed" and ``bench/weights_memory.py``.

Exact un-merging without ``W0`` was measured and rejected: recovering ``W0`` from
``round(W0 + delta)`` fails for 5-8 % of elements at LoRA updates of 5 % of the weights
(more for larger updates), so the correction table alone would exceed the memory budget.

peft's adapter loading silently loads nothing for this checkpoint's key layout (see the
spec), so adapters are read and checked by :mod:`embedder.loading`, not by peft.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .base_weights import BaseWeights
from .options import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraFactors:
    """One task's low-rank update of one Linear: ``delta_W = scale * B @ A``."""

    a: torch.Tensor  # (r, in_features)
    b: torch.Tensor  # (out_features, r)


class TaskLoRA:
    """Holds every task's LoRA factors and merges the active task into the model's Linears.

    Args:
        targets: Module name -> the ``nn.Linear`` that the adapters modify. Their weights
            must hold the base weights (nothing merged yet).
        factors: Task -> module name -> factors; every task must cover every target.
        scale: ``lora_alpha / r`` from adapter_config.json.
        base: Where the base weights can be re-read for a task switch (off the device).
    """

    def __init__(
        self,
        targets: Mapping[str, nn.Linear],
        factors: Mapping[Task, Mapping[str, LoraFactors]],
        scale: float,
        base: BaseWeights,
    ) -> None:
        for task, per_module in factors.items():
            if set(per_module) != set(targets):
                raise ValueError(f"LoRA factors for {task.value} do not cover the targets")
        if base.names != set(targets):
            raise ValueError("the base weights do not cover the LoRA targets")
        self._targets = dict(targets)
        self._factors = {task: dict(per_module) for task, per_module in factors.items()}
        self._scale = float(scale)
        self._base = base
        self._active: Task | None = None
        # True while the live weights still hold W0 (before the first merge): merging
        # then needs no read.
        self._live_is_base = True

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(self._factors)

    @property
    def active(self) -> Task | None:
        return self._active

    @property
    def scale(self) -> float:
        """``lora_alpha / r``: the factor on ``B @ A`` in every merge."""
        return self._scale

    @property
    def factors(self) -> Mapping[Task, Mapping[str, LoraFactors]]:
        return self._factors

    @torch.no_grad()
    def activate(self, task: Task) -> None:
        """Make ``task``'s merged weights live (a no-op when it already is).

        Raises:
            CheckpointError: The base weights' file is gone or changed since loading.
        """
        if task is self._active:
            return
        if task not in self._factors:
            raise KeyError(task)
        start = time.perf_counter()
        from_live = self._live_is_base
        # If a read fails half-way the weights are a mix: no task is active, and the
        # next switch re-reads every base weight.
        self._active, self._live_is_base = None, False
        # One float32 scratch for every merge: fresh (out, in) temporaries per module cost
        # page faults and zeroing on every switch (a third of a CPU switch's time).
        device = next(iter(self._targets.values())).weight.device
        largest = max(lin.weight.numel() for lin in self._targets.values())
        scratch = torch.empty(largest, dtype=torch.float32, device=device)
        for name, linear in self._targets.items():
            f = self._factors[task][name]
            w0 = linear.weight if from_live else self._base.read(name)  # (out, in)
            merged = scratch[: w0.numel()].view(w0.shape)  # (out, in) float32
            merged.copy_(w0.to(device))  # moved in its own dtype (fewer bytes), then widened
            # Merge in float32 and round once, so bf16 models lose as little of the
            # low-rank update as possible; same inputs -> same bits every time (addmm_ is
            # what the out-of-place addmm runs after copying W0).
            merged.addmm_(f.b.float(), f.a.float(), alpha=self._scale)
            linear.weight.copy_(merged)  # (out, in), rounded to the model dtype
            del w0
        del scratch
        self._active = task
        logger.debug(
            "LoRA task %s merged into %d modules in %.1f ms (%s)",
            task.value,
            len(self._targets),
            (time.perf_counter() - start) * 1e3,
            "from the live base weights" if from_live else "base weights re-read from disk",
        )

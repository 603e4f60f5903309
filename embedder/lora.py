"""Task LoRA adapters: all tasks resident, one merged into the live weights at a time.

Why merge-on-switch from a pristine copy (and not peft, and not unmerged LoRA):

* Speed. An unmerged LoRA costs two extra skinny matmuls (rank 32) per adapted Linear on
  every forward: extra kernel launches and memory traffic for ~3 % more FLOPs. A merged
  weight runs the plain Linear. Merging all 252 adapted matrices of the 3B model is a
  few milliseconds on a GPU, and happens only when the task changes.
* Mixed-task batches. The encoder groups items by task before batching, so a "mixed"
  call is one homogeneous run per task; every item sees exactly the same batches, and so
  the same bits, whether its call was mixed or not.
* No drift. Each merge recomputes ``W0 + scale * B @ A`` from the untouched base weight
  ``W0`` (kept on the device), never ``W - B @ A``: switching tasks back and forth gives
  bit-identical weights. The cost is one extra copy of the adapted weights (~5.5 GB in
  bf16 for the 3B model), far less than keeping three merged copies.
* peft's adapter loading silently loads nothing for this checkpoint's key layout (see
  the spec), so adapters are read and checked by :mod:`embedder.loading`, not by peft.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

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
        targets: Module name -> the ``nn.Linear`` that the adapters modify.
        factors: Task -> module name -> factors; every task must cover every target.
        scale: ``lora_alpha / r`` from adapter_config.json.
    """

    def __init__(
        self,
        targets: Mapping[str, nn.Linear],
        factors: Mapping[Task, Mapping[str, LoraFactors]],
        scale: float,
    ) -> None:
        for task, per_module in factors.items():
            if set(per_module) != set(targets):
                raise ValueError(f"LoRA factors for {task.value} do not cover the targets")
        self._targets = dict(targets)
        self._factors = {task: dict(per_module) for task, per_module in factors.items()}
        self._scale = float(scale)
        # The base weights, untouched: every merge starts from these.
        self._pristine = {name: lin.weight.detach().clone() for name, lin in self._targets.items()}
        self._active: Task | None = None

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(self._factors)

    @property
    def active(self) -> Task | None:
        return self._active

    @torch.no_grad()
    def activate(self, task: Task) -> None:
        """Make ``task``'s merged weights live (a no-op when it already is)."""
        if task is self._active:
            return
        if task not in self._factors:
            raise KeyError(task)
        for name, linear in self._targets.items():
            f = self._factors[task][name]
            w0 = self._pristine[name]
            # Merge in float32 and round once, so bf16 models lose as little of the
            # low-rank update as possible; same inputs -> same bits every time.
            merged = torch.addmm(w0.float(), f.b.float(), f.a.float(), alpha=self._scale)
            linear.weight.copy_(merged)  # (out, in), cast to the model dtype
        self._active = task
        logger.debug("LoRA task %s merged into %d modules", task.value, len(self._targets))

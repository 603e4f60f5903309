"""Out-of-memory back-off: a batch that does not fit is split and retried, never lost.

A batch budget that suits one GPU (or one mix of inputs) can overflow another. Rather
than crash an ingest hours in, the first out-of-memory halves the budget for the rest of
the embedder's life, warns once, and re-runs the failed batch's items in smaller batches.
Only a single item that does not fit even alone is an error (naming the item).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .batching import Batch, plan_batches
from .errors import EmbedderError
from .model import ModelInputs

logger = logging.getLogger(__name__)

#: One batch's results: dense rows (B, d) and, when asked for, one (t_i, 128) array per item.
Rows = tuple[np.ndarray, list[np.ndarray] | None]


class MemoryBackoff:
    """The batch budget after out-of-memory errors, and the retry of a batch that hit one."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._cap: int | None = None  # padded tokens per batch; None until the first OOM
        self._warned = False

    def budget(self, requested: int) -> int:
        """The batch budget to plan with: the requested one, or less after an OOM."""
        return requested if self._cap is None else min(requested, self._cap)

    def run(
        self,
        batch: Batch,
        inputs: ModelInputs,
        forward: Callable[[Batch, ModelInputs], Rows],
        prepare: Callable[[Batch], ModelInputs],
        costs: Sequence[int],
    ) -> Rows:
        """``forward(batch, inputs)``; on an out-of-memory, the batch's items in halves.

        Args:
            batch: The planned batch (positions into ``costs``, longest item first).
            inputs: Its prepared model inputs.
            forward: Runs one batch on the device.
            prepare: Builds model inputs for a (smaller) batch of the same call.
            costs: Tokens per item of the whole call.
        """
        if self._cap is not None and batch.padded_tokens > self._cap and len(batch.indices) > 1:
            return self._split(batch, forward, prepare, costs)  # planned before the budget fell
        try:
            return forward(batch, inputs)
        except torch.OutOfMemoryError as exc:
            del inputs
            self._release()
            if len(batch.indices) == 1:
                item = batch.indices[0]
                raise EmbedderError(
                    f"item {item} ({costs[item]} tokens) does not fit in {self._device} memory "
                    "even alone; shorten it (max_length) or lower max_pixels for images"
                ) from exc
            self._lower(batch)
        return self._split(batch, forward, prepare, costs)

    def _lower(self, batch: Batch) -> None:
        cap = max(1, batch.padded_tokens // 2)
        self._cap = cap if self._cap is None else min(self._cap, cap)
        message = (
            "out of %s memory on a batch of %d items (%d padded tokens): batch budget "
            "lowered to %d tokens for this embedder; the batch is retried in smaller ones"
        )
        args = (self._device, len(batch.indices), batch.padded_tokens, self._cap)
        if self._warned:
            logger.debug(message, *args)
        else:
            logger.warning(message, *args)
            self._warned = True

    def _split(
        self,
        batch: Batch,
        forward: Callable[[Batch, ModelInputs], Rows],
        prepare: Callable[[Batch], ModelInputs],
        costs: Sequence[int],
    ) -> Rows:
        cap = self._cap if self._cap is not None else batch.padded_tokens // 2
        members = list(batch.indices)
        # Every part's padded size is at most the cap, which is below this batch's: >= 2 parts.
        plan = plan_batches([costs[i] for i in members], max(1, cap))
        position = {item: k for k, item in enumerate(members)}
        dense_rows: list[np.ndarray | None] = [None] * len(members)
        multi_rows: list[np.ndarray | None] = [None] * len(members)
        has_multi = False
        for part in plan:
            items = tuple(members[k] for k in part.indices)
            sub = Batch(items, batch.group, len(items) * max(costs[i] for i in items))
            d, mv = self.run(sub, prepare(sub), forward, prepare, costs)
            for row, item in enumerate(items):
                dense_rows[position[item]] = d[row]
                if mv is not None:
                    has_multi = True
                    multi_rows[position[item]] = mv[row]
        dense = np.stack([r for r in dense_rows if r is not None])
        multi = [m for m in multi_rows if m is not None] if has_multi else None
        return dense, multi

    def _release(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

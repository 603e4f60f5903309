"""Host <-> device copies of a batch: pinned inputs, one device-to-host copy of the outputs.

On CUDA a ``non_blocking`` copy from pageable memory is staged and synchronous; from pinned
(page-locked) memory it is a DMA that overlaps the GPU's work. The batch's inputs are
pinned on the preparing thread (``batching.Pipeline``), off the encoder's path.

The outputs (dense vectors, token counts, the real tokens' vectors) went back in three
copies, each a synchronisation; ``to_host`` packs them into one byte buffer on the device
and copies that once. On CPU nothing is copied at all (the numpy arrays share the tensors'
memory), so the CPU path is the plain one; both are tested on CPU for the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from .model import EmbedderOutput, ModelInputs

T = TypeVar("T")


def pin_inputs(inputs: ModelInputs) -> ModelInputs:
    """The same batch in pinned host memory (for non-blocking copies to a CUDA device)."""
    fields = {
        f.name: getattr(inputs, f.name).pin_memory()
        for f in dataclasses.fields(inputs)
        if isinstance(getattr(inputs, f.name), torch.Tensor)
    }
    return dataclasses.replace(inputs, **fields)


def pinning(
    prepare: Callable[[T], ModelInputs], device: torch.device
) -> Callable[[T], ModelInputs]:
    """``prepare``, pinning what it returns when the batch goes to a CUDA device."""
    if device.type != "cuda":
        return prepare
    return lambda batch: pin_inputs(prepare(batch))


def to_host(
    out: EmbedderOutput, dim: int, multivector_dtype: torch.dtype, *, one_copy: bool
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Dense vectors (B, dim) float32 and each item's real-token vectors (t_i, P) as numpy.

    Args:
        dim: the Matryoshka width (sliced and L2-normalised again when under the full one).
        one_copy: pack everything into one device buffer and copy it once (CUDA); False:
            copy each part (on CPU: no copy at all).
    """
    dense = out.dense  # (B, H) float32, normalised
    if dim < dense.shape[1]:
        dense = F.normalize(dense[:, :dim], dim=-1)  # (B, d) Matryoshka
    if out.multi is None:
        return dense.cpu().numpy(), None
    rows = out.multi[out.mask].to(multivector_dtype)  # (sum t_i, P), real tokens only
    lengths = out.mask.sum(dim=1)  # (B,) int64
    if not one_copy:
        flat = rows.cpu().numpy()
        return dense.cpu().numpy(), np.split(flat, np.cumsum(lengths.tolist())[:-1])
    # lengths first: every part then starts aligned for its dtype (8, 4, then 2 or 4 bytes)
    parts = (lengths, dense.contiguous(), rows.contiguous())
    host = torch.cat([p.reshape(-1).view(torch.uint8) for p in parts]).cpu().numpy()  # one copy
    n_len, n_dense = parts[0].numel() * 8, parts[1].numel() * 4
    counts = host[:n_len].view(np.int64)
    dense_np = host[n_len : n_len + n_dense].view(np.float32).reshape(dense.shape)
    np_dtype = torch.empty(0, dtype=multivector_dtype).numpy().dtype
    flat = host[n_len + n_dense :].view(np_dtype).reshape(rows.shape)
    return dense_np, np.split(flat, np.cumsum(counts)[:-1])

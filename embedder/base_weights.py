"""The un-merged base weights of the LoRA-adapted Linears, kept off the device.

A task switch rebuilds ``W0 + scale * B @ A`` from the exact base weight ``W0``. Keeping
``W0`` next to the live weights on the device doubled the adapted weights (+5.2 GB for
the 3B model in bf16, 1.79x the model's own size). Here ``W0`` stays where it already
is on disk: the checkpoint's own safetensors shards, or, for a model built in memory
(random weights), a copy written once to temporary files. Reading it back is exact (the
same bytes, cast to the model dtype exactly as the loader did) and costs page cache,
not process memory: safetensors maps the file, and each tensor's pages are released as
soon as it has been merged.

The files must stay in place while the model is used with more than one task; a file
that changed or went missing since loading is an error naming it, never silently
different weights.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import CheckpointError

logger = logging.getLogger(__name__)

# Tensors per spill file: about one decoder layer of the 3B model in bf16, so writing
# never needs more than this much extra host memory.
_SPILL_FILE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class _FileStamp:
    """What identifies a file's content cheaply: a replaced or rewritten file changes it."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> _FileStamp:
        st = path.stat()
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


class BaseWeights:
    """Module name -> where its base weight lives in a safetensors file, read on demand.

    Args:
        locations: Adapted module name -> (file, tensor key in that file).
        dtype: The model dtype; tensors are cast to it exactly as the loader cast them.
    """

    def __init__(self, locations: Mapping[str, tuple[Path, str]], dtype: torch.dtype) -> None:
        self._locations = {name: (Path(p), key) for name, (p, key) in locations.items()}
        self._dtype = dtype
        self._stamps = {p: _FileStamp.of(p) for p, _ in self._locations.values()}

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._locations)

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(self._stamps)

    def read(self, name: str) -> torch.Tensor:
        """The base weight of ``name`` on the CPU (out, in), exact in the model dtype.

        For a float32 model it may come back narrower (the checkpoint's bf16): widening
        is exact, so the merge converts on the fly and skips a float32 copy.

        Raises:
            CheckpointError: The file is gone or changed since loading.
        """
        path, key = self._locations[name]
        try:
            unchanged = _FileStamp.of(path) == self._stamps[path]
        except OSError as e:
            raise CheckpointError(
                f"cannot re-read base weight {key!r} for a task switch: {e}; the checkpoint "
                "files must stay in place while the model is used with more than one task"
            ) from e
        if not unchanged:
            raise CheckpointError(
                f"{path} changed since the model was loaded: its base weights can no longer "
                "be restored exactly for a task switch; reload the model"
            )
        with safe_open(path, framework="pt") as f:
            stored = f.get_tensor(key)  # (out, in), backed by the file's pages until dropped
        if self._dtype == torch.float32:
            return stored  # widening to float32 is exact: the merge does it on the fly
        return stored.to(self._dtype)  # same rounding as the loader's copy_

    @classmethod
    def spill(
        cls, weights: Mapping[str, torch.Tensor], prefix: str = "jina-v4-base-"
    ) -> BaseWeights:
        """Write ``weights`` (module name -> live base weight) to temporary files.

        For models built in memory, which have no checkpoint to re-read. The files are
        removed when the returned object is garbage collected (or at interpreter exit).
        """
        dtypes = {w.dtype for w in weights.values()}
        if len(dtypes) != 1:
            raise ValueError(f"base weights must share one dtype, got {sorted(map(str, dtypes))}")
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        locations: dict[str, tuple[Path, str]] = {}
        groups: list[list[str]] = [[]]
        size = 0
        for name, weight in weights.items():
            if size >= _SPILL_FILE_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(name)
            size += weight.numel() * weight.element_size()
        for i, group in enumerate(groups):
            path = folder / f"base-{i:05d}.safetensors"
            # One group on the host at a time (no copy at all for CPU weights).
            save_file({k: weights[k].detach().cpu().contiguous() for k in group}, str(path))
            locations.update({k: (path, k) for k in group})
        base = cls(locations, dtypes.pop())
        weakref.finalize(base, shutil.rmtree, folder, True)
        total = sum(os.path.getsize(p) for p in base.files)
        logger.info(
            "wrote %.1f MB of base weights to %s (no checkpoint to re-read)", total / 1e6, folder
        )
        return base

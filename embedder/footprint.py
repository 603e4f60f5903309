"""What an object holds in tensor memory, per device, found by walking its references.

Used by the tests and ``bench/weights_memory.py`` to check the resident-weights budget
(issue 17) without trusting the code under test to report its own tensors: everything
reachable from the embedder (model parameters and buffers, LoRA factors, anything a task
switcher keeps) is counted once per storage.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping

import torch

_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, str, bytes)


def reachable_tensors(root: object) -> Iterator[torch.Tensor]:
    """Every tensor reachable from ``root`` through attributes, containers and modules."""
    seen: set[int] = set()
    stack: list[object] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            yield obj
            continue
        if isinstance(obj, Mapping):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict):
            stack.extend(attrs.values())
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                stack.append(getattr(obj, slot))


def tensor_bytes_by_device(root: object) -> dict[str, int]:
    """Device (``"cpu"``, ``"cuda:0"``...) -> bytes of the distinct storages reachable from root.

    Views of one storage count once; a storage counts in full even if only a view of it
    is reachable (that is what stays allocated).
    """
    storages: dict[tuple[str, int], int] = {}
    for t in reachable_tensors(root):
        if t.device.type == "meta":
            continue
        storage = t.untyped_storage()
        storages[(str(t.device), storage.data_ptr())] = storage.nbytes()
    totals: dict[str, int] = {}
    for (device, _), nbytes in storages.items():
        totals[device] = totals.get(device, 0) + nbytes
    return totals

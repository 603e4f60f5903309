"""Lazy imports of the Qdrant packages: importing connectors.qdrant must stay cheap and optional."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingDependencyError

_PACKAGES = {
    # module -> (what it is for, pip requirement)
    "qdrant_edge": (
        "qdrant-edge-py is required for embedded stores (path=...)",
        "qdrant-edge-py>=0.9",
    ),
    "qdrant_client": (
        "qdrant-client is required for url=, local= and client= stores",
        "qdrant-client>=1.15",
    ),
}


def require(module: str) -> ModuleType:
    """Import ``qdrant_edge`` or ``qdrant_client`` at first use, with a pip hint when missing."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what, requirement = _PACKAGES[module]
        raise MissingDependencyError(
            f"{what}: pip install '{requirement}' (or pip install jina-vdb)"
        ) from e


def edge() -> ModuleType:
    """The ``qdrant_edge`` module."""
    return require("qdrant_edge")


def models() -> ModuleType:
    """``qdrant_client.models``."""
    require("qdrant_client")
    return importlib.import_module("qdrant_client.models")

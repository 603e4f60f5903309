"""Lazy imports of the Qdrant packages: importing connectors.qdrant must stay cheap and optional."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingDependencyError

_PACKAGES = {
    # module -> what it is for (both come with the [qdrant] extra)
    "qdrant_edge": "qdrant-edge-py is required for embedded stores (path=...)",
    "qdrant_client": "qdrant-client is required for url=, local= and client= stores",
}


def require(module: str) -> ModuleType:
    """Import ``qdrant_edge`` or ``qdrant_client`` at first use, with a pip hint when missing."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{_PACKAGES[module]}: pip install 'jina-vdb[qdrant]'") from e


def edge() -> ModuleType:
    """The ``qdrant_edge`` module."""
    return require("qdrant_edge")


def models() -> ModuleType:
    """``qdrant_client.models``."""
    require("qdrant_client")
    return importlib.import_module("qdrant_client.models")

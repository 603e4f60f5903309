"""Optional packages of the application, imported at first use with the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# import name -> (pip name, the jina-vdb extra that brings it)
_EXTRAS = {
    "typer": ("typer", "cli"),
    "tqdm": ("tqdm", "cli"),
    "charset_normalizer": ("charset-normalizer", "cli"),
    "pypdfium2": ("pypdfium2", "pdf"),
    "PIL": ("pillow", "model"),
    "ray": ("ray[data]", "ray"),
}


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (one of the optional packages), or raise MissingDependencyError.

    Args:
        module: the import name, e.g. ``"pypdfium2"``.
        what: what it is needed for, e.g. ``"for PDFs"`` (goes into the message).
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pip_name, extra = _EXTRAS[module.split(".")[0]]
        raise MissingDependencyError(
            f"{pip_name} is required {what}: pip install 'jina-vdb[{extra}]'"
        ) from e

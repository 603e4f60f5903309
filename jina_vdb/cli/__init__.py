"""The ``jina-vdb`` command line (typer): ingest, search, info, demo.

typer loads when the command runs (:func:`main`), so importing this package needs no
``[cli]`` extra; without it, the command says which extra to install. The typer app itself
is ``jina_vdb.cli.app.app``.
"""

from __future__ import annotations

import sys
from typing import Any

from .._deps import require
from ..errors import MissingDependencyError

__all__ = ["main"]


def main() -> Any:
    """Console-script entry point (``jina-vdb``)."""
    try:
        require("typer", "for the jina-vdb command")
    except MissingDependencyError as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(1) from None
    from .app import main as run

    return run()

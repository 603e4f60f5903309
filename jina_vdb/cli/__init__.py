"""The ``jina-vdb`` command line (typer): ingest, search, info, demo."""

from __future__ import annotations

from .app import app as app
from .app import main as main

__all__ = ["app", "main"]

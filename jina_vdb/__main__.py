"""``python -m jina_vdb``: the same as the ``jina-vdb`` console script."""

from __future__ import annotations

from .cli import main

main()

"""``python -m jina_vdb.cli``: the same as the ``jina-vdb`` console script."""

from __future__ import annotations

from . import main

main()

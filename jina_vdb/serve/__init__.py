"""``jina-vdb serve``: the model behind an HTTP API, with dynamic batching.

FastAPI + uvicorn + prometheus-client (``pip install 'jina-vdb[serve]'``); imported only
by the ``serve`` command, so the rest of the CLI runs without them.
"""

from __future__ import annotations

from .settings import ServeSettings as ServeSettings

__all__ = ["ServeSettings"]

"""``jina-vdb serve``: load the model once, then run the app under uvicorn.

SIGTERM / Ctrl-C: uvicorn stops accepting connections, lets in-flight requests finish
(up to ``graceful_s``), then the app's lifespan drains the batcher's queue and exits.
"""

from __future__ import annotations

import logging
from typing import Any

from .settings import ServeSettings

logger = logging.getLogger(__name__)


def run_server(
    encoder: Any,
    settings: ServeSettings,
    *,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    graceful_s: float = 30.0,
    access_log: bool = True,
) -> None:
    """Serve until SIGTERM / SIGINT (blocking)."""
    import uvicorn

    from .app import create_app

    app = create_app(encoder, settings, model_name=model_name)
    logging.getLogger("jina_vdb.serve").setLevel(logging.INFO)
    if not access_log:
        logging.getLogger("jina_vdb.serve.access").setLevel(logging.WARNING)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the CLI's logging setup; uvicorn's loggers propagate to it
        access_log=False,  # ours (jina_vdb.serve.access) has the route template and latency
        timeout_graceful_shutdown=int(graceful_s),
    )
    logging.getLogger("uvicorn").setLevel(logging.INFO)
    uvicorn.Server(config).run()

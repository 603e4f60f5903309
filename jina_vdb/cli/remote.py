"""``jina-vdb search --server URL``: ask a running ``jina-vdb serve`` instead of loading a model."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from connectors.query import Hit, SearchMode

from .support import CliError


def search_remote(
    server: str,
    collection: str,
    *,
    query: str | None,
    image: Path | None,
    mode: SearchMode,
    limit: int,
    prefetch_limit: int,
    filters: list[str],
    task: str,
    allow_model_mismatch: bool,
    timeout: float = 120.0,
) -> tuple[list[Hit], bool, int]:
    """(hits, the collection stores token vectors, query tokens) from the server's search.

    The API key comes from $JINA_VDB_API_KEY (sent as a bearer token).
    """
    try:
        import httpx
    except ImportError as e:
        raise CliError("--server needs httpx: pip install 'jina-vdb[serve]'") from e
    body: dict[str, Any] = {
        "mode": mode.value,
        "limit": limit,
        "prefetch_limit": prefetch_limit,
        "task": task,
        "allow_model_mismatch": allow_model_mismatch,
    }
    if filters:
        body["filter"] = filters
    if image is not None:
        try:
            body["image"] = base64.b64encode(image.read_bytes()).decode()
        except OSError as e:
            raise CliError(f"--image {image}: {e.strerror or e}") from None
    else:
        body["query"] = query
    key = os.environ.get("JINA_VDB_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"{server.rstrip('/')}/v1/collections/{collection}/search"
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise CliError(f"--server {server}: {type(e).__name__}: {e}") from None
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise CliError(f"--server {server} answered {response.status_code}: {detail}")
    data = response.json()
    hits = [Hit(id=h["id"], score=float(h["score"]), payload=h["payload"]) for h in data["hits"]]
    return hits, bool(data["multivector"]), int(data["query_tokens"])

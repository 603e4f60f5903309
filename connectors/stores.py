"""Store URLs: one string names a backend and where it lives (the CLI's ``--store``).

    qdrant:./qdrant_data           embedded qdrant-edge collections in a folder
    qdrant+http://host:6333        a Qdrant server (API key from QDRANT_API_KEY): gRPC on 6334
                                   when the port is 6333 or none, else REST on the port given
    qdrant+grpc://host:6334        a Qdrant server over gRPC on the port given (grpcs: TLS)
    milvus:./milvus.db             Milvus Lite, a local file
    milvus+http://host:19530       a Milvus server (token from MILVUS_TOKEN)

``https`` works wherever ``http`` does. Credentials never appear in a URL or a message.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from .base import VectorStore
from .errors import CollectionNotFoundError
from .spec import CollectionSpec

logger = logging.getLogger(__name__)

STORE_URL_FORMS = (
    "qdrant:PATH, qdrant+http://HOST:6333, qdrant+grpc://HOST:6334, milvus:PATH.db "
    "or milvus+http://HOST:19530"
)
_SERVER = re.compile(r"^(qdrant|milvus)\+((?:https?|grpcs?)://[^\s/@]+(:\d+)?/?.*)$")
_LOCAL = re.compile(r"^(qdrant|milvus):(?!//)(.+)$")


@dataclass(frozen=True)
class StoreURL:
    """A parsed ``--store`` value.

    Attributes:
        backend: "qdrant" or "milvus".
        location: a folder / file path (embedded) or an http(s) server URL.
        server: True for a server URL.
    """

    backend: Literal["qdrant", "milvus"]
    location: str
    server: bool

    def __str__(self) -> str:
        return (
            f"{self.backend}+{self.location}" if self.server else f"{self.backend}:{self.location}"
        )


def parse_store_url(url: str) -> StoreURL:
    """Parse a store URL (see the module docstring); raises ValueError listing the valid forms."""
    if not isinstance(url, str):
        raise ValueError(
            f"store URL must be a string like 'qdrant:./data', got {type(url).__name__}"
        )
    text = url.strip()
    m = _SERVER.match(text)
    if m:
        if "@" in m.group(2).split("/", 3)[2]:
            raise ValueError(
                "store URL must not contain credentials; set QDRANT_API_KEY or MILVUS_TOKEN instead"
            )
        if m.group(1) == "milvus" and m.group(2).startswith("grpc"):
            raise ValueError(f"unknown store URL {url!r}: Milvus servers take milvus+http(s)://")
        return StoreURL(m.group(1), m.group(2), True)  # type: ignore[arg-type]
    m = _LOCAL.match(text)
    if m and not m.group(2).startswith(("http:", "https:")):
        return StoreURL(m.group(1), m.group(2), False)  # type: ignore[arg-type]
    raise ValueError(f"unknown store URL {url!r}; expected {STORE_URL_FORMS}")


def open_store(
    url: str | StoreURL,
    collection: str,
    *,
    spec: CollectionSpec | None = None,
    max_tokens: int | None = None,
) -> VectorStore:
    """Open a collection, or create it when ``spec`` is given.

    With a spec, an existing collection with the same spec is opened and one with another
    spec raises SchemaMismatchError. Without one, the collection must exist
    (CollectionNotFoundError otherwise). ``max_tokens``: the most token vectors per record
    of a new Milvus collection in the Array-of-Structs layout (the application computes it
    from the loaded model); other layouts and Qdrant need no such bound.
    """
    where = url if isinstance(url, StoreURL) else parse_store_url(url)
    if where.backend == "qdrant":
        from .qdrant import QdrantStore

        server, path, grpc_port = _qdrant_location(where)
        if spec is None:
            return QdrantStore.open(collection, url=server, path=path, grpc_port=grpc_port)
        return QdrantStore.create(collection, url=server, path=path, spec=spec, grpc_port=grpc_port)
    from .milvus import MilvusStore

    token = (os.environ.get("MILVUS_TOKEN") or None) if where.server else None
    if spec is None:
        return MilvusStore.open(collection, uri=where.location, token=token)
    return MilvusStore.create(
        collection, uri=where.location, spec=spec, token=token, max_tokens=max_tokens
    )


def collection_info(url: str | StoreURL, collection: str) -> dict[str, Any]:
    """A collection's ``info()``, read as cheaply as its backend allows.

    An embedded qdrant-edge collection is described from its files (spec, and the counts its
    last clean close saved) without loading vectors; a locked one is refused before anything
    is read. Otherwise (servers, Milvus, a qdrant-edge collection whose last process died)
    the collection is opened.
    """
    where = url if isinstance(url, StoreURL) else parse_store_url(url)
    if where.backend == "qdrant" and not where.server:
        from .qdrant import QdrantStore

        described = QdrantStore.describe(collection, path=where.location)
        if described is not None:
            return described
        logger.info("collection %r has no counts from a clean close: loading it", collection)
    with open_store(where, collection) as db:
        return db.info()


def list_collections(url: str | StoreURL) -> list[str]:
    """Names of the collections in a store: the jina-vdb ones of an embedded qdrant-edge
    folder; every collection of a Qdrant server or Milvus (token-row companions left out).
    """
    where = url if isinstance(url, StoreURL) else parse_store_url(url)
    if where.backend == "qdrant":
        if where.server:
            from .qdrant.client import server_collection_names

            server, _, grpc_port = _qdrant_location(where)
            return server_collection_names(str(server), grpc_port=grpc_port)
        from .qdrant.edge import SPEC_FILE

        root = Path(where.location)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / SPEC_FILE).is_file())
    from .milvus.connection import connect
    from .milvus.token_rows import companion_name

    token = (os.environ.get("MILVUS_TOKEN") or None) if where.server else None
    conn = connect(where.location, token=token)
    try:
        names = {str(n) for n in conn.client.list_collections()}
    finally:
        conn.close()
    return sorted(n for n in names if not any(companion_name(m) == n for m in names))


def open_or_create(
    url: str | StoreURL,
    collection: str,
    spec: CollectionSpec,
    *,
    explicit: bool,
    max_tokens: int | None = None,
) -> VectorStore:
    """For ingest: open an existing collection as it is, unless the spec was asked for explicitly.

    ``explicit=False`` (no spec options given): an existing collection is used with its own
    spec; a missing one is created with ``spec``. ``explicit=True``: create-or-open with
    ``spec`` (a different existing spec is a SchemaMismatchError).
    """
    if explicit:
        return open_store(url, collection, spec=spec, max_tokens=max_tokens)
    try:
        return open_store(url, collection)
    except CollectionNotFoundError:
        return open_store(url, collection, spec=spec, max_tokens=max_tokens)


def _qdrant_location(where: StoreURL) -> tuple[str | None, str | None, int | None]:
    """(url, path, grpc_port) of a qdrant store URL (grpc:// names the gRPC port itself)."""
    if not where.server:
        return None, where.location, None
    if not where.location.startswith("grpc"):
        return where.location, None, None
    parts = urlsplit(where.location)
    scheme = "https" if parts.scheme == "grpcs" else "http"
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"{scheme}://{host}", None, parts.port or 6334

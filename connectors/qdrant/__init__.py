"""Qdrant backend: embedded qdrant-edge (the default), qdrant-client local mode, or a server.

    from connectors.qdrant import QdrantStore
    with QdrantStore.create("docs", path="./qdrant_data", dim=2048) as store:
        store.upsert(records)
        hits = store.search(query)

Importing this package imports neither qdrant_edge nor qdrant_client: they load at first use.
"""

from __future__ import annotations

from .store import QdrantStore as QdrantStore

__all__ = ["QdrantStore"]

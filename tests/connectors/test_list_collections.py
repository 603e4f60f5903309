"""``list_collections``: the jina-vdb collections of an embedded store, companions left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.spec import CollectionSpec
from connectors.stores import list_collections, open_store


@pytest.mark.parametrize("backend", ["qdrant", "milvus"])
def test_lists_collections_of_embedded_stores(backend: str, tmp_path: Path) -> None:
    url = f"qdrant:{tmp_path / 'q'}" if backend == "qdrant" else f"milvus:{tmp_path / 'm.db'}"
    if backend == "qdrant":
        assert list_collections(url) == []  # no folder yet
    spec = CollectionSpec(dim=16, prefetch_dims=(), multivector=True)
    for name in ("beta", "alpha"):
        open_store(url, name, spec=spec).close()
    if backend == "qdrant":
        (tmp_path / "q" / "not-a-collection").mkdir()
    # Milvus Lite keeps token vectors in "<name>__tokens" companions: not listed.
    assert list_collections(url) == ["alpha", "beta"]


def test_qdrant_server_listing_is_refused() -> None:
    with pytest.raises(NotImplementedError, match="Qdrant server"):
        list_collections("qdrant+http://localhost:6333")

"""``list_collections``: the jina-vdb collections of an embedded store, companions left out."""

from __future__ import annotations

import socket
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


def test_qdrant_server_listing_names_an_unreachable_server() -> None:
    """A Qdrant server's collections are listed with one call (tests/integration lists a
    real one); a server that does not answer is a StoreUnavailableError naming it."""
    from connectors.errors import StoreUnavailableError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{port}"):
        list_collections(f"qdrant+http://127.0.0.1:{port}")

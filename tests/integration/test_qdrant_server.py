"""The whole contract suite against a real Qdrant server, when ``QDRANT_URL`` is set.

    QDRANT_URL=http://localhost:6333 [QDRANT_API_KEY=...] pytest tests/integration -m integration

Covers what local mode cannot: the server's Query API (HNSW, nested prefetch, RRF k), gRPC
transport and its request size limit (32 MiB by default), shard_number / replication_factor
pass-through. Every collection this module creates is dropped at the end.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))

from backends import QDRANT_FEATURES, Backend  # noqa: E402
from test_contract import *  # noqa: E402,F401,F403 - the contract's tests and fixtures, collected again here

from connectors import CollectionSpec, Query, Record  # noqa: E402
from connectors.qdrant import QdrantStore  # noqa: E402

URL = os.environ.get("QDRANT_URL", "")
RUN = uuid.uuid4().hex[:8]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not URL,
        reason="QDRANT_URL not set: no Qdrant server to run the contract, gRPC transport and the "
        "32 MiB request limit against (docker/ brings one up; e.g. QDRANT_URL=http://localhost:6333)",
    ),
]

_created: list[str] = []


def _name(tmp: Path, name: str) -> str:
    # Server collections outlive tmp folders: one unique name per test and run.
    return f"jvdb_it_{RUN}_{abs(hash(str(tmp))) % 10**8}_{name}"


def _create(tmp: Path, name: str, spec: CollectionSpec) -> QdrantStore:
    full = _name(tmp, name)
    _created.append(full)
    return QdrantStore.create(full, url=URL, spec=spec)


def _open(tmp: Path, name: str) -> QdrantStore:
    return QdrantStore.open(_name(tmp, name), url=URL)


@pytest.fixture(scope="module")
def backend():
    """Overrides the contract's backend list: only the server (over gRPC)."""
    yield Backend(
        "qdrant-server",
        _create,
        _open,
        embedded=False,
        spec_features=QDRANT_FEATURES,
        lose_collection=lambda store: store._client.delete_collection(store.name),
    )
    from qdrant_client import QdrantClient

    client = QdrantClient(url=URL, api_key=os.environ.get("QDRANT_API_KEY"))
    for name in _created:
        if client.collection_exists(name):
            client.delete_collection(name)
    client.close()


def test_store_talks_grpc(backend, tmp_path):
    store = backend.create(tmp_path, "grpc", CollectionSpec(dim=32, prefetch_dims=(8,)))
    assert store._client.init_options["prefer_grpc"] is True
    assert "gRPC" in store.where
    store.close()


@pytest.mark.parametrize("grpc", [True, False], ids=["grpc", "rest"])
def test_an_upsert_far_above_the_request_limit_is_split(backend, tmp_path, grpc):
    """~80 MiB of token vectors in one upsert call: every request stays under 32 MiB."""
    name = _name(tmp_path, f"big_{grpc}")
    _created.append(name)
    spec = CollectionSpec(dim=64, prefetch_dims=(), multivector_dtype="float32")
    store = QdrantStore.create(name, url=URL, spec=spec, prefer_grpc=grpc)
    rng = np.random.default_rng(0)
    records = [
        Record(i, rng.standard_normal(64), rng.standard_normal((2048, 128)), {"i": i})
        for i in range(80)
    ]
    assert store.upsert(records) == 80  # 80 x 1 MiB: one request would be refused
    assert store.count() == 80
    hit = store.search(
        Query(dense=records[7].dense, multivector=records[7].multivector[:16]), limit=1
    )[0]
    assert hit.id == 7
    store.close()


def test_shard_and_replication_options_pass_through(backend, tmp_path):
    name = _name(tmp_path, "sharded")
    _created.append(name)
    store = QdrantStore.create(
        name,
        url=URL,
        spec=CollectionSpec(dim=16, prefetch_dims=()),
        shard_number=2,
        replication_factor=1,
    )
    params = store._client.get_collection(name).config.params
    assert params.shard_number == 2 and params.replication_factor == 1
    store.close()


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_list_collections_of_the_server(backend, tmp_path, scheme):
    """``list_collections`` (and so the HTTP server's GET /v1/collections) on a server."""
    from urllib.parse import urlsplit

    from connectors.stores import list_collections

    store = backend.create(tmp_path, "listed", CollectionSpec(dim=32, prefetch_dims=(8,)))
    store.close()
    parts = urlsplit(URL)
    url = f"qdrant+{URL}" if scheme == "http" else f"qdrant+grpc://{parts.hostname}:6334"
    names = list_collections(url)
    assert _name(tmp_path, "listed") in names and names == sorted(names)

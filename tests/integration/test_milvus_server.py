"""The whole contract suite against a real Milvus server, when ``MILVUS_URI`` is set.

    MILVUS_URI=http://localhost:19530 [MILVUS_TOKEN=root:Milvus] pytest tests/integration

On Milvus >= 2.6.4 the collections get the struct layout (Array of Structs + MAX_SIM_COSINE,
MaxSim on the server); ``MILVUS_LAYOUT=token_rows`` runs the same suite on the token-row
layout. Every collection this module creates is dropped at the end. MILVUS_URI must be a
server URL: pymilvus itself reads that variable at import and rejects a Milvus Lite path.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))

from backends import Backend  # noqa: E402
from test_contract import *  # noqa: E402,F401,F403 - the contract's tests and fixtures, collected again here

from connectors import CollectionSpec  # noqa: E402
from connectors.milvus import Layout, MilvusStore  # noqa: E402
from connectors.milvus.convert import choose_layout  # noqa: E402

URI = os.environ.get("MILVUS_URI", "")
LAYOUT = os.environ.get("MILVUS_LAYOUT", "auto")
RUN = uuid.uuid4().hex[:8]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not URI,
        reason="MILVUS_URI is not set: no Milvus server to run the contract against "
        "(docker/ brings one up; e.g. MILVUS_URI=http://localhost:19530)",
    ),
]

_created: list[str] = []


def _name(tmp: Path, name: str) -> str:
    # Server collections outlive tmp folders: one unique name per test and run.
    return f"jvdb_it_{RUN}_{abs(hash(str(tmp))) % 10**8}_{name}"


def _create(tmp: Path, name: str, spec: CollectionSpec) -> MilvusStore:
    full = _name(tmp, name)
    _created.append(full)
    return MilvusStore.create(full, uri=URI, spec=spec, layout=LAYOUT)


def _open(tmp: Path, name: str) -> MilvusStore:
    return MilvusStore.open(_name(tmp, name), uri=URI)


@pytest.fixture(scope="module")
def backend():
    """Overrides the contract's backend list: only the server."""
    yield Backend(
        "milvus-server",
        _create,
        _open,
        embedded=False,
        lose_collection=lambda store: store.client.drop_collection(store.name),
    )
    cleanup = MilvusStore.create(
        f"jvdb_it_{RUN}_cleanup",
        uri=URI,
        spec=CollectionSpec(dim=8, prefetch_dims=(), multivector=False),
    )
    for name in [*_created, cleanup.name]:
        for collection in (name, f"{name}__tokens"):
            if cleanup.client.has_collection(collection):
                cleanup.client.drop_collection(collection)
    cleanup.close()


def test_server_gets_the_layout_its_version_supports(backend, tmp_path):
    store = backend.create(tmp_path, "layout", CollectionSpec(dim=64, prefetch_dims=(16,)))
    version = store.client.get_server_version()
    expected = choose_layout(version)[0] if LAYOUT == "auto" else Layout(LAYOUT)
    assert store.layout.kind is expected, version
    store.close()

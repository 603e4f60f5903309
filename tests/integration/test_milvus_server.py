"""The contract suite against a real Milvus server: ``MILVUS_URI``, or the local 2.3.5 one.

    python -m pytest tests/integration/test_milvus_server.py      # local Milvus 2.3.5 (PyPI milvus)
    MILVUS_URI=http://localhost:19530 [MILVUS_TOKEN=root:Milvus] python -m pytest tests/integration

Without ``MILVUS_URI`` the session's local server (``milvus_server`` in tests/conftest.py)
is used: Milvus 2.3.5 holds one vector field per collection, so the corpus has no
Matryoshka prefix and funnel-mode cases are skipped; collections get the token-row layout
with a Trie index. On Milvus >= 2.6.4 (docker/compose.yaml) the collections get the struct
layout; ``MILVUS_LAYOUT=token_rows`` runs the same suite on the token-row layout. Every
collection this module creates is dropped at the end. MILVUS_URI must be a server URL:
pymilvus itself reads that variable at import and rejects a Milvus Lite path.
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
from connectors.milvus.versions import choose_layout  # noqa: E402

URI = os.environ.get("MILVUS_URI", "")
LAYOUT = os.environ.get("MILVUS_LAYOUT", "auto")
RUN = uuid.uuid4().hex[:8]

pytestmark = [pytest.mark.integration]


def collection_name(tmp: Path, name: str) -> str:
    # Server collections outlive tmp folders: one unique name per test and run.
    return f"jvdb_it_{RUN}_{abs(hash(str(tmp))) % 10**8}_{name}"


@pytest.fixture(scope="module")
def server_uri(request: pytest.FixtureRequest) -> str:
    return URI or request.getfixturevalue("milvus_server").uri


@pytest.fixture(scope="module")
def backend(server_uri: str):
    """Overrides the contract's backend list: only the server."""
    created: list[str] = []

    def create(tmp: Path, name: str, spec: CollectionSpec) -> MilvusStore:
        created.append(collection_name(tmp, name))
        return MilvusStore.create(created[-1], uri=server_uri, spec=spec, layout=LAYOUT)

    def open_(tmp: Path, name: str) -> MilvusStore:
        return MilvusStore.open(collection_name(tmp, name), uri=server_uri)

    cleanup = MilvusStore.create(
        f"jvdb_it_{RUN}_cleanup",
        uri=server_uri,
        spec=CollectionSpec(dim=8, prefetch_dims=(), multivector=False),
    )
    multi = cleanup.server.multiple_vector_fields
    layout = choose_layout(cleanup.server)[0] if LAYOUT == "auto" else Layout(LAYOUT)
    features = {"multivector_dtype=float32"}
    if multi:
        features.add("muvera")
    if layout is Layout.PACKED:  # uint8 token codes are the packed layout's (packed.py)
        features.add("multivector_dtype=uint8")
    yield Backend(
        "milvus-server",
        create,
        open_,
        embedded=False,
        prefix_fields=multi,
        spec_features=frozenset(features),
        lose_collection=lambda store: store.client.drop_collection(store.name),
    )
    for name in [*created, cleanup.name]:
        for collection in (name, f"{name}__tokens"):
            if cleanup.client.has_collection(collection):
                cleanup.client.drop_collection(collection)
    cleanup.close()


def test_server_gets_the_layout_its_version_supports(backend, corpus, tmp_path):
    store = backend.create(tmp_path, "layout", corpus.spec)
    expected = choose_layout(store.server)[0] if LAYOUT == "auto" else Layout(LAYOUT)
    assert store.layout.kind is expected, store.server.version
    assert not store.server.lite, store.server.version  # "v2.3.5-lite" is a server
    store.close()

"""The contract suite against a real Milvus server: ``MILVUS_URI``, or the local 2.3.5 one.

    python -m pytest tests/integration/test_milvus_server.py      # local Milvus 2.3.5 (PyPI milvus)
    MILVUS_URI=http://localhost:19530 [MILVUS_TOKEN=root:Milvus] python -m pytest tests/integration

Without ``MILVUS_URI`` the session's local server (``milvus_server`` in tests/conftest.py)
is used: Milvus 2.3.5 holds one vector field per collection, so the corpus has no
Matryoshka prefix and funnel-mode cases are skipped; collections get the packed layout
with a Trie index. On Milvus >= 2.6.4 (docker/compose.yaml) the collections get the struct
layout (Array of Structs, MaxSim on the server): this is the only place its behaviour is
tested, and the struct-only tests below are skipped, saying why, on any other server;
``MILVUS_LAYOUT=packed`` or ``token_rows`` runs the same suite on a companion layout. Every
collection this module creates is dropped at the end. MILVUS_URI must be a server URL:
pymilvus itself reads that variable at import and rejects a Milvus Lite path.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))

from backends import Backend  # noqa: E402
from corpus import CONTRACT_MUVERA, make_corpus, planted_query, random_query  # noqa: E402
from recording import RecordingClient  # noqa: E402
from test_contract import *  # noqa: E402,F401,F403 - the contract's tests and fixtures, collected again here
from test_contract import modes  # noqa: E402

from connectors import CollectionSpec, Record, RecordError  # noqa: E402
from connectors.milvus import Layout, MilvusStore  # noqa: E402
from connectors.milvus import convert as cv  # noqa: E402
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
        extra={"layout": layout, "version": cleanup.server.version, "created": created},
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


# -- the requests a store sends, recorded on their way to the real server ----------------------
@pytest.fixture(scope="module")
def recorded(backend, server_uri):
    """make(name, spec, **create_kwargs) -> (store, RecordingClient): a store on the server
    through a real MilvusClient that logs every request (its answers are the server's)."""
    from pymilvus import MilvusClient

    client = RecordingClient(MilvusClient(uri=server_uri, token=os.environ.get("MILVUS_TOKEN", "")))

    def make(name: str, spec: CollectionSpec, **kwargs):
        full = f"jvdb_it_{RUN}_rec_{name}"
        backend.extra["created"].append(full)
        store = MilvusStore.create(full, client=client, spec=spec, layout=LAYOUT, **kwargs)
        return store, client

    yield make
    client.inner.close()


@pytest.fixture(scope="module")
def struct_only(backend):
    """Skips, saying why, unless the server gives collections the struct layout."""
    if backend.extra["layout"] is Layout.STRUCT:
        return
    if not URI:
        pytest.skip(
            "MILVUS_URI not set: the struct layout (Array of Structs, MAX_SIM_COSINE) needs "
            "Milvus >= 2.6.4, which no package installs; the local 2.3.5 server runs the packed "
            "layout (docker/compose.yaml starts 2.6.16: MILVUS_URI=http://localhost:19530)"
        )
    pytest.skip(
        f"Milvus {backend.extra['version']} at MILVUS_URI gives layout "
        f"{backend.extra['layout'].value!r}: the struct layout needs Milvus >= 2.6.4 "
        "and MILVUS_LAYOUT unset (auto) or 'struct'"
    )


@pytest.fixture(scope="module")
def struct_store(struct_only, recorded, corpus):
    store, client = recorded("struct", corpus.spec)
    store.upsert(corpus.records)
    return store, client


@pytest.mark.parametrize("level", [None, "Strong", "Bounded"])
def test_every_read_is_sent_with_the_store_consistency(backend, recorded, level):
    """Session by default: a store sees its own writes without the Strong wait per request."""
    if backend.prefix_fields:
        corpus = make_corpus(n=12, muvera=CONTRACT_MUVERA)
    else:  # Milvus 2.3: one vector field
        corpus = make_corpus(n=12, prefetch_dims=())
    kwargs = {"consistency_level": level} if level else {}
    store, client = recorded(f"consistency_{level}", corpus.spec, **kwargs)
    store.upsert(corpus.records)
    client.clear()
    for mode in modes(backend):
        store.search(planted_query(corpus, 3), mode=mode, limit=3)
    store.get([0, "doc-1"], with_vectors=True)
    store.count()
    reads = [(m, kw) for m, kw in client.requests if m in ("search", "query", "hybrid_search")]
    expected = {"search", "query"}
    if store.layout.kind is Layout.STRUCT:
        expected.add("hybrid_search")  # fusion: RRF on the server
    assert {m for m, _ in reads} == expected
    assert {kw.get("consistency_level") for _, kw in reads} == {level or "Session"}
    store.close()


def test_struct_hybrid_is_dense_then_server_side_maxsim_over_the_candidates(struct_store, corpus):
    store, client = struct_store
    query = random_query(seed=9)
    client.clear()
    hits = store.search(query, mode="hybrid", limit=5, prefetch_limit=10)
    dense_call, maxsim_call = client.sent("search")
    dense = (dense_call["anns_field"], dense_call["limit"], dense_call["filter"])
    assert dense == ("dense", 10, "")
    dense_top = [i for i, _ in corpus.dense_ranking(query)[:10]]
    assert (maxsim_call["anns_field"], maxsim_call["limit"]) == ("multi[vec]", 5)
    assert maxsim_call["filter"] == cv.in_expr("pk", [cv.encode_id(i) for i in dense_top])
    expected = [(i, s) for i, s in corpus.maxsim_ranking(query) if i in dense_top][:5]
    assert [h.id for h in hits] == [i for i, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], rtol=1e-3)


def test_struct_fusion_is_one_hybrid_search_with_rrf(struct_store, corpus):
    store, client = struct_store
    query = planted_query(corpus, 8)
    client.clear()
    hits = store.search(query, mode="fusion", limit=10, prefetch_limit=len(corpus.records))
    assert len(client.sent("search")) == 1 and len(client.sent("hybrid_search")) == 1
    expected = dict(corpus.rrf_ranking(query))
    assert hits[0].id == corpus.records[8].id
    for h in hits:
        assert h.score == pytest.approx(expected[h.id], rel=1e-3)


def test_struct_too_many_tokens_are_refused_and_nothing_written(struct_only, recorded):
    spec = CollectionSpec(dim=64, prefetch_dims=(16,))
    small, _ = recorded("small", spec, max_tokens=4)
    rng = np.random.default_rng(0)
    ok, too_long = (
        Record(i, rng.standard_normal(64), rng.standard_normal((t, 128)), {})
        for i, t in ((1, 4), (2, 5))
    )
    with pytest.raises(RecordError, match=r"record 1 id=2: multivector has 5 tokens; .*is 4"):
        small.upsert([ok, too_long])
    assert small.count() == 0
    small.upsert([ok])  # exactly max_tokens fits
    (got,) = small.get([1], with_vectors=True)
    assert got.multivector.shape == (4, 128)
    assert small.info()["max_tokens"] == 4
    small.close()

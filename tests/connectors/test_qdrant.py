"""Qdrant-specific behaviour: the schema actually created, ids, payloads, errors, batching.

The shared behaviour (ranking, filters, persistence...) is in test_contract.py.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from corpus import make_corpus, planted_query, random_query

from connectors import (
    AnyOf,
    CollectionNotFoundError,
    CollectionSpec,
    ConnectorError,
    Eq,
    MissingDependencyError,
    Record,
    RecordError,
    SchemaMismatchError,
    StoreLockedError,
    StoreUnavailableError,
    UnsupportedSpecError,
)
from connectors.qdrant import QdrantStore, convert, schema
from connectors.query import Query, build_plan, query_vectors
from connectors.records import ID_NAMESPACE, prepare_records

qdrant_client = pytest.importorskip("qdrant_client")
from qdrant_client import QdrantClient, models  # noqa: E402

SECRET = "s3cr3t-api-key-do-not-log"


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(20)


@pytest.fixture
def memory_client():
    client = QdrantClient(":memory:")
    yield client
    client.close()


# -- the schema as created -------------------------------------------------------------------
def test_edge_schema(tmp_path):
    spec = CollectionSpec(
        dim=256,
        prefetch_dims=(32, 64),
        quantization="int8",
        multivector_quantization="binary",
        multivector_on_disk=True,
        dense_on_disk=False,
    )
    QdrantStore.create("s", path=tmp_path, spec=spec).close()
    config = json.loads((tmp_path / "s" / "shard" / "edge_config.json").read_text())
    vectors = config["vectors"]
    assert set(vectors) == {"dense", "dense_32", "dense_64", "multi"}
    assert vectors["dense"]["size"] == 256 and vectors["dense"]["distance"] == "Cosine"
    assert "int8" in json.dumps(vectors["dense"]["quantization_config"]).lower()
    assert vectors["dense_64"]["size"] == 64
    multi = vectors["multi"]
    assert multi["size"] == 128 and multi["distance"] == "Cosine"
    assert multi["multivector_config"]["comparator"] == "max_sim"
    assert multi["datatype"] == "float16"
    assert multi["hnsw_config"]["m"] == 0
    assert "binary" in json.dumps(multi["quantization_config"]).lower()
    assert (
        json.loads((tmp_path / "s" / "jina_vdb.json").read_text())["jina_vdb"]["spec"]
        == spec.to_dict()
    )


def test_client_schema_and_metadata(memory_client):
    # Local mode keeps everything in RAM: the placements resolve to False (True is refused).
    spec = CollectionSpec(dim=256, prefetch_dims=(32,))
    QdrantStore.create("s", client=memory_client, spec=spec).close()
    config = memory_client.get_collection("s").config
    vectors = config.params.vectors
    assert set(vectors) == {"dense", "dense_32", "multi"}
    assert vectors["dense"].size == 256 and vectors["dense"].distance == models.Distance.COSINE
    assert vectors["dense"].quantization_config is None
    multi = vectors["multi"]
    assert multi.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
    assert multi.hnsw_config.m == 0
    assert multi.datatype == models.Datatype.FLOAT16
    assert not multi.on_disk and multi.quantization_config is None
    stored = spec.with_storage(multivector_on_disk=False, dense_on_disk=False)
    assert config.metadata["jina_vdb"]["spec"] == stored.to_dict()


@pytest.mark.parametrize(
    "dense, tokens", [("int8", "binary"), ("binary", "int8"), ("none", "int8")]
)
def test_client_quantization_schema_read_back(memory_client, dense, tokens):
    """The vector params a server gets, and a spec derived from them (no metadata)."""
    spec = CollectionSpec(
        dim=64, prefetch_dims=(16,), quantization=dense, multivector_quantization=tokens
    )
    vectors = schema.client_vectors_config(spec)
    kinds = {"int8": models.ScalarQuantization, "binary": models.BinaryQuantization}
    for name, value in (("dense", dense), ("multi", tokens)):
        config = vectors[name].quantization_config
        assert config is None if value == "none" else isinstance(config, kinds[value]), name
    assert vectors["dense_16"].quantization_config is None  # prefixes are small: never
    # local mode stores the params (it ignores them): enough to read a spec back from them
    memory_client.create_collection("foreign", vectors_config=vectors)
    derived = QdrantStore.open("foreign", client=memory_client).spec
    assert (derived.quantization.value, derived.multivector_quantization.value) == (dense, tokens)


@pytest.mark.parametrize(
    "option", [{"quantization": "int8"}, {"multivector_quantization": "binary"}]
)
def test_local_mode_refuses_quantization_it_would_ignore(memory_client, tmp_path, option):
    for where in ({"client": memory_client}, {"local": str(tmp_path / "local")}):
        with pytest.raises(UnsupportedSpecError, match="local mode does not implement"):
            QdrantStore.create("q", **where, **option)
    assert not memory_client.collection_exists("q")


def test_float32_multivector_and_dense_only_schema(memory_client):
    QdrantStore.create(
        "f32",
        client=memory_client,
        spec=CollectionSpec(dim=64, prefetch_dims=(), multivector_dtype="float32"),
    )
    assert (
        memory_client.get_collection("f32").config.params.vectors["multi"].datatype
        == models.Datatype.FLOAT32
    )
    QdrantStore.create(
        "d", client=memory_client, spec=CollectionSpec(dim=64, prefetch_dims=(), multivector=False)
    )
    assert set(memory_client.get_collection("d").config.params.vectors) == {"dense"}


def test_spec_derived_from_a_collection_without_metadata(memory_client, corpus):
    spec = corpus.spec
    memory_client.create_collection("foreign", vectors_config=schema.client_vectors_config(spec))
    store = QdrantStore.open("foreign", client=memory_client)
    assert spec.differences(store.spec) == []  # the placements are read back: in RAM
    assert store.spec.multivector_on_disk is False and store.spec.dense_on_disk is False
    with pytest.raises(SchemaMismatchError, match="prefetch_dims"):
        QdrantStore.create(
            "foreign", client=memory_client, spec=CollectionSpec(dim=256, prefetch_dims=(64,))
        )
    memory_client.create_collection(
        "plain", vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE)
    )
    with pytest.raises(SchemaMismatchError, match="'dense'"):
        QdrantStore.open("plain", client=memory_client)


# -- client= ----------------------------------------------------------------------------------
def test_user_client_works_and_stays_open(memory_client, corpus):
    with QdrantStore.create("docs", client=memory_client, spec=corpus.spec) as store:
        store.upsert(corpus.records)
        hits = store.search(planted_query(corpus, 5), limit=3)
        assert hits[0].id == corpus.records[5].id
    assert memory_client.count("docs").count == len(corpus.records)  # not closed by the store
    reopened = QdrantStore.open("docs", client=memory_client)
    assert not corpus.spec.differences(reopened.spec) and reopened.count() == len(corpus.records)
    reopened.drop()
    assert not memory_client.collection_exists("docs")


def test_not_a_client_refused():
    with pytest.raises(TypeError, match="QdrantClient"):
        QdrantStore.create("x", client=object())


# -- ids and payloads ------------------------------------------------------------------------
def test_string_ids_are_stable_uuid5_and_come_back_typed(memory_client, corpus):
    store = QdrantStore.create("ids", client=memory_client, spec=corpus.spec)
    store.upsert(corpus.records[:4])  # ids 0, "doc-1", 2, "doc-3"
    expected = str(uuid.uuid5(ID_NAMESPACE, "doc-1"))
    assert convert.point_id("doc-1") == expected and convert.point_id(2) == 2
    (raw,) = memory_client.retrieve("ids", [expected], with_payload=True)
    assert raw.payload["_jvdb_id"] == "doc-1"  # stored, so results can return the user's id
    assert sorted(str(p.id) for p in memory_client.scroll("ids", limit=10)[0]) == sorted(
        ["0", "2", expected, str(uuid.uuid5(ID_NAMESPACE, "doc-3"))]
    )
    assert [r.id for r in store.get(["doc-1", 2])] == ["doc-1", 2]


@pytest.mark.parametrize("where", ["edge", "client"])
def test_reserved_id_key_never_leaks(where, tmp_path, memory_client, corpus):
    store = (
        QdrantStore.create("leak", path=tmp_path, spec=corpus.spec)
        if where == "edge"
        else QdrantStore.create("leak", client=memory_client, spec=corpus.spec)
    )
    store.upsert(corpus.records)
    hits = [
        h
        for mode in ("dense", "multivector", "hybrid", "funnel", "fusion")
        for h in store.search(random_query(), mode=mode, limit=20)
    ]
    assert any(isinstance(h.id, str) for h in hits)
    assert all("_jvdb_id" not in h.payload for h in hits)
    records = store.get([r.id for r in corpus.records], with_vectors=True)
    assert all("_jvdb_id" not in r.payload for r in records)
    assert [r.payload for r in records] == [r.payload for r in corpus.records]
    with pytest.raises(RecordError, match="reserved"):
        store.upsert(
            [Record("x", corpus.records[0].dense, corpus.records[0].multivector, {"_jvdb_id": "y"})]
        )
    store.close()


# -- filters the contract does not cover -------------------------------------------------------
@pytest.mark.parametrize("where", ["edge", "client"])
def test_boolean_filters(where, tmp_path, memory_client):
    spec = CollectionSpec(dim=8, prefetch_dims=(), multivector=False)
    store = (
        QdrantStore.create("b", path=tmp_path, spec=spec)
        if where == "edge"
        else QdrantStore.create("b", client=memory_client, spec=spec)
    )
    rng = np.random.default_rng(0)
    payloads = [{"flag": True}, {"flag": False}, {"flag": 1}, {"flag": [False, 3]}, {}]
    store.upsert([Record(i, rng.standard_normal(8), None, p) for i, p in enumerate(payloads)])
    for flt in (
        Eq("flag", True),
        Eq("flag", False),
        Eq("flag", 1),
        AnyOf("flag", (True, False)),
        ~Eq("flag", False),
    ):
        expected = {i for i, p in enumerate(payloads) if flt.matches(p)}
        hits = store.search(random_query(dim=8), mode="dense", limit=10, filter=flt)
        assert {h.id for h in hits} == expected, flt
        assert store.count(flt) == len(expected)
    store.close()


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "transport", [{"grpc_port": 1}, {"prefer_grpc": False}], ids=["grpc", "rest"]
)
def test_unreachable_server_names_the_url_never_the_key(transport, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreUnavailableError) as err:
        QdrantStore.create("x", url="http://127.0.0.1:1", api_key=SECRET, timeout=5, **transport)
    message = str(err.value)
    assert "127.0.0.1" in message
    assert SECRET not in message and SECRET not in repr(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert SECRET not in caplog.text
    monkeypatch.setenv("QDRANT_API_KEY", SECRET)
    with pytest.raises(StoreUnavailableError) as err:
        QdrantStore.open("x", url="http://user:pw@127.0.0.1:1/", timeout=5, **transport)
    assert SECRET not in str(err.value) and "pw" not in str(err.value)
    assert SECRET not in caplog.text


def test_edge_folder_locked_in_the_same_process(tmp_path, corpus):
    store = QdrantStore.create("l", path=tmp_path, spec=corpus.spec)
    with pytest.raises(StoreLockedError, match=str(tmp_path)):
        QdrantStore.open("l", path=tmp_path)
    store.close()
    QdrantStore.open("l", path=tmp_path).close()  # released on close


def test_local_folder_locked(tmp_path, corpus):
    store = QdrantStore.create("l", local=tmp_path, spec=corpus.spec)
    with pytest.raises(StoreLockedError, match=str(tmp_path)):
        QdrantStore.open("l", local=tmp_path)
    store.close()


def test_open_missing_collection(tmp_path, memory_client):
    with pytest.raises(CollectionNotFoundError, match="nope"):
        QdrantStore.open("nope", path=tmp_path)
    with pytest.raises(CollectionNotFoundError, match="nope"):
        QdrantStore.open("nope", client=memory_client)


def test_argument_errors(tmp_path, memory_client):
    with pytest.raises(ValueError, match="one of"):
        QdrantStore.create("x", path=tmp_path, client=memory_client)
    with pytest.raises(ValueError, match="spec="):
        QdrantStore.create(
            "x", path=tmp_path, spec=CollectionSpec(dim=64, prefetch_dims=()), dim=32
        )
    with pytest.raises(ValueError, match="servers"):
        QdrantStore.create("x", path=tmp_path, shard_number=2)
    with pytest.raises(ValueError, match="collection name"):
        QdrantStore.create("../escape", path=tmp_path)


def test_closed_store_says_so(tmp_path, corpus):
    store = QdrantStore.create("c", path=tmp_path, spec=corpus.spec)
    store.close()
    store.close()  # idempotent
    with pytest.raises(ConnectorError, match="closed"):
        store.count()


def test_missing_package_gives_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "qdrant_edge", None)  # import qdrant_edge -> ImportError
    with pytest.raises(
        MissingDependencyError, match=r"qdrant-edge-py.*pip install 'jina-vdb\[qdrant\]'"
    ):
        QdrantStore.create("x", path=tmp_path, spec=CollectionSpec(dim=8, prefetch_dims=()))


def test_default_location_is_qdrant_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    QdrantStore.create(
        "here", spec=CollectionSpec(dim=8, prefetch_dims=(), multivector=False)
    ).close()
    assert (tmp_path / "qdrant_data" / "here" / "jina_vdb.json").exists()


# -- writes -----------------------------------------------------------------------------------
def _count_writes(store, monkeypatch) -> list[int]:
    sizes: list[int] = []
    original = store._write

    def counting(records):
        sizes.append(len(records))
        original(records)

    monkeypatch.setattr(store, "_write", counting)
    return sizes


@pytest.mark.parametrize("where", ["edge", "client"])
def test_writes_are_bounded_by_bytes(where, tmp_path, memory_client, monkeypatch):
    spec = CollectionSpec(dim=64, prefetch_dims=())
    store = (
        QdrantStore.create("big", path=tmp_path, spec=spec)
        if where == "edge"
        else QdrantStore.create("big", client=memory_client, spec=spec)
    )
    rng = np.random.default_rng(0)
    # 1000 float16 tokens = 256 KB per record: 3 records fit in 800 KB, a 4th does not.
    records = [
        Record(i, rng.standard_normal(64), rng.standard_normal((1000, 128)), {"i": i})
        for i in range(10)
    ]
    store.max_request_bytes = 800 * 1024
    sizes = _count_writes(store, monkeypatch)
    assert store.upsert(records) == 10
    assert sizes == [3, 3, 3, 1]
    assert all(
        sum(r.nbytes for r in prepare_records(records[:n], spec)) <= store.max_request_bytes
        for n in sizes
    )
    assert store.count() == 10
    store.close()


def test_server_request_budget_stays_under_32_mib():
    from connectors.qdrant.client import GRPC_REQUEST_BYTES, REST_REQUEST_BYTES, ClientQdrantStore

    # gRPC sends float16 token vectors as 4-byte floats (x2); JSON needs ~20 characters (x10).
    assert 2 * GRPC_REQUEST_BYTES < 32 * 2**20
    assert 10 * REST_REQUEST_BYTES < 32 * 2**20
    # Only the settings are exercised here: no connection is made.
    store = ClientQdrantStore(
        "x", CollectionSpec(dim=8, prefetch_dims=()), None, owns_client=False, where=""
    )
    store._describe({"url": "http://h:6333", "prefer_grpc": True, "grpc_port": 6334})
    assert (
        store.max_request_bytes == GRPC_REQUEST_BYTES
        and store.where == "http://h:6333 (gRPC port 6334)"
    )
    store._describe({"url": "http://h:6333", "prefer_grpc": False})
    assert store.max_request_bytes == REST_REQUEST_BYTES and store.where == "http://h:6333"


def test_transient_server_fault_is_retried(memory_client, corpus, monkeypatch):
    from qdrant_client.http.exceptions import ResponseHandlingException

    store = QdrantStore.create("retry", client=memory_client, spec=corpus.spec)
    calls = {"n": 0}
    upsert = memory_client.upsert

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ResponseHandlingException(ConnectionResetError("connection reset"))
        return upsert(*args, **kwargs)

    monkeypatch.setattr(memory_client, "upsert", flaky)
    monkeypatch.setattr("connectors.base.time.sleep", lambda s: None)
    store.upsert(corpus.records[:5])
    assert calls["n"] == 2 and store.count() == 5


def test_edge_optimizes_after_enough_bytes_and_on_close(tmp_path, corpus, monkeypatch):
    store = QdrantStore.create("o", path=tmp_path, spec=corpus.spec)
    calls: list[int] = []
    optimize = store.optimize
    monkeypatch.setattr(store, "optimize", lambda: (calls.append(store._pending), optimize())[1])
    store.optimize_bytes = sum(r.nbytes for r in prepare_records(corpus.records[:8], corpus.spec))
    store.upsert(corpus.records[:5])
    assert calls == [] and store.info()["pending_optimize"] == 5
    store.upsert(corpus.records[5:10])  # >= 8 records' bytes: one optimize, not one per batch
    assert calls == [10]
    store.upsert(corpus.records[10:12])
    hits = store.search(planted_query(corpus, 11), limit=1)  # visible before any optimize
    assert hits[0].id == corpus.records[11].id
    store.close()
    assert calls == [10, 2]


def test_upsert_overwrites_string_ids_across_instances(tmp_path, corpus):
    with QdrantStore.create("u", path=tmp_path, spec=corpus.spec) as store:
        store.upsert(corpus.records[:6])
    with QdrantStore.open("u", path=tmp_path) as store:
        store.upsert(corpus.records[:6])
        assert store.count() == 6
        info = store.info()
        assert (
            info["engine"] == "qdrant-edge"
            and info["count"] == 6
            and info["path"] == str(tmp_path / "u")
        )


def test_schema_mismatch_writes_nothing(tmp_path, corpus):
    QdrantStore.create("m", path=tmp_path, spec=corpus.spec).close()
    before = (tmp_path / "m" / "jina_vdb.json").read_bytes()
    with pytest.raises(SchemaMismatchError, match="dim: existing=256, requested=128"):
        QdrantStore.create("m", path=tmp_path, spec=CollectionSpec(dim=128, prefetch_dims=(32,)))
    assert (tmp_path / "m" / "jina_vdb.json").read_bytes() == before


def test_spec_file_without_shard_heals(tmp_path, corpus):
    QdrantStore.create("h", path=tmp_path, spec=corpus.spec).close()
    import shutil

    shutil.rmtree(tmp_path / "h" / "shard")  # as if a crash hit between the two steps
    with QdrantStore.open("h", path=tmp_path) as store:
        assert store.count() == 0
        store.upsert(corpus.records[:2])
        assert store.count() == 2


def test_paths_accept_pathlike(tmp_path: Path, corpus):
    with QdrantStore.create("p", local=tmp_path / "local", spec=corpus.spec) as store:
        assert "local mode" in store.info()["where"]


@pytest.mark.parametrize("where", ["edge", "client"])
def test_request_filter_reaches_the_prefetch(where, tmp_path, memory_client, corpus):
    """The filter is set once per request: Qdrant must apply it to the dense prefetch too."""
    store = (
        QdrantStore.create("f", path=tmp_path, spec=corpus.spec)
        if where == "edge"
        else QdrantStore.create("f", client=memory_client, spec=corpus.spec)
    )
    store.upsert(corpus.records)
    flt = Eq("lang", "de")  # a third of the corpus
    matching = len(corpus.subset(flt))
    # An unfiltered top-6 prefetch would leave ~2 matching candidates for the rerank.
    hits = store.search(random_query(), mode="hybrid", limit=6, prefetch_limit=6, filter=flt)
    assert len(hits) == min(6, matching)
    assert all(h.payload["lang"] == "de" for h in hits)
    store.close()


@pytest.mark.parametrize("flavour", ["edge", "client"])
def test_quantized_stages_rescore_with_oversampling(flavour):
    """A stage on a quantized field asks for rescoring with the originals (servers get the
    same request as qdrant-edge: local mode, the only engine the suite has, refuses it)."""
    spec = CollectionSpec(
        dim=64, prefetch_dims=(16,), quantization="binary", multivector_quantization="int8"
    )
    plan = build_plan(spec, "funnel", limit=5, prefetch_limit=20, filter=None)
    query = Query(dense=np.ones(64, np.float32), multivector=np.ones((3, 128), np.float32))
    vectors = query_vectors(query, spec, plan)
    rescoring = convert.Rescoring(schema.quantized_fields(spec), oversampling=3.0)
    assert rescoring.fields == {"dense", "multi"}
    if flavour == "edge":
        request = convert.edge_request(plan, vectors, hnsw_ef=64, rescoring=rescoring)
        top, (dense,) = request.params, request.prefetches
        (prefix,) = dense.prefetches
        params = {"multi": top, "dense": dense.params, "dense_16": prefix.params}
    else:
        kwargs = convert.client_query(plan, vectors, hnsw_ef=64, rescoring=rescoring)
        (dense,) = kwargs["prefetch"]
        (prefix,) = dense.prefetch
        params = {
            "multi": kwargs["search_params"],
            "dense": dense.params,
            "dense_16": prefix.params,
        }
    for field in ("multi", "dense"):
        quant = params[field].quantization
        assert quant.rescore is True and quant.oversampling == 3.0, field
    assert params["dense_16"].quantization is None  # Matryoshka prefixes are never quantized
    assert params["dense_16"].hnsw_ef >= 64  # the beam, raised to the stage limit
    plain = convert.client_query(plan, vectors, hnsw_ef=None)
    assert plain["search_params"] is None  # no quantization, no graph: nothing to ask

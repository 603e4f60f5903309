"""The packed token layout (connectors/milvus/packed.py) on Milvus Lite: rows, limits, reads.

The contract suite (test_contract.py) runs every search mode on it, since it is Milvus Lite's
default; these tests look at what only this layout does: how documents split into rows,
what is recorded, which requests touch the token collection, and old token-row collections.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from corpus import make_corpus, planted_query, random_query
from recording import RecordingClient

from connectors import CollectionSpec, ConnectorError, Query, Record, token_codec
from connectors.errors import CollectionNotFoundError, UnsupportedSpecError
from connectors.milvus import Layout, MilvusStore
from connectors.milvus import convert as cv
from connectors.milvus import packed as pk
from connectors.vectors import l2_normalize

SPEC = CollectionSpec(dim=32, prefetch_dims=(8,))


def _rows(store: MilvusStore, key: str | None = None) -> list[dict]:
    expr = f'{pk.DOC_ID} == "{key}"' if key else ""
    return store.client.query(
        f"{store.name}__tokens", filter=expr, output_fields=[pk.DOC_ID, pk.BLOB], limit=16384
    )


def _record(i: int, tokens: int, seed: int = 0) -> Record:
    rng = np.random.default_rng(seed * 1000 + i)
    return Record(
        i,
        l2_normalize(rng.standard_normal(SPEC.dim)),
        l2_normalize(rng.standard_normal((tokens, 128))),
        {"i": i, "seed": seed},
    )


def planted_query_of(record: Record) -> Query:
    """A query made of a record's own vectors (its best match under every mode)."""
    return Query(dense=record.dense, multivector=record.multivector[:16])


def _stored(record: Record, dtype=np.float16) -> np.ndarray:
    return l2_normalize(record.multivector).astype(dtype).astype(np.float32)


@pytest.fixture
def store(tmp_path):
    s = MilvusStore.create("docs", uri=str(tmp_path / "m.db"), spec=SPEC)
    yield s
    s.close()


def test_rows_hold_191_float16_tokens_and_long_documents_take_several(store):
    assert store.layout.kind is Layout.PACKED and store.layout.tokens_per_row == 191
    sizes = [1, 191, 192, 500, 1000]  # 1000 tokens: 256 KB of float16, 4x a VARCHAR's limit
    records = [_record(i, n) for i, n in enumerate(sizes)]
    store.upsert(records)
    for r, n in zip(records, sizes, strict=True):
        rows = _rows(store, cv.encode_id(r.id))
        assert len(rows) == -(-n // 191)
        assert all(len(row[pk.BLOB]) <= pk.BLOB_MAX_CHARS for row in rows)
    got = {r.id: r for r in store.get([r.id for r in records], with_vectors=True)}
    for r in records:
        np.testing.assert_array_equal(got[r.id].multivector, _stored(r))  # bit-exact float16


def test_float32_rows_hold_95_tokens_and_round_trip_exactly(tmp_path):
    spec = CollectionSpec(dim=32, prefetch_dims=(8,), multivector_dtype="float32")
    store = MilvusStore.create("f32", uri=str(tmp_path / "m.db"), spec=spec)
    record = _record(0, 200)
    store.upsert([record])
    assert store.layout.tokens_per_row == 95 and len(_rows(store)) == 3
    (got,) = store.get([0], with_vectors=True)
    np.testing.assert_array_equal(got.multivector, _stored(record, np.float32))
    store.close()


def test_uint8_rows_hold_383_token_codes_read_back_as_the_codecs_floats(tmp_path):
    """uint8 tokens (token_codec.py) pack 1 byte per dimension: a 300-token document is one
    row; reads give ``from_codes`` of the stored codes, as Qdrant's uint8 stores do."""
    spec = CollectionSpec(dim=32, prefetch_dims=(8,), multivector_dtype="uint8")
    store = MilvusStore.create("u8", uri=str(tmp_path / "m.db"), spec=spec)
    records = [_record(0, 300), _record(1, 400)]
    store.upsert(records)
    assert store.layout.tokens_per_row == 383
    assert [len(_rows(store, cv.encode_id(r.id))) for r in records] == [1, 2]
    got = {r.id: r for r in store.get([0, 1], with_vectors=True)}
    for r in records:
        codes = token_codec.to_codes(l2_normalize(r.multivector))
        np.testing.assert_array_equal(got[r.id].multivector, token_codec.from_codes(codes))
    store.close()
    reopened = MilvusStore.open("u8", uri=str(tmp_path / "m.db"))
    assert reopened.spec.multivector_dtype.value == "uint8"
    assert reopened.search(planted_query_of(records[1]), mode="hybrid", limit=1)[0].id == 1
    reopened.close()


@pytest.mark.parametrize("layout", ["token_rows", "struct"])
def test_uint8_tokens_outside_the_packed_layout_are_refused_before_anything_is_created(
    tmp_path, layout
):
    spec = CollectionSpec(dim=32, prefetch_dims=(8,), multivector_dtype="uint8")
    uri = str(tmp_path / "m.db")
    with pytest.raises(UnsupportedSpecError, match="uint8.*needs the packed layout"):
        MilvusStore.create("u8", uri=uri, spec=spec, layout=layout)
    with pytest.raises(CollectionNotFoundError):
        MilvusStore.open("u8", uri=uri)


def test_upserting_the_same_records_twice_changes_nothing(store):
    records = [_record(i, n) for i, n in enumerate([5, 300, 40])]
    store.upsert(records)
    first = sorted((r[pk.DOC_ID], r[pk.BLOB]) for r in _rows(store))
    store.upsert(records)
    assert sorted((r[pk.DOC_ID], r[pk.BLOB]) for r in _rows(store)) == first
    assert store.count() == 3 and len(first) == 1 + 2 + 1


def test_shrinking_and_deleting_leave_no_rows_behind(store):
    store.upsert([_record(0, 500), _record(1, 30)])
    store.upsert([_record(0, 20, seed=1)])  # 3 rows -> 1, new generation
    assert len(_rows(store, "i:0")) == 1
    (got,) = store.get([0], with_vectors=True)
    np.testing.assert_array_equal(got.multivector, _stored(_record(0, 20, seed=1)))
    store.delete([0])
    assert _rows(store, "i:0") == [] and len(_rows(store, "i:1")) == 1
    assert store.count() == 1


def test_layout_and_row_capacity_are_recorded_and_read_back(tmp_path, monkeypatch):
    """A collection keeps the capacity it was made with, whatever this version's default."""
    uri = str(tmp_path / "m.db")
    monkeypatch.setattr(pk, "BLOB_MAX_CHARS", 2800)  # 2100 bytes: rows of 8 float16 tokens
    store = MilvusStore.create("small", uri=uri, spec=SPEC)
    record = _record(0, 20)
    store.upsert([record])
    props = store.client.describe_collection("small")["properties"]
    assert props[cv.PROP_LAYOUT] == "packed" and props[pk.PROP_TOKENS_PER_ROW] == "8"
    assert json.loads(props[cv.PROP_SPEC])["multivector_dtype"] == "float16"
    store.close()
    monkeypatch.undo()
    reopened = MilvusStore.open("small", uri=uri)
    assert reopened.layout.kind is Layout.PACKED and reopened.layout.tokens_per_row == 8
    assert reopened.info()["layout"] == "packed"
    (got,) = reopened.get([0], with_vectors=True)  # loads the token collection
    np.testing.assert_array_equal(got.multivector, _stored(record))
    assert len(_rows(reopened)) == 3
    reopened.close()


def test_hybrid_and_multivector_scores_equal_the_token_row_layout(tmp_path):
    corpus = make_corpus(n=40)
    scores = {}
    for layout in ("packed", "token_rows"):
        store = MilvusStore.create(
            layout, uri=str(tmp_path / "m.db"), spec=corpus.spec, layout=layout
        )
        store.upsert(corpus.records)
        query = planted_query(corpus, 7)
        scores[layout] = [
            [(h.id, round(h.score, 5)) for h in store.search(query, mode=mode, limit=10)]
            for mode in ("hybrid", "multivector", "fusion")
        ]
        store.close()
    assert scores["packed"] == scores["token_rows"]
    expected = corpus.maxsim_ranking(planted_query(corpus, 7))[:10]
    assert [i for i, _ in scores["packed"][1]] == [i for i, _ in expected]


def test_multivector_mode_scans_in_bounded_requests(tmp_path):
    """No dense prefetch: every document's rows stream through, ``rows_per_fetch`` a request."""
    from pymilvus import MilvusClient

    corpus = make_corpus(n=30)
    client = RecordingClient(MilvusClient(str(tmp_path / "m.db")))
    store = MilvusStore.create("scan", client=client, spec=corpus.spec)
    client.watch_engine(store)
    store.upsert(corpus.records)
    store.layout.rows_per_fetch = 4
    client.clear()
    query = random_query()
    hits = store.search(query, mode="multivector", limit=30)
    fetches = [c for c in client.calls if c[1] == "scan__tokens" and c[0] == "engine"]
    assert len(fetches) == -(-30 // 4)  # 30 documents of <= 24 tokens: 30 rows, 4 a request
    expected = corpus.maxsim_ranking(query)
    assert [h.id for h in hits] == [i for i, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], rtol=1e-5)
    store.close()
    client.inner.close()


def test_count_info_and_dense_search_never_name_the_token_collection(tmp_path):
    """Milvus Lite loads a whole collection into memory the first time a request names it."""
    from pymilvus import MilvusClient

    corpus = make_corpus(n=20)
    uri = str(tmp_path / "m.db")
    writer = MilvusStore.create("docs", uri=uri, spec=corpus.spec)
    writer.upsert(corpus.records)
    writer.close()
    client = RecordingClient(MilvusClient(uri))
    store = MilvusStore.open("docs", client=client)
    client.watch_engine(store)
    store.info()
    store.count()
    store.search(planted_query(corpus, 3), mode="dense", limit=5)
    assert not [c for c in client.calls if "__tokens" in str(c[1])], client.calls
    store.search(planted_query(corpus, 3), mode="hybrid", limit=5)
    assert [c for c in client.calls if c[1] == "docs__tokens" and c[0] == "engine"]
    store.close()
    client.inner.close()


def test_a_damaged_row_is_a_clear_error_naming_it(store):
    store.upsert([_record(0, 10)])
    (row,) = _rows(store, "i:0")
    key = store.client.query("docs__tokens", filter="", output_fields=["pk"])[0]["pk"]
    store.client.upsert(
        "docs__tokens",
        [{"pk": key, pk.DOC_ID: "i:0", pk.BLOB: row[pk.BLOB][:-8], pk.STUB: [0.0, 0.0]}],
    )
    with pytest.raises(ConnectorError, match=r"token row .*i:0.* not whole 128-d float16"):
        store.get([0], with_vectors=True)


def test_token_rows_collections_stay_readable_with_a_warning(tmp_path, caplog):
    corpus = make_corpus(n=20)
    uri = str(tmp_path / "m.db")
    old = MilvusStore.create("old", uri=uri, spec=corpus.spec, layout="token_rows")
    old.upsert(corpus.records[:10])
    old.close()
    with caplog.at_level(logging.WARNING, logger="connectors.milvus"):
        store = MilvusStore.create("old", uri=uri, spec=corpus.spec)  # auto: opens it as it is
    assert store.layout.kind is Layout.TOKEN_ROWS
    assert "token_rows layout" in caplog.text and "re-ingest" in caplog.text
    store.upsert(corpus.records[10:])
    query = planted_query(corpus, 12)
    assert store.search(query, mode="hybrid", limit=1)[0].id == corpus.records[12].id
    store.close()
    with pytest.raises(Exception, match="layout 'token_rows', not 'packed'"):
        MilvusStore.create("old", uri=uri, spec=corpus.spec, layout="packed")


def test_a_token_vector_wider_than_a_row_is_refused():
    wide = CollectionSpec(dim=32, prefetch_dims=(), multivector_dim=40_000)
    with pytest.raises(UnsupportedSpecError, match="layout='token_rows'"):
        pk.tokens_per_row(wide)


def _answers(store: MilvusStore, corpus) -> list:
    query = planted_query(corpus, 4)
    searches = [
        [(h.id, h.score, h.payload) for h in store.search(query, mode=mode, limit=8)]
        for mode in ("hybrid", "multivector", "fusion")
    ]
    ids = [r.id for r in corpus.records]
    tokens = {r.id: r.multivector for r in store.get(ids, with_vectors=True)}
    return [searches, {i: t.tolist() for i, t in tokens.items()}]


def test_lite_reads_token_rows_from_its_engine_with_the_answers_of_grpc(tmp_path):
    """The in-process engine (lite_engine.py) and the gRPC path return the same rows."""
    corpus = make_corpus(n=30)
    store = MilvusStore.create("docs", uri=str(tmp_path / "m.db"), spec=corpus.spec)
    store.upsert(corpus.records)
    assert store._target.engine is not None
    direct = _answers(store, corpus)
    store._target.engine = None  # what milvus-lite 2 (a C++ subprocess) gets
    assert _answers(store, corpus) == direct
    assert direct[0][1][0][0] == corpus.maxsim_ranking(planted_query(corpus, 4))[0][0]
    store.close()


def test_a_failing_engine_read_warns_and_goes_through_grpc(tmp_path, caplog):
    from connectors.milvus.lite_engine import LiteEngine

    corpus = make_corpus(n=20)
    store = MilvusStore.create("docs", uri=str(tmp_path / "m.db"), spec=corpus.spec)
    store.upsert(corpus.records)
    expected = _answers(store, corpus)
    store._target.engine = LiteEngine(store._target.engine._db, database="no_such_database")
    with caplog.at_level(logging.WARNING, logger="connectors.milvus"):
        assert _answers(store, corpus) == expected
    assert "reading token rows from Milvus Lite's engine failed" in caplog.text
    assert store._target.engine is None  # once: later reads go through gRPC directly
    store.close()

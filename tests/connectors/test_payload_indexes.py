"""Payload indexes on every backend: a hint that never changes results, recorded and reopened.

Each backend gets the same corpus twice, once with indexes on ``lang`` / ``kind`` (keyword),
``page`` (integer), ``weight`` (float) and ``flag`` (bool) and once without; every filter
(including ones whose value has another type than the index, and negations over records
that lack an indexed key) must give the same hits and scores on both, and the Python
reference's set.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
from backends import BACKENDS, Backend
from corpus import Corpus, make_corpus, random_query

from connectors import (
    AnyOf,
    CollectionSpec,
    Eq,
    Not,
    PayloadType,
    Range,
    RecordError,
    SchemaMismatchError,
)
from connectors.milvus import convert as milvus_convert

INDEXES = {
    "lang": "keyword",
    "kind": "keyword",
    "page": "integer",
    "weight": "float",
    "flag": "bool",
}
FILTERS = {
    "eq": Eq("lang", "de"),
    "any_of_ints": AnyOf("page", (1, 3, 5)),
    "range_int": Range("page", gte=2, lt=5),
    "range_float_bound": Range("page", gt=1.5, lte=4.5),
    "range_float_field": Range("weight", gte=0.25, lt=0.75),
    "bool": Eq("flag", True),
    "not_missing_key": Not(Eq("page", 3)),  # every fifth record has no page
    "not_range": ~Range("page", lte=2),
    "and_not": Eq("kind", "even") & ~Eq("lang", "en"),
    "or": Eq("lang", "fr") | Range("page", lte=0),
    "other_type_value": Eq("page", "3") | Eq("lang", 1) | Eq("flag", True),
    "range_on_keyword": Range("lang", gte=0) | Eq("kind", "odd"),
    "unindexed_list": Eq("tags", "t2") & Eq("flag", False),
}


def indexed_corpus() -> Corpus:
    """The contract corpus with a float and a bool field, and ``page`` missing on every 5th."""
    base = make_corpus()
    records = []
    for i, r in enumerate(base.records):
        payload = {**r.payload, "weight": (i % 8) / 8, "flag": i % 3 == 0}
        if i % 5 == 0:
            del payload["page"]
        records.append(replace(r, payload=payload))
    return Corpus(spec=base.spec, records=records)


@pytest.fixture(params=sorted(BACKENDS), scope="module")
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return indexed_corpus()


@pytest.fixture(scope="module")
def pair(backend: Backend, corpus: Corpus, tmp_path_factory: pytest.TempPathFactory):
    """(indexed, plain) stores holding the same corpus."""
    tmp = tmp_path_factory.mktemp(f"idx-{backend.name}")
    spec = corpus.spec if backend.prefix_fields else replace(corpus.spec, prefetch_dims=())
    # two folders: an embedded store (qdrant-client local mode) locks its folder
    for sub in ("i", "p"):
        (tmp / sub).mkdir()
    indexed = backend.create(tmp / "i", "indexed", replace(spec, payload_indexes=INDEXES))
    plain = backend.create(tmp / "p", "plain", spec)
    for store in (indexed, plain):
        store.upsert(corpus.records)
    yield indexed, plain
    indexed.close()
    plain.close()


@pytest.mark.parametrize("name", sorted(FILTERS))
@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_filtered_results_identical_with_and_without_indexes(pair, corpus, name, mode):
    indexed, plain = pair
    flt = FILTERS[name]
    n = len(corpus.records)
    query = random_query(seed=5)
    got = indexed.search(query, mode=mode, limit=n, prefetch_limit=n, filter=flt)
    want = plain.search(query, mode=mode, limit=n, prefetch_limit=n, filter=flt)
    assert {r.id for r in corpus.subset(flt)}, "the filter should select something"
    assert [h.id for h in got] == [h.id for h in want]
    assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
    assert {h.id for h in got} == {r.id for r in corpus.subset(flt)}
    assert indexed.count(flt) == plain.count(flt) == len(corpus.subset(flt))
    assert {r.id for r in indexed.scan(flt)} == {r.id for r in corpus.subset(flt)}


def test_indexes_are_recorded_and_read_back(pair, backend, corpus, tmp_path):
    indexed, _ = pair
    want = tuple(sorted((k, PayloadType(t)) for k, t in INDEXES.items()))
    assert indexed.spec.payload_indexes == want
    spec = replace(corpus.spec, prefetch_dims=(), payload_indexes={"lang": "keyword"})
    store = backend.create(tmp_path, "roundtrip", spec)
    store.upsert(corpus.records[:5])
    store.close()
    reopened = backend.open(tmp_path, "roundtrip")
    assert reopened.spec.payload_indexes == (("lang", PayloadType.KEYWORD),)
    assert reopened.spec.to_dict()["payload_indexes"] == {"lang": "keyword"}
    assert reopened.count(Eq("lang", "de")) == sum(
        r.payload["lang"] == "de" for r in corpus.records[:5]
    )
    reopened.close()


def test_adding_indexes_to_an_existing_collection_is_idempotent(backend, corpus, tmp_path):
    spec = replace(corpus.spec, prefetch_dims=())
    store = backend.create(tmp_path, "grow", spec)
    store.upsert(corpus.records)
    flt = Eq("kind", "odd") & Range("page", gte=3)
    before = store.search(random_query(), mode="hybrid", limit=60, prefetch_limit=60, filter=flt)
    store.close()
    # create() with more indexes opens the collection and adds them, nothing else changes
    grown = backend.create(tmp_path, "grow", replace(spec, payload_indexes={"kind": "keyword"}))
    assert grown.spec.payload_indexes == (("kind", PayloadType.KEYWORD),)
    assert grown.add_payload_indexes({"kind": "keyword", "page": "integer"}) == (
        ("page", PayloadType.INTEGER),
    )
    assert grown.add_payload_indexes({"kind": "keyword"}) == ()  # already there
    after = grown.search(random_query(), mode="hybrid", limit=60, prefetch_limit=60, filter=flt)
    assert [h.id for h in after] == [h.id for h in before]
    with pytest.raises(
        SchemaMismatchError, match="'kind': existing='keyword', requested='integer'"
    ):
        grown.add_payload_indexes({"kind": "integer"})
    grown.close()
    reopened = backend.open(tmp_path, "grow")
    assert dict(reopened.spec.payload_indexes) == {
        "kind": PayloadType.KEYWORD,
        "page": PayloadType.INTEGER,
    }
    assert reopened.count() == len(corpus.records)
    reopened.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(["de", "en"], "list"), (3, "int"), (True, "bool")],
)
def test_indexed_field_of_another_type_is_refused_naming_it(
    backend, corpus, tmp_path, value, expected
):
    spec = replace(corpus.spec, prefetch_dims=(), payload_indexes={"lang": "keyword"})
    store = backend.create(tmp_path, "typed", spec)
    bad = replace(corpus.records[3], payload={**corpus.records[3].payload, "lang": value})
    with pytest.raises(RecordError, match=r"record 1 .*payload\['lang'\] is indexed as keyword"):
        store.upsert([corpus.records[0], bad])
    with pytest.raises(RecordError, match=f"got {expected}"):
        store.upsert([bad])
    assert store.count() == 0  # nothing of the batch was written
    store.upsert([replace(bad, payload={"kind": "odd"})])  # absent: fine
    assert store.count(Not(Eq("lang", "de"))) == 1
    store.close()


# -- backend specifics: the index is really built (or the fallback says so) ---------------
def test_qdrant_edge_builds_the_payload_indexes(corpus, tmp_path):
    from connectors.qdrant import QdrantStore

    spec = replace(corpus.spec, payload_indexes=INDEXES)
    with QdrantStore.create("built", path=tmp_path, spec=spec) as store:
        store.upsert(corpus.records)
        assert store.info()["payload_indexes"] == INDEXES


def test_qdrant_local_mode_warns_that_it_builds_none(corpus, tmp_path, caplog):
    from connectors.qdrant import QdrantStore

    spec = replace(corpus.spec, payload_indexes={"lang": "keyword"})
    with caplog.at_level(logging.WARNING, logger="connectors.qdrant.client"):
        store = QdrantStore.create("local", local=str(tmp_path), spec=spec)
    store.close()
    assert "local mode has no payload indexes" in caplog.text
    assert "lang" in caplog.text


def test_milvus_lite_keeps_indexed_fields_in_indexed_columns(corpus, tmp_path, caplog):
    from connectors.milvus import MilvusStore

    spec = replace(corpus.spec, payload_indexes=INDEXES)
    store = MilvusStore.create("cols", uri=str(tmp_path / "m.db"), spec=spec)
    store.upsert(corpus.records)
    columns = store.info()["payload_index_columns"]
    assert columns == {f"pf_{k}": t for k, t in INDEXES.items()}
    indexes = set(store.client.list_indexes("cols"))
    assert {f"pf_{k}" for k in INDEXES} <= indexes | {i.removesuffix("_inv") for i in indexes}
    rows = store.client.query("cols", filter='pk == "i:0"', output_fields=["pf_page", "pf_lang"])
    assert rows[0]["pf_page"] is None and rows[0]["pf_lang"] == "en"  # record 0 has no page
    store.close()
    # added later: no column can be added, so a WARNING says the field stays unindexed
    with caplog.at_level(logging.WARNING, logger="connectors.milvus.store"):
        grown = MilvusStore.create(
            "cols",
            uri=str(tmp_path / "m.db"),
            spec=replace(spec, payload_indexes={"tags2": "keyword"}),
        )
    assert "cannot add columns" in caplog.text and "tags2" in caplog.text
    grown.close()


def test_milvus_filter_reads_a_column_only_when_it_answers_exactly():
    columns = {"page": PayloadType.INTEGER, "lang": PayloadType.KEYWORD}
    expr = milvus_convert.filter_expr
    assert expr(Eq("page", 3), columns) == "(pf_page is not null and pf_page == 3)"
    assert expr(AnyOf("lang", ("de", "fr")), columns) == (
        '(pf_lang is not null and pf_lang in ["de", "fr"])'
    )
    assert "payload" in expr(Eq("page", "3"), columns)  # another type: the JSON answers
    assert "payload" in expr(Range("lang", gte=1), columns)
    assert "payload" in expr(Eq("tags", "t2"), columns)  # not indexed


def test_spec_validates_and_serialises_payload_indexes():
    spec = CollectionSpec(payload_indexes={"page": "integer", "meta.lang": "keyword"})
    assert spec.payload_indexes == (
        ("meta.lang", PayloadType.KEYWORD),
        ("page", PayloadType.INTEGER),
    )
    assert CollectionSpec.from_dict(spec.to_dict()) == spec
    assert CollectionSpec.from_dict({"dim": 2048}).payload_indexes == ()  # older specs
    assert not spec.differences(CollectionSpec())  # a hint: reconciled, not compared
    with pytest.raises(ValueError, match="type must be one of 'keyword', 'integer'"):
        CollectionSpec(payload_indexes={"page": "int"})
    with pytest.raises(ValueError, match="keys are payload field names"):
        CollectionSpec(payload_indexes={"a b": "keyword"})


def test_milvus_columns_of_two_keys_must_differ(tmp_path: Path):
    from connectors.errors import UnsupportedSpecError
    from connectors.milvus import MilvusStore

    spec = CollectionSpec(
        dim=64, prefetch_dims=(), payload_indexes={"a.b": "keyword", "a__b": "keyword"}
    )
    with pytest.raises(UnsupportedSpecError, match="both map to the Milvus column 'pf_a__b'"):
        MilvusStore.create("clash", uri=str(tmp_path / "m.db"), spec=spec)

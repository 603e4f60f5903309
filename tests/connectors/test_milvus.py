"""Milvus connector: translation units and Milvus Lite specifics (the struct layout's requests:
test_milvus_requests.py; its behaviour on a Milvus >= 2.6.4 server: tests/integration)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from corpus import make_corpus, planted_query, random_query
from recording import RecordingClient

from connectors import (
    AnyOf,
    CollectionSpec,
    Eq,
    MissingDependencyError,
    Not,
    Range,
    Record,
    RecordError,
    SchemaMismatchError,
    StoreUnavailableError,
)
from connectors.errors import UnsupportedSpecError
from connectors.milvus import Layout, MilvusStore
from connectors.milvus import convert as cv
from connectors.milvus import token_rows as tr
from connectors.milvus.versions import ServerInfo, choose_layout

REPO = Path(__file__).resolve().parents[2]
SPEC = CollectionSpec(dim=64, prefetch_dims=(16,))


# -- ids -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "record_id", [0, 7, 2**63 - 1, "7", "i:7", "a#1", "s:", 'dé jà "q" \\ \n', "x" * 1000]
)
def test_ids_round_trip_with_their_type(record_id):
    key = cv.encode_id(record_id)
    back = cv.decode_id(key)
    assert back == record_id and type(back) is type(record_id)


def test_int_and_string_ids_never_collide():
    assert cv.encode_id(7) != cv.encode_id("7")


def test_too_long_id_is_a_record_error_before_anything_is_written(tmp_path):
    store = MilvusStore.create(
        "ids",
        uri=str(tmp_path / "m.db"),
        spec=CollectionSpec(dim=8, prefetch_dims=(), multivector=False),
    )
    good = Record(1, np.ones(8), None, {})
    with pytest.raises(RecordError, match=r"record 1 id=.*id is too long"):
        store.upsert([good, Record("é" * 600, np.ones(8), None, {})])
    assert store.count() == 0
    store.close()


# -- filter expressions ------------------------------------------------------------------------
def test_filter_expressions_are_exact():
    p = 'payload["lang"]'
    assert (
        cv.filter_expr(Eq("lang", "de"))
        == f'((exists {p}) and ({p} == "de" or json_contains_any({p}, ["de"])))'
    )
    q = 'payload["page"]'
    assert cv.filter_expr(AnyOf("page", (1, 3))) == (
        f"((exists {q}) and ({q} == 1 or {q} == 3 or json_contains_any({q}, [1, 3])))"
    )
    assert (
        cv.filter_expr(Range("page", gte=2, lt=5.5)) == f"((exists {q}) and {q} >= 2 and {q} < 5.5)"
    )
    assert cv.filter_expr(Eq("meta.ok", True)) == (
        '((exists payload["meta"]["ok"]) and (payload["meta"]["ok"] == true'
        ' or json_contains_any(payload["meta"]["ok"], [true])))'
    )
    both = cv.filter_expr(Eq("a", 1) & ~Eq("b", 2) | Range("c", gt=0))
    assert (
        both.startswith("((")
        and ' and (not ((exists payload["b"])' in both
        and both.endswith(" > 0))")
    )


def test_strings_are_escaped_for_both_grammars():
    assert cv.quote_string('a"b\\c\nd\te\rf') == '"a\\"b\\\\c\\nd\\te\\rf"'
    assert cv.quote_string("dé jà 東京") == '"dé jà 東京"'  # no \u escapes: Milvus Lite has none
    assert (
        cv.literal(1e-7) == "0.0000001" and cv.literal(False) == "false" and cv.literal(-3) == "-3"
    )
    assert cv.in_expr("pk", ['s:a"b', "i:1"]) == 'pk in ["s:a\\"b", "i:1"]'


PAYLOADS = [
    {"lang": "en", "page": 1, "tags": ["t1", "all"], "meta": {"page": 4}},
    {"lang": "de", "page": 3, "tags": "t2"},
    {"lang": 'he said "hi" \\ \n', "page": 2.5, "tags": ["t2"]},
    {"lang": "dé jà", "page": 7},
    {"tags": []},
    {},
]
FILTERS = [
    Eq("lang", "de"),
    Eq("lang", 'he said "hi" \\ \n'),
    Eq("lang", "dé jà"),
    Eq("tags", "t2"),
    Eq("meta.page", 4),
    AnyOf("tags", ("t1", "zz")),
    AnyOf("page", (1, 7)),
    Range("page", gt=1, lte=3),
    Not(Eq("lang", "en")),
    Not(Eq("meta.page", 4)),
    Not(AnyOf("tags", ("t2",))),
    Eq("lang", "de") | Range("page", gte=7),
    Not(Eq("lang", "de") | Eq("lang", "en")) & Not(Eq("tags", "t1")),
]


def test_filters_on_milvus_lite_match_the_python_reference(tmp_path):
    """Missing keys, lists, nested keys and quoting: Milvus Lite agrees with Filter.matches."""
    spec = CollectionSpec(dim=8, prefetch_dims=(), multivector=False)
    store = MilvusStore.create("flt", uri=str(tmp_path / "m.db"), spec=spec)
    rng = np.random.default_rng(0)
    store.upsert([Record(i, rng.standard_normal(8), None, p) for i, p in enumerate(PAYLOADS)])
    for flt in FILTERS:
        expected = {i for i, p in enumerate(PAYLOADS) if flt.matches(p)}
        hits = store.search(random_query(dim=8), mode="dense", limit=10, filter=flt)
        assert {h.id for h in hits} == expected, (flt, cv.filter_expr(flt))
        assert store.count(flt) == len(expected), flt
    store.close()


# -- capability detection ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "version, layout",
    [
        ("milvus_lite-3.2.2", Layout.PACKED),
        ("v2.6.4", Layout.STRUCT),
        ("v2.6.4-lite", Layout.STRUCT),  # a server whose build is tagged "lite" is a server
        ("v2.6.10-gpu", Layout.STRUCT),
        ("2.7.0-rc1", Layout.STRUCT),
        ("v2.6.3", Layout.PACKED),
        ("v2.5.14", Layout.PACKED),
        ("v2.3.5-lite", Layout.PACKED),
        ("Zilliz Cloud (Compatible with Milvus 2.6)", Layout.PACKED),
        ("unknown", Layout.PACKED),
    ],
)
def test_layout_follows_the_server_version(version, layout):
    assert choose_layout(ServerInfo.detect(version, lite_uri=False))[0] is layout


@pytest.mark.parametrize(
    "version, lite_uri, lite, multi_vector, varchar_index",
    [
        ("milvus_lite-3.2.2", False, True, True, "INVERTED"),
        ("v2.6.0", True, True, True, "INVERTED"),  # a .db path is Lite whatever it reports
        ("v2.3.5-lite", False, False, False, "Trie"),
        ("v2.4.0", False, False, True, "INVERTED"),
        ("v2.6.16", False, False, True, "INVERTED"),
    ],
)
def test_server_capabilities_by_version(version, lite_uri, lite, multi_vector, varchar_index):
    info = ServerInfo.detect(version, lite_uri=lite_uri)
    assert (info.lite, info.multiple_vector_fields, info.varchar_index) == (
        lite,
        multi_vector,
        varchar_index,
    )


def test_specs_a_server_cannot_hold_are_refused_naming_versions():
    old = ServerInfo.detect("v2.3.5-lite", lite_uri=False)
    old.check_supported(CollectionSpec(dim=8, prefetch_dims=()), "docs")
    with pytest.raises(UnsupportedSpecError, match=r"v2\.3\.5-lite.*Milvus >= 2\.4\.0") as err:
        old.check_supported(CollectionSpec(dim=8, prefetch_dims=(4,)), "docs")
    assert "dense, dense_4" in str(err.value) and "'docs'" in str(err.value)
    with pytest.raises(UnsupportedSpecError, match=r"v2\.3\.5-lite.*Milvus >= 2\.4\.0") as err:
        old.check_supported(CollectionSpec(dim=8, prefetch_dims=(), muvera=True), "docs")
    assert "(dense, muvera)" in str(err.value) and "muvera=None (no muvera mode)" in str(err.value)
    with pytest.raises(UnsupportedSpecError, match=r"v2\.2\.16.*Milvus >= 2\.3\.0"):
        ServerInfo.detect("v2.2.16", lite_uri=False).check_supported(
            CollectionSpec(dim=8, prefetch_dims=()), "docs"
        )


@pytest.mark.parametrize(
    "version, lite_uri, says",
    [
        ("milvus_lite-3.2.2", False, r"Milvus Lite cannot keep \w+ vectors on disk.*no mmap"),
        ("v2.3.5-lite", False, r"server v2\.3\.5-lite .*only server-wide.*queryNode\.mmapDirPath"),
        ("v2.4.0", False, r"v2\.4\.0 .*properties\('<name>__tokens', \{'mmap\.enabled': True"),
        ("unknown", False, r"alter_collection_properties.*queryNode\.mmap\.vectorField"),
    ],
)
def test_on_disk_is_refused_saying_what_each_milvus_can_do(version, lite_uri, says):
    policy = ServerInfo.detect(version, lite_uri=lite_uri).storage_policy()
    for field in ("multivector_on_disk", "dense_on_disk"):
        with pytest.raises(UnsupportedSpecError, match=f"{field}=True") as err:
            policy.apply(CollectionSpec(dim=8, prefetch_dims=(), **{field: True}))
        assert re.search(says, str(err.value)), str(err.value)
    resolved = policy.apply(CollectionSpec(dim=8, prefetch_dims=(), multivector_on_disk=False))
    assert (resolved.multivector_on_disk, resolved.dense_on_disk) == (False, False)


def test_auto_layout_on_milvus_lite_is_packed_and_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="connectors.milvus"):
        store = MilvusStore.create("auto", uri=str(tmp_path / "m.db"), spec=SPEC)
    assert store.layout.kind is Layout.PACKED
    assert any(
        "packed" in r.getMessage() and "Milvus Lite" in r.getMessage() for r in caplog.records
    )
    store.close()
    reopened = MilvusStore.open("auto", uri=str(tmp_path / "m.db"))
    assert reopened.layout.kind is Layout.PACKED and not SPEC.differences(reopened.spec)
    with pytest.raises(SchemaMismatchError, match="layout 'packed', not 'struct'"):
        MilvusStore.create("auto", uri=str(tmp_path / "m.db"), spec=SPEC, layout="struct")
    reopened.close()


def test_struct_forced_on_milvus_lite_is_caught_not_silently_dropped(tmp_path):
    """Milvus Lite accepts an Array of Structs field and leaves it out of the collection."""
    uri = str(tmp_path / "m.db")
    with pytest.raises(SchemaMismatchError, match=r"dropped the Array of Structs field 'multi'"):
        MilvusStore.create("forced", uri=uri, spec=SPEC, layout="struct")
    probe = MilvusStore.create(
        "probe", uri=uri, spec=CollectionSpec(dim=8, prefetch_dims=(), multivector=False)
    )
    assert not probe.client.has_collection("forced")  # nothing half-made is left behind
    probe.close()


# -- token rows: writes, interruptions ----------------------------------------------------------
def _token_rows(store: MilvusStore, record_id, fields=(tr.DOC_ID,)) -> list[dict]:
    name = tr.companion_name(store.name)
    return store.client.query(
        name,
        filter=f'{tr.DOC_ID} == "{cv.encode_id(record_id)}"',
        output_fields=list(fields),
        limit=16384,
    )


@pytest.mark.parametrize("layout, field", [("packed", "blob"), ("token_rows", tr.VEC)])
def test_companion_hybrid_takes_three_round_trips(tmp_path, layout, field):
    """Dense candidates come with n_tokens; then their token vectors (packed rows: from Milvus
    Lite's engine, not through gRPC); then the final payloads."""
    from pymilvus import MilvusClient

    corpus = make_corpus(n=20)
    client = RecordingClient(MilvusClient(str(tmp_path / "m.db")))
    store = MilvusStore.create("rt", client=client, spec=corpus.spec, layout=layout)
    if layout == "packed":
        client.watch_engine(store)
    store.upsert(corpus.records)
    client.clear()
    hits = store.search(planted_query(corpus, 5), mode="hybrid", limit=3, prefetch_limit=10)
    assert hits[0].id == corpus.records[5].id
    assert client.calls == [
        ("search", "rt", (tr.N_TOKENS, cv.TOKEN_GEN)),
        ("engine" if layout == "packed" else "query", "rt__tokens", (field,)),
        ("query", "rt", (cv.PAYLOAD,)),
    ]
    store.close()
    client.inner.close()


def test_shrinking_a_document_deletes_its_extra_token_rows(tmp_path):
    corpus = make_corpus(n=4, dim=64, prefetch_dims=(16,))
    store = MilvusStore.create(
        "shrink", uri=str(tmp_path / "m.db"), spec=corpus.spec, layout="token_rows"
    )
    r = corpus.records[0]
    store.upsert([Record(r.id, r.dense, np.vstack([r.multivector] * 3), r.payload)])
    store.upsert([r])
    assert sorted(row[tr.POS] for row in _token_rows(store, r.id, [tr.POS])) == list(
        range(len(r.multivector))
    )
    store.close()


@pytest.mark.parametrize("layout", ["packed", "token_rows"])
def test_interrupted_write_is_invisible_then_repaired_by_rerunning(tmp_path, monkeypatch, layout):
    corpus = make_corpus(n=6, dim=64, prefetch_dims=(16,))
    store = MilvusStore.create("crash", uri=str(tmp_path / "m.db"), spec=corpus.spec, layout=layout)
    store.upsert(corpus.records[:3])
    real_upsert = store.client.upsert

    def crash_on_documents(name, rows, **kw):
        if name == "crash":
            raise RuntimeError("killed")
        return real_upsert(name, rows, **kw)

    monkeypatch.setattr(store.client, "upsert", crash_on_documents)
    with pytest.raises(RuntimeError):
        store.upsert(corpus.records[3:])  # token rows written, documents rows not
    monkeypatch.undo()
    assert store.count() == 3  # the new documents are not visible
    hits = store.search(random_query(dim=64), mode="multivector", limit=10)
    assert {h.id for h in hits} == {
        r.id for r in corpus.records[:3]
    }  # orphan token rows are ignored
    store.upsert(corpus.records[3:])  # re-run
    assert store.count() == 6
    per_row = store.layout.tokens_per_row if layout == "packed" else 1
    for r in corpus.records[3:]:
        assert len(_token_rows(store, r.id)) == -(-len(r.multivector) // per_row)
    query = planted_query(corpus, 4)
    expected = corpus.maxsim_ranking(query)
    hits = store.search(query, mode="multivector", limit=6)
    assert [h.id for h in hits] == [i for i, _ in expected]
    store.close()


# -- connections ---------------------------------------------------------------------------------
def test_unreachable_server_names_the_uri_never_the_token(monkeypatch):
    monkeypatch.setenv("MILVUS_TOKEN", "env-s3cret")
    start = time.monotonic()
    for kwargs in ({"token": "arg-s3cret"}, {}):
        with pytest.raises(StoreUnavailableError) as err:
            MilvusStore.create("x", uri="http://127.0.0.1:1", timeout=2, **kwargs)
        message = str(err.value)
        assert "http://127.0.0.1:1" in message and "s3cret" not in message
        assert err.value.__cause__ is None  # no chained exception carrying connection details
    with pytest.raises(StoreUnavailableError) as err:
        MilvusStore.open("x", uri="http://root:pw-s3cret@127.0.0.1:1", timeout=2)
    assert "***@127.0.0.1:1" in str(err.value) and "s3cret" not in str(err.value)
    assert time.monotonic() - start < 20


def test_missing_pymilvus_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'jina-vdb\[milvus\]'"):
        cv.pymilvus()


def test_importing_the_backend_imports_neither_pymilvus_nor_torch():
    code = (
        "import sys, connectors.milvus; "
        "print(sorted(m for m in ('pymilvus', 'torch', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.stdout.strip() == "[]"


def test_closing_the_last_store_frees_the_lite_file_for_other_processes(tmp_path):
    uri = str(tmp_path / "m.db")
    store = MilvusStore.create("free", uri=uri, spec=SPEC)
    other = MilvusStore.open("free", uri=uri)
    store.close()
    code = (
        "from connectors.milvus import MilvusStore; "
        f"MilvusStore.open('free', uri={uri!r}).close(); print('OPENED')"
    )

    def run() -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    assert "StoreLockedError" in run().stderr  # `other` still holds it
    other.close()
    assert "OPENED" in run().stdout


def test_a_lite_connection_forgets_schemas_pymilvus_cached_for_its_port(tmp_path: Path) -> None:
    """pymilvus caches schemas per host:port, and a Lite server's free port may have served
    another file: the stale "docs" schema (an extra column here) must not reach this file's
    "docs" (it made upserts carry fields the collection lacks)."""
    from pymilvus.client.cache import GlobalCache

    from connectors.milvus.connection import connect

    first = connect(str(tmp_path / "lite.db"))
    try:
        endpoint = first.client._get_connection().server_address
        GlobalCache.schema.set(endpoint, "", "docs", {"fields": [{"name": "pf_stale"}]})
        second = connect(str(tmp_path / "lite.db"))  # the same server, so the same port
        try:
            assert GlobalCache.schema.get(endpoint, "", "docs") is None
            corpus = make_corpus(n=6)
            with MilvusStore.create("docs", client=second.client, spec=corpus.spec) as store:
                store.upsert(corpus.records)
                assert store.count() == 6
        finally:
            second.close()
    finally:
        first.close()

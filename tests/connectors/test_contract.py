"""One contract, every backend: the same scenarios and the same exact numpy answers.

Backends come from ``backends.BACKENDS``; server backends join when their URL is set
(tests/integration). A backend passes when it behaves like the numpy reference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from backends import BACKENDS, Backend
from corpus import CONTRACT_MUVERA, Corpus, make_corpus, planted_query, random_query

from connectors import (
    AnyOf,
    CollectionNotFoundError,
    CollectionSpec,
    ConnectorError,
    Eq,
    MuveraParams,
    Not,
    Query,
    QueryError,
    Range,
    Record,
    RecordError,
    SchemaMismatchError,
    SearchMode,
    UnsupportedSpecError,
)
from connectors.pooling import pool_tokens
from connectors.vectors import maxsim_many

REPO = Path(__file__).resolve().parents[2]
ALL_MODES = list(SearchMode)


@pytest.fixture(params=sorted(BACKENDS), scope="module")
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


@pytest.fixture(scope="module")
def corpus(backend: Backend) -> Corpus:
    if backend.prefix_fields:
        return make_corpus(muvera=CONTRACT_MUVERA)
    return make_corpus(prefetch_dims=())


#: Modes whose first stage is a vector field of its own (dense_<k>, muvera).
EXTRA_FIELD_MODES = (SearchMode.FUNNEL, SearchMode.MUVERA)


def modes(backend: Backend) -> list[SearchMode]:
    """The modes a backend's collections can run (funnel and muvera need one more field)."""
    return [m for m in ALL_MODES if backend.prefix_fields or m not in EXTRA_FIELD_MODES]


@pytest.fixture(autouse=True)
def mode_supported(request: pytest.FixtureRequest) -> None:
    """A funnel / muvera case on a backend with one vector field is skipped, saying why."""
    callspec = getattr(request.node, "callspec", None)
    mode = callspec.params.get("mode") if callspec is not None else None
    if mode is None or "backend" not in request.fixturenames:
        return
    backend = request.getfixturevalue("backend")
    if SearchMode(mode) not in modes(backend):
        pytest.skip(f"{backend.name}: one vector field per collection, no {mode} mode")


@pytest.fixture(scope="module")
def filled(backend: Backend, corpus: Corpus, tmp_path_factory: pytest.TempPathFactory):
    """One store per backend with the whole corpus, shared by the read-only tests."""
    tmp = tmp_path_factory.mktemp(backend.name)
    store = backend.create(tmp, "contract", corpus.spec)
    store.upsert(corpus.records)
    yield store
    store.close()


def ids(hits) -> list:
    return [h.id for h in hits]


# -- ranking ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("planted", [3, 17, 42])
def test_planted_document_ranks_first(filled, corpus, mode, planted):
    query = planted_query(corpus, planted)
    hits = filled.search(query, mode=mode, limit=5, prefetch_limit=20)
    assert hits, f"{mode}: no hits"
    assert hits[0].id == corpus.records[planted].id
    assert hits[0].payload == corpus.records[planted].payload
    assert len(hits) == 5


def test_dense_scores_equal_numpy(filled, corpus):
    query = random_query()
    hits = filled.search(query, mode="dense", limit=10)
    expected = corpus.dense_ranking(query)[:10]
    assert ids(hits) == [i for i, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-4)


def test_maxsim_scores_equal_numpy(filled, corpus):
    query = random_query(seed=11)
    hits = filled.search(query, mode="multivector", limit=len(corpus.records))
    expected = dict(corpus.maxsim_ranking(query))
    assert len(hits) == len(corpus.records)
    np.testing.assert_allclose(
        [h.score for h in hits], [expected[h.id] for h in hits], rtol=1e-3, atol=1e-3
    )
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("mode", ["hybrid", "funnel", "muvera"])
def test_cascades_equal_exhaustive_maxsim_when_prefetch_covers_all(filled, corpus, mode):
    query = random_query(seed=5)
    hits = filled.search(query, mode=mode, limit=8, prefetch_limit=len(corpus.records))
    expected = corpus.maxsim_ranking(query)[:8]
    assert ids(hits) == [i for i, _ in expected]
    np.testing.assert_allclose(
        [h.score for h in hits], [s for _, s in expected], rtol=1e-3, atol=1e-3
    )


def test_hybrid_reranks_only_the_dense_candidates(filled, corpus):
    query = random_query(seed=9)
    dense_top = [i for i, _ in corpus.dense_ranking(query)[:10]]
    hits = filled.search(query, mode="hybrid", limit=5, prefetch_limit=10)
    assert set(ids(hits)) <= set(dense_top)
    expected = [(i, s) for i, s in corpus.maxsim_ranking(query) if i in dense_top][:5]
    assert ids(hits) == [i for i, _ in expected]
    np.testing.assert_allclose(
        [h.score for h in hits], [s for _, s in expected], rtol=1e-3, atol=1e-3
    )


@pytest.mark.parametrize("mode", ["muvera"])
def test_muvera_reranks_only_the_encoding_candidates(filled, corpus, mode):
    """The first stage is the MUVERA dot product (numpy reference), the second exact MaxSim."""
    query = random_query(seed=9)
    first = [i for i, _ in corpus.muvera_ranking(query)[:10]]
    hits = filled.search(query, mode=mode, limit=5, prefetch_limit=10)
    expected = [(i, s) for i, s in corpus.maxsim_ranking(query) if i in first][:5]
    assert ids(hits) == [i for i, _ in expected]
    np.testing.assert_allclose(
        [h.score for h in hits], [s for _, s in expected], rtol=1e-3, atol=1e-3
    )


def test_fusion_equals_rrf_of_dense_and_maxsim(filled, corpus):
    query = planted_query(corpus, 8)
    hits = filled.search(query, mode="fusion", limit=10, prefetch_limit=len(corpus.records))
    expected = dict(corpus.rrf_ranking(query))
    assert hits[0].id == corpus.records[8].id
    for h in hits:
        assert h.score == pytest.approx(expected[h.id], rel=1e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


# -- filters ---------------------------------------------------------------------------
FILTERS = {
    "eq": Eq("lang", "de"),
    "any_of": AnyOf("page", (1, 3, 5)),
    "range": Range("page", gte=2, lt=5),
    "and_not": Eq("kind", "even") & ~Eq("lang", "en"),
    "or": Eq("lang", "fr") | Range("page", lte=0),
    "list_field": Eq("tags", "t2"),
    "not_any": Not(AnyOf("lang", ("en", "fr"))),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
@pytest.mark.parametrize("mode", ["dense", "hybrid", "funnel", "muvera"])
def test_filters_match_python_reference(filled, corpus, name, mode):
    flt = FILTERS[name]
    query = random_query(seed=3)
    n = len(corpus.records)
    hits = filled.search(query, mode=mode, limit=n, prefetch_limit=n, filter=flt)
    expected_ids = {r.id for r in corpus.subset(flt)}
    assert expected_ids, "the filter should select something"
    assert set(ids(hits)) == expected_ids
    assert all(flt.matches(h.payload) for h in hits)
    assert filled.count(flt) == len(expected_ids)


def test_count_and_get(filled, corpus):
    assert filled.count() == len(corpus.records)
    wanted = [corpus.records[5].id, corpus.records[2].id, "no-such-id", 999_999]
    got = filled.get(wanted, with_vectors=True)
    assert [r.id for r in got] == wanted[:2]
    for rec in got:
        original = next(r for r in corpus.records if r.id == rec.id)
        assert rec.payload == original.payload
        np.testing.assert_allclose(rec.dense[: corpus.spec.dim], original.dense, atol=1e-5)
        np.testing.assert_allclose(rec.multivector, corpus.stored_tokens(original), atol=1e-3)
    (bare,) = filled.get(wanted[:1])
    assert bare.dense is None and bare.multivector is None
    assert bare.payload == corpus.records[5].payload


@pytest.mark.parametrize("name", ["eq", "and_not", None])
def test_scan_lists_every_matching_record_with_its_payload(filled, corpus, name):
    flt = FILTERS[name] if name else None
    expected = {r.id: r.payload for r in (corpus.subset(flt) if flt else corpus.records)}
    scanned = list(filled.scan(flt, page_size=3))  # several pages
    assert len(scanned) == len(expected)
    assert {r.id: r.payload for r in scanned} == expected
    assert all(r.dense is None and r.multivector is None for r in scanned)


def test_ids_keep_their_type(filled, corpus):
    hits = filled.search(planted_query(corpus, 2), mode="dense", limit=3)
    assert isinstance(hits[0].id, int) and hits[0].id == 2
    hits = filled.search(planted_query(corpus, 3), mode="dense", limit=3)
    assert hits[0].id == "doc-3"


# -- writes ----------------------------------------------------------------------------
@pytest.fixture
def fresh(backend: Backend, corpus: Corpus, tmp_path: Path):
    store = backend.create(tmp_path, "fresh", corpus.spec)
    yield store
    store.close()


def test_reupsert_overwrites_never_duplicates(fresh, corpus):
    fresh.upsert(corpus.records[:20])
    changed = [
        Record(r.id, r.dense, r.multivector, {**r.payload, "v": 2}) for r in corpus.records[:20]
    ]
    fresh.upsert(changed)
    fresh.upsert(changed)
    assert fresh.count() == 20
    assert fresh.count(Eq("v", 2)) == 20
    hits = fresh.search(planted_query(corpus, 7), limit=20, prefetch_limit=20)
    assert len(hits) == len(set(ids(hits))) == 20


def test_updated_tokens_replace_the_old_ones(fresh, corpus):
    original = corpus.records[4]
    fresh.upsert(corpus.records[:10])
    other = corpus.records[30]
    fresh.upsert([Record(original.id, other.dense, other.multivector, original.payload)])
    assert fresh.count() == 10
    query = planted_query(corpus, 30)
    for mode in ("multivector", "hybrid"):
        hits = fresh.search(query, mode=mode, limit=10)
        assert hits[0].id == original.id
        assert hits[0].score == pytest.approx(
            dict(corpus.maxsim_ranking(query))[other.id], rel=1e-3
        )
        assert len(hits) == len(set(ids(hits))) == 10


def test_delete(fresh, corpus):
    fresh.upsert(corpus.records[:10])
    fresh.delete([corpus.records[0].id, corpus.records[1].id, "missing"])
    assert fresh.count() == 8
    assert fresh.get([corpus.records[0].id, corpus.records[1].id]) == []
    hits = fresh.search(planted_query(corpus, 1), limit=10)
    assert corpus.records[1].id not in ids(hits)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda r: Record(r.id, r.dense[:100], r.multivector, r.payload), "dense"),
        (lambda r: Record(r.id, r.dense, r.multivector[:, :64], r.payload), "multivector"),
        (lambda r: Record(r.id, r.dense, np.zeros((0, 128), np.float32), r.payload), "multivector"),
        (lambda r: Record(r.id, r.dense, None, r.payload), "multivector"),
        (lambda r: Record(r.id, np.full_like(r.dense, np.nan), r.multivector, r.payload), "NaN"),
        (lambda r: Record(None, r.dense, r.multivector, r.payload), "id"),
        (lambda r: Record(r.id, r.dense, r.multivector, {"x": object()}), "payload"),
    ],
    ids=[
        "short-dense",
        "narrow-tokens",
        "empty-multivector",
        "missing-multivector",
        "nan",
        "none-id",
        "payload",
    ],
)
def test_bad_record_refused_naming_it_and_nothing_written(fresh, corpus, bad, message):
    fresh.upsert(corpus.records[:5])
    batch = list(corpus.records[5:10])
    batch[3] = bad(batch[3])
    with pytest.raises(RecordError, match="record 3") as err:
        fresh.upsert(batch)
    assert message in str(err.value)
    assert fresh.count() == 5


@pytest.mark.parametrize("ids_arg", ["doc-3", b"doc-3", 7, {"doc-3": 1}, None])
def test_ids_must_be_a_list_never_a_bare_id_or_string(filled, corpus, ids_arg):
    # A string is never read as its characters ("doc-3" -> "d", "o", ...).
    with pytest.raises(TypeError, match="ids must be a list"):
        filled.get(ids_arg)
    with pytest.raises(TypeError, match="ids must be a list"):
        filled.delete(ids_arg)
    assert filled.count() == len(corpus.records)


def test_bad_id_in_a_list_is_named(filled, corpus):
    for call in (filled.get, filled.delete):
        with pytest.raises(RecordError, match="record 1 .*id must be an int or str"):
            call(["doc-3", 1.5])
        with pytest.raises(RecordError, match="record 0 .*non-empty|must not be empty"):
            call([""])
    assert filled.count() == len(corpus.records)
    # any iterable of ids works, in the order given
    got = filled.get(iter([corpus.records[3].id, corpus.records[2].id]))
    assert [r.id for r in got] == [corpus.records[3].id, corpus.records[2].id]


def test_filter_must_be_a_filter(filled):
    for call in (filled.count, lambda f: filled.search(random_query(), filter=f)):
        with pytest.raises(QueryError, match="filter must be a connectors.filters.Filter"):
            call({"lang": "de"})


def test_wrong_query_refused(filled, corpus):
    with pytest.raises(QueryError, match="mode"):
        filled.search(random_query(), mode="bogus")
    with pytest.raises(QueryError, match="multivector"):
        filled.search(Query(dense=random_query().dense), mode="hybrid")
    with pytest.raises(QueryError, match="dense"):
        filled.search(
            Query(dense=np.ones(8, np.float32), multivector=random_query().multivector),
            mode="dense",
        )


# -- schema ----------------------------------------------------------------------------
def test_create_same_spec_is_noop_and_different_spec_refused(backend, corpus, tmp_path):
    store = backend.create(tmp_path, "schema", corpus.spec)
    store.upsert(corpus.records[:6])
    store.close()
    again = backend.create(tmp_path, "schema", corpus.spec)
    assert again.count() == 6
    again.close()
    for other in (
        CollectionSpec(dim=128, prefetch_dims=(32,)),
        CollectionSpec(dim=256, prefetch_dims=(64,)),
        CollectionSpec(dim=256, prefetch_dims=(32,), multivector=False),
    ):
        with pytest.raises(SchemaMismatchError):
            backend.create(tmp_path, "schema", other)
    reopened = backend.open(tmp_path, "schema")
    assert not corpus.spec.differences(reopened.spec)  # placements: the backend default
    assert reopened.count() == 6
    reopened.close()


OPTION_VALUES: dict[str, tuple[str, object]] = {
    "quantization=int8": ("quantization", "int8"),
    "quantization=binary": ("quantization", "binary"),
    "multivector_quantization=int8": ("multivector_quantization", "int8"),
    "multivector_quantization=binary": ("multivector_quantization", "binary"),
    "muvera": ("muvera", MuveraParams(k_sim=2, dim_proj=8, r_reps=3)),
    "multivector_dtype=uint8": ("multivector_dtype", "uint8"),
    "dense_dtype=float16": ("dense_dtype", "float16"),
}


# placements: test_storage.py; token_pooling (every backend): test_token_pooling below
@pytest.mark.parametrize("option", sorted(OPTION_VALUES))
def test_optional_spec_fields_are_implemented_or_refused(backend, corpus, tmp_path, option):
    """A storage option is honoured (and read back) or refused: never accepted and ignored."""
    field, value = OPTION_VALUES[option]
    prefixes = (32,) if backend.prefix_fields else ()  # the option's test, not the prefix's
    spec = CollectionSpec(dim=256, prefetch_dims=prefixes, **{field: value})
    implemented = field in backend.spec_features or option in backend.spec_features
    refusal = f"does not implement {field}="
    if field == "muvera" and not backend.prefix_fields:
        implemented, refusal = False, "allows one per collection.*muvera=None"
    if not implemented:
        with pytest.raises(UnsupportedSpecError, match=refusal):
            backend.create(tmp_path, "option", spec)
        with pytest.raises(CollectionNotFoundError):  # nothing was created
            backend.open(tmp_path, "option")
        return
    store = backend.create(tmp_path, "option", spec)
    store.upsert(corpus.records[:12])
    store.close()
    reopened = backend.open(tmp_path, "option")
    assert not spec.differences(reopened.spec)
    assert getattr(reopened.spec, field) == value
    query = planted_query(corpus, 2)
    mode = "muvera" if field == "muvera" else "hybrid"
    hits = reopened.search(query, mode=mode, limit=1, prefetch_limit=4)
    assert hits[0].id == corpus.records[2].id
    if field.endswith("quantization") or field.endswith("dtype"):
        # The quantized copy picks candidates; their scores are rescored with the originals.
        # uint8 tokens have no originals: their MaxSim is int8 rounding away from the exact
        # one (token_codec.py); float16 dense vectors are ~1e-4 away.
        tokens = field in ("multivector_quantization", "multivector_dtype")
        mode = "multivector" if tokens else "dense"
        ranking = corpus.maxsim_ranking if mode == "multivector" else corpus.dense_ranking
        exact = dict(ranking(query))
        tolerance = 0.02 * len(query.multivector) * 0.1 if field == "multivector_dtype" else 2e-3
        hits = reopened.search(query, mode=mode, limit=3)
        for hit in hits:
            assert hit.score == pytest.approx(exact[hit.id], abs=tolerance), (mode, hit.id)
        assert [h.id for h in hits][:1] == [next(iter(exact))]
    reopened.close()


def test_token_pooling_pools_documents_never_queries(backend, corpus, tmp_path):
    """Every backend stores pooled token vectors (connectors.pooling, before the backend sees
    them); queries are scored unpooled against them; reopening keeps pooling new records."""
    spec = CollectionSpec(dim=256, prefetch_dims=corpus.spec.prefetch_dims, token_pooling=2)
    records = corpus.records[:20]
    pooled = {r.id: pool_tokens(r.multivector, 2).astype(np.float16) for r in records}
    store = backend.create(tmp_path, "pooled", spec)
    store.upsert(records[:10])
    store.close()
    store = backend.open(tmp_path, "pooled")
    assert store.spec.token_pooling == 2
    store.upsert(records[10:])  # the reopened store pools too
    for got in store.get([r.id for r in records], with_vectors=True):
        want = pooled[got.id].astype(np.float32)
        assert got.multivector.shape == want.shape == (len(want), 128)
        assert len(want) <= len(next(r for r in records if r.id == got.id).multivector) // 2
        np.testing.assert_allclose(got.multivector, want, atol=2e-3)
    query = planted_query(corpus, 4)
    ids_ = list(pooled)
    exact = maxsim_many(query.multivector, [pooled[i].astype(np.float32) for i in ids_])
    order = np.argsort(-exact, kind="stable")[:5]
    hits = store.search(query, mode="multivector", limit=5)
    assert ids(hits) == [ids_[i] for i in order]
    np.testing.assert_allclose([h.score for h in hits], exact[order], rtol=1e-3)
    store.close()


def test_database_errors_are_the_projects_errors(backend, corpus, tmp_path):
    """The database losing a collection under an open store: every call that fails raises a
    ConnectorError naming the collection, never the client's own exception."""
    if backend.lose_collection is None:
        pytest.skip(f"{backend.name}: no way to remove a collection behind the store")
    store = backend.create(tmp_path, "lost", corpus.spec)
    store.upsert(corpus.records[:3])
    backend.lose_collection(store)
    calls = {
        "count": store.count,
        "get": lambda: store.get([corpus.records[0].id]),
        "search": lambda: store.search(random_query(), mode="dense"),
        "upsert": lambda: store.upsert(corpus.records[3:4]),
        "delete": lambda: store.delete([corpus.records[1].id]),
        "close": store.close,  # an embedded engine fails when it persists on close
    }
    failed = {}
    for what, call in calls.items():
        try:
            call()
        except ConnectorError as e:
            failed[what] = str(e)
    assert failed, "losing the collection went unnoticed by every call"
    for what, message in failed.items():
        assert store.name in message, (what, message)
    store.close()


def test_reopen_gives_identical_results(backend, corpus, tmp_path):
    store = backend.create(tmp_path, "persist", corpus.spec)
    store.upsert(corpus.records)
    query = planted_query(corpus, 12)
    before = {m: store.search(query, mode=m, limit=7, prefetch_limit=30) for m in modes(backend)}
    store.close()
    reopened = backend.open(tmp_path, "persist")
    for m in modes(backend):
        after = reopened.search(query, mode=m, limit=7, prefetch_limit=30)
        assert ids(after) == ids(before[m]), m
        np.testing.assert_allclose(
            [h.score for h in after], [h.score for h in before[m]], rtol=1e-5
        )
    reopened.close()


def test_muvera_mode_refused_without_the_field(backend, corpus, tmp_path):
    spec = CollectionSpec(dim=256, prefetch_dims=())
    store = backend.create(tmp_path, "no_muvera", spec)
    store.upsert(corpus.records[:3])
    with pytest.raises(QueryError, match="mode 'muvera' needs the collection's MUVERA field"):
        store.search(planted_query(corpus, 1), mode="muvera")
    assert spec.muvera_field not in store.get([corpus.records[0].id], with_vectors=True)[0].payload
    store.close()


def test_dense_only_collection(backend, corpus, tmp_path):
    spec = CollectionSpec(dim=256, prefetch_dims=corpus.spec.prefetch_dims, multivector=False)
    store = backend.create(tmp_path, "dense_only", spec)
    store.upsert([Record(r.id, r.dense, None, r.payload) for r in corpus.records])
    for mode in ("dense", "funnel") if backend.prefix_fields else ("dense",):
        hits = store.search(planted_query(corpus, 9), mode=mode, limit=1)
        assert hits[0].id == corpus.records[9].id, mode
    with pytest.raises(QueryError, match="multivector=False"):
        store.search(planted_query(corpus, 9), mode="hybrid")
    store.close()


def test_drop(backend, corpus, tmp_path):
    store = backend.create(tmp_path, "dropme", corpus.spec)
    store.upsert(corpus.records[:3])
    store.drop()
    store.close()
    again = backend.create(tmp_path, "dropme", corpus.spec)
    assert again.count() == 0
    again.close()


# -- one writer per embedded folder ---------------------------------------------------------
def test_second_process_gets_a_clear_lock_error(backend, corpus, tmp_path):
    if not backend.embedded:
        pytest.skip(f"{backend.name} is a server: no folder lock")
    store = backend.create(tmp_path, "locked", corpus.spec)
    store.upsert(corpus.records[:3])
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / "tests" / "connectors")!r}]
        from pathlib import Path
        from backends import BACKENDS
        from connectors import StoreLockedError
        try:
            BACKENDS[{backend.name!r}].open(Path({str(tmp_path)!r}), "locked")
        except StoreLockedError as e:
            print("LOCKED:", e)
            sys.exit(0)
        print("OPENED")
        sys.exit(1)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    store.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOCKED:" in proc.stdout
    assert str(tmp_path) in proc.stdout  # the message names the folder

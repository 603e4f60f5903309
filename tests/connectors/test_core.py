"""The backend-neutral core: specs, records, filters, plans and the numpy scoring helpers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from connectors import (
    AnyOf,
    CollectionSpec,
    Eq,
    Query,
    QueryError,
    Range,
    Record,
    RecordError,
    SchemaMismatchError,
    UnsupportedSpecError,
    records_from_batch,
)
from connectors.filters import And, Not, Or, filter_keys, parse_filter_args
from connectors.query import SearchMode, build_plan, query_vectors
from connectors.records import (
    byte_bounded_chunks,
    check_ids,
    prepare_record,
    prepare_records,
    stable_uuid,
)
from connectors.spec import check_supported, reconcile_spec
from connectors.vectors import l2_normalize, maxsim, maxsim_many, rrf


def unit(*shape, seed=0):
    return l2_normalize(np.random.default_rng(seed).standard_normal(shape))


# -- spec ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dim": 0}, "dim must be a positive int"),
        ({"dim": 128, "prefetch_dims": (128,)}, "prefetch_dims"),
        ({"prefetch_dims": (64, 64)}, "duplicates"),
        ({"multivector_dtype": "int4"}, "multivector_dtype must be one of"),
        ({"quantization": "pq"}, "quantization must be one of"),
        ({"multivector_quantization": "pq"}, "multivector_quantization must be one of"),
        ({"token_pooling": 1}, r"token_pooling must be None \(off\) or a pool factor"),
        ({"token_pooling": True}, "token_pooling must be None"),
        ({"token_pooling": "3"}, "token_pooling must be None"),
        ({"multivector": False, "token_pooling": 2}, "token_pooling=2 needs token vectors"),
        (
            {"multivector": False, "multivector_quantization": "int8"},
            "multivector_quantization='int8' needs token vectors",
        ),
    ],
)
def test_spec_rejects_bad_values_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CollectionSpec(**kwargs)


def test_spec_roundtrip_and_differences():
    spec = CollectionSpec(dim=1024, prefetch_dims=(256, 128), multivector_dtype="float32")
    assert spec.prefetch_dims == (128, 256)
    assert CollectionSpec.from_dict(spec.to_dict()) == spec
    options = CollectionSpec(
        quantization="binary", multivector_quantization="int8", token_pooling=3
    )
    data = options.to_dict()
    assert (data["quantization"], data["multivector_quantization"]) == ("binary", "int8")
    assert data["token_pooling"] == 3
    assert CollectionSpec.from_dict(data) == options
    assert "token_pooling: existing=3, requested=None" in CollectionSpec().differences(options)
    # a spec written before these options existed reads as the defaults
    old = {k: v for k, v in CollectionSpec().to_dict().items() if k not in data or k == "dim"}
    assert CollectionSpec.from_dict(old) == CollectionSpec()
    other = CollectionSpec(dim=1024, prefetch_dims=(128,))
    diffs = spec.differences(other)
    assert any(d.startswith("prefetch_dims") for d in diffs)
    assert any(d.startswith("multivector_dtype") for d in diffs)
    assert spec.differences(spec) == []


# -- records ---------------------------------------------------------------------------
def test_reconcile_and_optional_fields_name_what_differs():
    asked, stored = CollectionSpec(dim=256), CollectionSpec(dim=512, quantization="int8")
    assert reconcile_spec(stored, stored, name="docs", where="at x", opener="S") is stored
    with pytest.raises(SchemaMismatchError) as err:
        reconcile_spec(asked, stored, name="docs", where="at x", opener="S")
    message = str(err.value)
    assert "'docs' at x" in message and "S.open" in message
    assert "dim: existing=512, requested=256" in message
    assert "quantization: existing='int8', requested='none'" in message
    check_supported(stored, {"quantization"}, "S")  # implemented: accepted
    check_supported(CollectionSpec(), set(), "S")  # defaults need nothing
    with pytest.raises(UnsupportedSpecError, match=r"S does not implement quantization='int8'"):
        check_supported(stored, set(), "S")
    # A backend may implement some values of a field only ("field=value").
    check_supported(stored, {"quantization=int8"}, "S")
    binary = CollectionSpec(multivector_quantization="binary")
    with pytest.raises(UnsupportedSpecError, match="multivector_quantization='binary': why"):
        check_supported(binary, {"multivector_quantization=int8"}, "S", "why")
    # Placements are not optional fields: each backend's StoragePolicy checks them.
    check_supported(CollectionSpec(multivector_on_disk=True), set(), "S")


@pytest.mark.parametrize(
    "ids, expected",
    [
        ([3, "a"], [3, "a"]),
        ((3,), [3]),
        (iter(["a", "b"]), ["a", "b"]),
        ([], []),
        (range(2), [0, 1]),
    ],
)
def test_check_ids_takes_any_iterable_of_ids(ids, expected):
    assert check_ids(ids) == expected


@pytest.mark.parametrize("bad", ["abc", b"abc", 3, None, {"a": 1}])
def test_check_ids_refuses_a_bare_id_or_string(bad):
    with pytest.raises(TypeError, match="ids must be a list of ints or strings"):
        check_ids(bad)


def test_prepare_record_truncates_long_dense_and_renormalises():
    spec = CollectionSpec(dim=256, prefetch_dims=(32,))
    dense = unit(2048)
    p = prepare_record(Record("a", dense, unit(5, 128)), spec)
    np.testing.assert_allclose(
        p.vectors["dense"], dense[:256] / np.linalg.norm(dense[:256]), rtol=1e-6
    )
    np.testing.assert_allclose(np.linalg.norm(p.vectors["dense_32"]), 1.0, rtol=1e-6)
    assert p.vectors["multi"].dtype == np.float16
    assert p.nbytes > 5 * 128 * 2


def test_prepare_records_rejects_duplicates_and_non_records():
    spec = CollectionSpec(dim=64, prefetch_dims=(), multivector=False)
    recs = [Record(1, unit(64)), Record(2, unit(64, seed=1)), Record(1, unit(64, seed=2))]
    with pytest.raises(RecordError, match=r"record 2 id=1: duplicate id .*record 0"):
        prepare_records(recs, spec)
    with pytest.raises(RecordError, match="record 0: expected a Record, got dict"):
        prepare_records([{"id": 1}], spec)


@pytest.mark.parametrize("bad_id", [-1, True, 1.5, "", "   ", 2**63])
def test_bad_ids_refused(bad_id):
    spec = CollectionSpec(dim=64, prefetch_dims=(), multivector=False)
    with pytest.raises(RecordError, match="id"):
        prepare_record(Record(bad_id, unit(64)), spec)


def test_reserved_payload_key_refused():
    spec = CollectionSpec(dim=64, prefetch_dims=(), multivector=False)
    with pytest.raises(RecordError, match="reserved"):
        prepare_record(Record(1, unit(64), payload={"_jvdb_id": 3}), spec)


def test_stable_uuid_is_stable_and_distinct():
    assert stable_uuid("doc-1") == stable_uuid("doc-1") != stable_uuid("doc-2")


def test_records_from_batch_checks_lengths():
    batch = SimpleNamespace(
        dense=unit(3, 64), multivectors=[unit(4, 128), unit(2, 128), unit(7, 128)]
    )
    recs = records_from_batch(batch, ["a", "b", "c"], [{"x": 1}, None, {"x": 3}])
    assert [r.id for r in recs] == ["a", "b", "c"]
    assert recs[1].payload == {} and recs[2].multivector.shape == (7, 128)
    with pytest.raises(ValueError, match="2 ids for a batch of 3"):
        records_from_batch(batch, ["a", "b"])
    with pytest.raises(ValueError, match="1 payloads"):
        records_from_batch(batch, ["a", "b", "c"], [{}])


def test_byte_bounded_chunks():
    spec = CollectionSpec(dim=64, prefetch_dims=(), multivector=True, multivector_dtype="float32")
    prepared = [
        prepare_record(Record(i, unit(64, seed=i), unit(100, 128, seed=i)), spec) for i in range(10)
    ]
    size = prepared[0].nbytes
    chunks = byte_bounded_chunks(prepared, max_bytes=3 * size, max_count=100)
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    assert [p.id for c in chunks for p in c] == list(range(10))
    assert [len(c) for c in byte_bounded_chunks(prepared, max_bytes=1, max_count=100)] == [1] * 10
    assert [len(c) for c in byte_bounded_chunks(prepared, max_bytes=10**9, max_count=4)] == [
        4,
        4,
        2,
    ]


# -- filters ---------------------------------------------------------------------------
def test_filter_semantics():
    payload = {"lang": "de", "page": 3, "tags": ["a", "b"], "meta": {"year": 2020}, "flag": True}
    assert Eq("lang", "de").matches(payload) and not Eq("lang", "en").matches(payload)
    assert Eq("tags", "b").matches(payload)
    assert AnyOf("page", (1, 3)).matches(payload)
    assert Range("meta.year", gte=2020, lt=2021).matches(payload)
    assert not Range("lang", gt=0).matches(payload)
    assert (Eq("lang", "de") & ~Eq("page", 4)).matches(payload)
    assert (Eq("lang", "en") | Eq("page", 3)).matches(payload)
    assert not Not(Eq("lang", "de")).matches(payload)
    assert not Eq("flag", 1).matches(payload)  # a bool is not the int 1
    assert not Eq("missing", "x").matches(payload)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Eq("bad key", 1), "filter key"),
        (lambda: Eq("k", 1.5), "values must be str, int or bool"),
        (lambda: AnyOf("k", ()), "must not be empty"),
        (lambda: AnyOf("k", "abc"), "must be a list"),
        (lambda: AnyOf("k", (1, "a")), "one type"),
        (lambda: Range("k"), "at least one"),
        (lambda: Range("k", gt=float("nan")), "finite"),
        (lambda: And(()), "non-empty"),
        (lambda: Or((Eq("k", 1), "x")), "must be a Filter"),
    ],
)
def test_filter_validation(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_parse_filter_args():
    assert parse_filter_args([]) is None
    assert parse_filter_args(["lang=de"]) == Eq("lang", "de")
    assert parse_filter_args(["page=1,2"]) == AnyOf("page", (1, 2))
    assert parse_filter_args(["flag=true"]) == Eq("flag", True)
    flt = parse_filter_args(["lang=de", "page>=2", "page<4.5"])
    assert flt == And((Eq("lang", "de"), Range("page", gte=2), Range("page", lt=4.5)))
    with pytest.raises(ValueError, match="cannot parse filter 'lang'"):
        parse_filter_args(["lang"])
    with pytest.raises(ValueError, match="not a number"):
        parse_filter_args(["page>x"])


def test_parse_filter_args_quoting():
    assert parse_filter_args(['source="notes, v1.md"']) == Eq("source", "notes, v1.md")
    assert parse_filter_args(["name=a\\,b"]) == Eq("name", "a,b")
    assert parse_filter_args(['page="3"']) == Eq("page", "3")  # quoted: stays a string
    assert parse_filter_args(['f="a, b",c']) == AnyOf("f", ("a, b", "c"))
    assert parse_filter_args(['f=a , "b"']) == AnyOf("f", ("a", "b"))
    for bad, message in [
        ('f="open', "double quote is not closed"),
        ("f=a,,b", "an empty value"),
        ("f=a\\", "backslash at the end"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_filter_args([bad])
    assert filter_keys(parse_filter_args(["a=1", "b>2", "a=3"])) == ["a", "b"]


# -- plans -----------------------------------------------------------------------------
def test_plans_per_mode():
    spec = CollectionSpec(dim=256, prefetch_dims=(32, 64))
    hybrid = build_plan(spec, "hybrid", limit=5, prefetch_limit=50)
    assert [(s.field, s.limit, s.maxsim) for s in hybrid.cascades[0]] == [
        ("dense", 50, False),
        ("multi", 5, True),
    ]
    funnel = build_plan(spec, SearchMode.FUNNEL, limit=5, prefetch_limit=50)
    assert [s.field for s in funnel.cascades[0]] == ["dense_32", "dense", "multi"]
    assert funnel.cascades[0][0].limit == 200
    fusion = build_plan(spec, "fusion", limit=5, prefetch_limit=50)
    assert fusion.fused and len(fusion.cascades) == 2
    # prefetch never smaller than the final limit
    assert build_plan(spec, "hybrid", limit=30, prefetch_limit=10).cascades[0][0].limit == 30


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        (CollectionSpec(dim=64, prefetch_dims=()), {"mode": "nope"}, "unknown search mode 'nope'"),
        (CollectionSpec(dim=64, prefetch_dims=()), {"mode": "funnel"}, "prefetch_dims"),
        (
            CollectionSpec(dim=64, multivector=False, prefetch_dims=()),
            {"mode": "hybrid"},
            "multivector=False",
        ),
        (
            CollectionSpec(dim=64, prefetch_dims=()),
            {"mode": "dense", "limit": 0},
            "limit must be a positive int",
        ),
        (
            CollectionSpec(dim=64, prefetch_dims=()),
            {"mode": "dense", "filter": {"a": 1}},
            "filter must be",
        ),
    ],
)
def test_bad_plans_refused(spec, kwargs, message):
    with pytest.raises(QueryError, match=message):
        build_plan(spec, **kwargs)


def test_query_vectors_truncate_and_check():
    spec = CollectionSpec(dim=256, prefetch_dims=(32,))
    plan = build_plan(spec, "funnel")
    dense = unit(2048)
    vecs = query_vectors(Query(dense=dense, multivector=unit(3, 128)), spec, plan)
    assert set(vecs) == {"dense", "dense_32", "multi"}
    np.testing.assert_allclose(vecs["dense_32"], dense[:32] / np.linalg.norm(dense[:32]), rtol=1e-6)
    with pytest.raises(QueryError, match=r"shape \(q, 128\)"):
        query_vectors(Query(dense=dense, multivector=unit(3, 64)), spec, plan)


# -- scoring ---------------------------------------------------------------------------
def test_maxsim_many_equals_loop_and_definition():
    q = unit(6, 128, seed=1)
    docs = [unit(n, 128, seed=10 + n) for n in (1, 5, 17)]
    loop = [maxsim(q, d) for d in docs]
    np.testing.assert_allclose(maxsim_many(q, docs), loop, rtol=1e-5)
    by_hand = sum(max(float(qi @ dj) for dj in docs[1]) for qi in q)
    assert loop[1] == pytest.approx(by_hand, rel=1e-5)
    assert maxsim_many(q, []).shape == (0,)


def test_rrf():
    fused = dict(rrf([["a", "b", "c"], ["b", "c"]], k=60))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61)
    assert max(fused, key=fused.get) == "b"

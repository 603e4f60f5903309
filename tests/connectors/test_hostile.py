"""Hostile records on every backend: refused naming the record, nothing written, nothing lost.

Variants of the cases found by trying the engines (issue 9): payloads an engine would refuse,
corrupt or silently change (connectors/payload.py has the measured limits) and vectors at the
edges of float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from backends import BACKENDS, Backend
from corpus import Corpus, make_corpus

from connectors import AnyOf, Eq, Query, Range, Record, RecordError
from connectors.payload import MAX_DEPTH


@pytest.fixture(params=sorted(BACKENDS), scope="module")
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return make_corpus(12, dim=64, prefetch_dims=(16,))


def nested(depth: int, leaf: object = 1, *, as_list: bool = False) -> object:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"k": value}
    return value


BAD_PAYLOADS = {
    # payload dict + 32 nested dicts = 33 levels
    "deep-dict": ({"a": nested(MAX_DEPTH)}, "levels deep"),
    "deep-list": ({"a": nested(MAX_DEPTH + 5, as_list=True)}, "levels deep"),
    "int-over-64-bits": ({"meta": {"n": 2**64 + 3}}, "64-bit"),
    "int-just-over": ({"n": [1, 2**63]}, "64-bit"),
    "int-under": ({"n": -(2**63) - 1}, "64-bit"),
    "lone-surrogate-value": ({"t": ["ok", "a\udcffb"]}, "surrogate"),
    "lone-surrogate-key": ({"x": {"\ud800": 1}}, "surrogate"),
    "nan-nested": ({"x": {"y": [1.0, float("nan")]}}, "finite"),
    "neg-inf": ({"x": float("-inf")}, "finite"),
    "bytes": ({"b": b"\x00\x01"}, "bytes"),
    "set": ({"s": {1, 2}}, "set"),
    "numpy-scalar": ({"n": np.float32(1.5)}, "float32"),
    "non-str-key": ({"m": {3: "x"}}, "keys must be strings"),
}


@pytest.fixture
def fresh(backend: Backend, corpus: Corpus, tmp_path: Path):
    store = backend.create(tmp_path, "hostile", corpus.spec)
    yield store
    store.close()


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_bad_payload_refused_naming_record_nothing_written(fresh, corpus, case):
    payload, message = BAD_PAYLOADS[case]
    fresh.upsert(corpus.records[:2])
    batch = list(corpus.records[2:8])
    r = batch[4]
    batch[4] = Record(r.id, r.dense, r.multivector, payload)
    with pytest.raises(RecordError, match=f"record 4 id={r.id!r}") as err:
        fresh.upsert(batch)
    assert message in str(err.value)
    assert "payload[" in str(err.value)  # the path of the bad value
    assert fresh.count() == 2


def test_payload_at_the_limits_round_trips_and_reopens(backend, corpus, tmp_path):
    """The deepest / widest payload accepted is stored exactly and the collection reopens."""
    payload = {
        "deep": nested(MAX_DEPTH - 2, "leaf"),  # payload + 30 dicts + ... = 31 levels
        "deep_list": nested(MAX_DEPTH - 1, 7, as_list=True),
        "big": 2**63 - 1,
        "small": -(2**63),
        "text": "nul\x00 ctrl\x07 ünï 𝄞 \u2028",
        "weird keys": {"": 1, "a.b": 2, "q'\"\\": 3, "\x00": 4},
        "lang": "en",
    }
    store = backend.create(tmp_path, "limits", corpus.spec)
    r = corpus.records[0]
    store.upsert([Record(r.id, r.dense, r.multivector, payload), *corpus.records[1:4]])
    assert store.count(Eq("lang", "en")) == 1 + sum(
        rec.payload["lang"] == "en" for rec in corpus.records[1:4]
    )
    store.close()
    store = backend.open(tmp_path, "limits")
    try:
        (got,) = store.get([r.id])
        assert got.payload == payload
        assert store.count() == 4
    finally:
        store.close()


@pytest.mark.parametrize("scale", [3e38, 1e-30, 1e-42])
def test_extreme_but_finite_vectors_are_stored_normalised(fresh, corpus, scale):
    """3e38 overflowed the norm (stored as zeros); tiny values underflowed it (refused)."""
    rng = np.random.default_rng(5)
    direction = rng.standard_normal(corpus.spec.dim).astype(np.float32)
    signs = np.sign(direction).astype(np.float32)
    dense = (signs * np.float32(scale)).astype(np.float32)
    tokens = (np.sign(rng.standard_normal((5, 128))) * scale).astype(np.float32)
    fresh.upsert([*corpus.records[:6], Record("extreme", dense, tokens, {"x": 1})])
    (got,) = fresh.get(["extreme"], with_vectors=True)
    expected = signs / np.linalg.norm(signs)
    np.testing.assert_allclose(got.dense, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got.multivector, axis=1), 1.0, atol=1e-2)
    for mode in ("dense", "hybrid", "multivector"):
        hits = fresh.search(Query(dense=expected, multivector=tokens), mode=mode, limit=3)
        assert hits[0].id == "extreme", mode
        assert np.isfinite(hits[0].score)


def test_beyond_float32_is_refused_naming_the_record(fresh, corpus):
    r = corpus.records[1]
    huge = np.full(corpus.spec.dim, 1e39, dtype=np.float64)
    with pytest.raises(RecordError, match=f"record 1 id={r.id!r}.*float32"):
        fresh.upsert([corpus.records[0], Record(r.id, huge, r.multivector, {})])
    assert fresh.count() == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: Eq("n", 2**64),
        lambda: Eq("s", "a\udfffb"),
        lambda: AnyOf("s", ["ok", "\ud800"]),
        lambda: Range("n", gte=-(2**63) - 1),
    ],
    ids=["int-over-64-bits", "surrogate", "surrogate-in-list", "range-under"],
)
def test_filter_values_no_engine_can_hold_are_refused(make):
    with pytest.raises(ValueError, match="64 bits|64-bit|surrogate"):
        make()


# -- partial writes ----------------------------------------------------------------------
ENGINE_REFUSES = {
    # what each engine refuses on its own when our validation is switched off
    "milvus-lite": {"n": 2**70},  # DataNotMatchException: Integer exceeds 64-bit range
    "qdrant-edge": {"s": "a\udc80"},  # TypeError: failed to extract enum Helper
}


@pytest.mark.parametrize("backend_name", sorted(ENGINE_REFUSES))
def test_engine_refusal_mid_batch_names_the_record_and_what_was_written(
    backend_name, corpus, tmp_path, monkeypatch
):
    """A record the engine refuses after earlier requests were written (validation has a gap):
    the error names it and lists what was and was not written (issue 9 item 3)."""
    import connectors.records as records_module
    from connectors import RejectedRecordError

    monkeypatch.setattr(records_module, "check_payload_values", lambda payload: None)
    backend = BACKENDS[backend_name]
    store = backend.create(tmp_path, "partial", corpus.spec)
    store.max_request_records = 4  # 11 records: requests of 4, 4, 3; the bad one is #6
    try:
        base = corpus.records[0]
        batch = [Record(i, base.dense, base.multivector, {"i": i}) for i in range(11)]
        batch[6] = Record(6, base.dense, base.multivector, ENGINE_REFUSES[backend_name])
        with pytest.raises(RejectedRecordError, match="record 6 id=6") as err:
            store.upsert(batch)
        assert err.value.written_ids == [0, 1, 2, 3, 4, 5]
        assert err.value.unwritten_ids == [6, 7, 8, 9, 10]
        assert "Written: records 0-5" in str(err.value)
        assert isinstance(err.value, RecordError)  # ingest retries one by one on RecordError
        assert sorted(r.id for r in store.get(list(range(11)))) == [0, 1, 2, 3, 4, 5]
    finally:
        store.close()


def test_milvus_refuses_payloads_over_its_json_limit_naming_the_record(corpus, tmp_path):
    store = BACKENDS["milvus-lite"].create(tmp_path, "big", corpus.spec)
    try:
        r = corpus.records[3]
        fits = {"text": "é" * 30_000}  # 60,011 bytes of JSON
        too_big = {"text": "x" * 40_000, "more": "é" * 15_000}  # 70,021 bytes
        store.upsert([Record(r.id, r.dense, r.multivector, fits)])
        with pytest.raises(RecordError, match=rf"record 1 id={r.id!r}: payload is 70021 bytes"):
            store.upsert([corpus.records[0], Record(r.id, r.dense, r.multivector, too_big)])
        assert store.count() == 1
        assert store.get([r.id])[0].payload == fits
    finally:
        store.close()


def test_payloads_over_one_request_are_refused_everywhere(corpus):
    """16 MiB of JSON (a Qdrant server takes 32 MiB per request, vectors included)."""
    from connectors.payload import MAX_PAYLOAD_BYTES
    from connectors.records import prepare_records

    r = corpus.records[2]
    huge = Record(r.id, r.dense, r.multivector, {"blob": "x" * MAX_PAYLOAD_BYTES})
    with pytest.raises(RecordError, match=rf"record 1 id={r.id!r}: payload is \d+ bytes"):
        prepare_records([corpus.records[0], huge], corpus.spec)


def test_a_server_lost_mid_batch_stays_a_store_unavailable_error(corpus):
    from connectors import PartialWriteError, StoreUnavailableError
    from connectors.base import partial_write_error
    from connectors.records import prepare_records

    batch = prepare_records(corpus.records[:5], corpus.spec)
    error = partial_write_error("docs", batch, 3, StoreUnavailableError("server at x gone"))
    assert isinstance(error, StoreUnavailableError) and isinstance(error, PartialWriteError)
    assert not isinstance(error, RecordError)  # ingest stops instead of failing each record
    assert error.written_ids == [r.id for r in corpus.records[:3]]
    assert "the database is unavailable" in str(error) and "Written: records 0-2" in str(error)

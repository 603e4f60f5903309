"""Fuzz tests (hypothesis): ids, filter values and payloads on a Qdrant and a Milvus backend.

Milvus builds filter expressions from values (ids included): an id or value with quotes,
backslashes, newlines or any Unicode must match itself and nothing else, and a delete must
remove exactly the ids asked for. Payloads inside the limits (connectors/payload.py) must come
back unchanged; outside them they are refused and nothing is written. Example counts are
modest: the CI machine has two cores.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from backends import BACKENDS
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connectors import AnyOf, CollectionSpec, Eq, Not, Record, RecordError
from connectors.payload import INT_MAX, INT_MIN, MAX_DEPTH

SPEC = CollectionSpec(dim=8, prefetch_dims=(4,), multivector_dtype="float32")
FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INJECTIONS = [
    "x'] or not pk in ['x",
    'x"] or not pk in ["x',
    's:"] or pk != "',
    "a\\",
    '\\"',
    "line\nbreak\r\n\t",
    "nul\x00bell\x07esc\x1b",
    "ünï €𝄞 \u2028\u2029\ufeff",
    "%_*?[]{}()$^|",
    "\\u0041\\x41\\n",
    "#0",
    "a#1#2",
]

text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=24)
ids = st.one_of(
    text.filter(lambda s: s.strip()),
    st.integers(min_value=0, max_value=2**63 - 1),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.text(st.characters(exclude_categories=("Cs",)), max_size=8), inner, max_size=4
        ),
    ),
    max_leaves=20,
)
payloads = st.dictionaries(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=8).filter(
        lambda k: k != "_jvdb_id"
    ),
    json_values,
    max_size=5,
)


def vec(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def record(record_id: object, payload: dict, seed: int = 0) -> Record:
    return Record(record_id, vec(seed, (SPEC.dim,)), vec(seed + 1, (3, 128)), payload)


SENTINELS = [record("keep", {"v": "keep"}, 10), record(7, {"v": 7}, 20)]


@pytest.fixture(params=["qdrant-edge", "milvus-lite"], scope="module")
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    backend = BACKENDS[request.param]
    tmp: Path = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    s = backend.create(tmp, "fuzz", SPEC)
    yield s
    s.close()


def reset(store) -> None:
    """Leave exactly the sentinels in the store (whatever an earlier example left)."""
    store.delete(["keep", 7, "target", "p", "ok-1", "bad", "deep"])
    store.upsert(SENTINELS)
    assert store.count() == 2


@FUZZ
@given(record_id=ids)
@example(record_id="keep'] or pk != ['")
def test_fuzz_ids_get_and_delete_exactly_themselves(store, record_id):
    if record_id in ("keep", 7):
        return
    reset(store)
    for injected in [record_id, *INJECTIONS]:
        store.upsert([record(injected, {"id": str(injected)})])
        (got,) = store.get([injected])
        assert got.id == injected and got.payload == {"id": str(injected)}
        store.delete([injected])
        assert store.get([injected]) == []
        assert store.count() == 2, f"delete({injected!r}) removed other records"
        assert {r.id for r in store.get(["keep", 7])} == {"keep", 7}


@FUZZ
@given(value=st.one_of(text, st.integers(min_value=INT_MIN, max_value=INT_MAX), st.booleans()))
@example(value=INJECTIONS[0])
@example(value=INJECTIONS[5])
@example(value=INJECTIONS[6])
def test_fuzz_filter_values_match_exactly_themselves(store, value):
    reset(store)
    store.upsert([record("target", {"v": value, "tags": ["z", value]}, 30)])
    want = sum(Eq("v", value).matches(r.payload) for r in SENTINELS)  # the Python reference
    assert store.count(Eq("v", value)) == 1 + want
    assert store.count(Eq("tags", value)) == 1
    other = {str: "no-such-value", int: -12345, bool: not value}[type(value)]
    also = sum(Eq("v", other).matches(r.payload) for r in SENTINELS)
    assert store.count(AnyOf("v", [value, other])) == 1 + want + also
    assert store.count(Not(Eq("v", value))) == 2 - want
    store.delete(["target"])


@FUZZ
@given(payload=payloads)
def test_fuzz_payloads_inside_the_limits_come_back_unchanged(store, payload):
    reset(store)
    store.upsert([record("p", payload, 40)])
    (got,) = store.get(["p"])
    assert _same(got.payload, payload)
    store.delete(["p"])


bad_leaves = st.one_of(
    st.integers(min_value=INT_MAX + 1, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=INT_MIN - 1),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.builds(lambda a, s, b: a + s + b, text, st.characters(categories=("Cs",)), text),
    st.binary(max_size=4),
)


@FUZZ
@given(good=payloads, bad=bad_leaves, depth=st.integers(min_value=0, max_value=4))
def test_fuzz_payloads_outside_the_limits_are_refused_and_nothing_written(store, good, bad, depth):
    reset(store)
    value: object = bad
    for _ in range(depth):
        value = {"k": value}
    batch = [record("ok-1", good, 50), record("bad", {**good, "x": value}, 60)]
    with pytest.raises(RecordError, match="record 1 id='bad'"):
        store.upsert(batch)
    assert store.count() == 2


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(extra=st.integers(min_value=1, max_value=40))
def test_fuzz_too_deep_payloads_are_refused(store, extra):
    value: object = "leaf"
    for _ in range(MAX_DEPTH + extra - 1):
        value = [value] if extra % 2 else {"d": value}
    reset(store)
    with pytest.raises(RecordError, match="levels deep"):
        store.upsert([record("deep", {"x": value}, 70)])
    assert store.count() == 2


def _same(a: object, b: object) -> bool:
    """JSON equality: tuples are lists, ints stay ints, floats within an ulp."""
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in b)
    if isinstance(b, list | tuple):
        return isinstance(a, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(b, bool) or b is None or isinstance(b, str):
        return a == b and type(a) is type(b)
    if isinstance(b, int):
        return a == b and isinstance(a, int)
    # qdrant-edge may give a float back one ulp off (see connectors/payload.py)
    return isinstance(a, float) and math.isclose(a, b, rel_tol=4e-16, abs_tol=0.0)

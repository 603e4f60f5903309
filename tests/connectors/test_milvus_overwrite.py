"""Milvus overwrites are atomic per record (issue 9 item 4), on Milvus Lite's token-row layout.

Before: re-upserting 10 documents (6 tokens -> 3) with a failure in the middle left all 10
with their old dense vector and payload over only the 3 new token rows. Now a process that
dies (SIGKILL) or fails at any step of an overwrite leaves each record entirely old or
entirely new: dense vector, payload and token vectors, as read and as searched.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from corpus import make_corpus

from connectors import Query, Record
from connectors.milvus import MilvusStore
from connectors.vectors import l2_normalize, maxsim

REPO = Path(__file__).resolve().parents[2]
SPEC = make_corpus(1, dim=32, prefetch_dims=(8,)).spec


def version(v: int) -> list[Record]:
    """Ten records; version 1 has 6 token vectors each, version 2 has 3."""
    out = []
    for i in range(10):
        rng = np.random.default_rng(1000 * v + i)
        tokens = rng.standard_normal((6 if v == 1 else 3, 128)).astype(np.float32)
        out.append(Record(i, rng.standard_normal(SPEC.dim), tokens, {"v": v, "i": i}))
    return out


OVERWRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    import connectors.milvus.packed as pk
    import connectors.milvus.token_rows as tr
    from connectors.milvus import MilvusStore
    from test_milvus_overwrite import version

    uri, step, mode = sys.argv[1:4]
    tr.ROWS_PER_REQUEST = 7  # several token requests per batch: a death can fall between them
    pk.WRITE_CHARS = 1  # packed: one request per document
    store = MilvusStore.open("docs", uri=uri)
    real_upsert, seen = store.client.upsert, []

    def fail():
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("injected failure at " + step)

    def upsert(name, rows, **kw):
        seen.append(name)
        if step == "mid-tokens" and seen.count("docs__tokens") >= 3:
            fail()
        if step == "before-switch" and name == "docs":
            fail()
        result = real_upsert(name, rows, **kw)
        if step == "after-switch" and name == "docs":
            fail()
        return result

    store.client.upsert = upsert
    try:
        store.upsert(version(2))
    except Exception as e:
        print(type(e).__name__, e)
    store.close()
    """
)


def check_each_record_old_or_new(store: MilvusStore) -> list[int]:
    """Which version each record reads as; fails if any record mixes the two."""
    got = {r.id: r for r in store.get(list(range(10)), with_vectors=True)}
    assert sorted(got) == list(range(10))
    versions = []
    for i in range(10):
        record = got[i]
        v = record.payload["v"]
        want = version(v)[i]
        assert record.payload == want.payload
        np.testing.assert_allclose(record.dense, l2_normalize(want.dense), atol=1e-5)
        stored = l2_normalize(want.multivector).astype(np.float16).astype(np.float32)
        assert record.multivector.shape == stored.shape, f"record {i}: mixed token rows"
        np.testing.assert_allclose(record.multivector, stored, atol=1e-6)
        # and searched: the MaxSim score is the one of that version's tokens
        query = Query(dense=want.dense, multivector=want.multivector[:2])
        (hit,) = [h for h in store.search(query, mode="multivector", limit=10) if h.id == i]
        assert hit.score == pytest.approx(maxsim(want.multivector[:2], stored), rel=1e-3)
        versions.append(v)
    return versions


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["kill", "raise"])
@pytest.mark.parametrize("step", ["mid-tokens", "before-switch", "after-switch"])
@pytest.mark.parametrize("layout", ["packed", "token_rows"])
def test_overwrite_leaves_each_record_old_or_new(tmp_path, step, mode, layout):
    uri = str(tmp_path / "m.db")
    store = MilvusStore.create("docs", uri=uri, spec=SPEC, layout=layout)
    store.upsert(version(1))
    store.close()
    script = OVERWRITER.format(repo=str(REPO), tests=str(Path(__file__).parent))
    proc = subprocess.run(
        [sys.executable, "-c", script, uri, step, mode],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if mode == "kill":
        assert proc.returncode == -9, proc.stderr[-2000:]
    else:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "injected failure" in proc.stdout
    store = MilvusStore.open("docs", uri=uri)
    try:
        versions = check_each_record_old_or_new(store)
        expected = 2 if step == "after-switch" else 1
        assert versions == [expected] * 10
        store.upsert(version(2))  # the re-run completes the overwrite
        assert check_each_record_old_or_new(store) == [2] * 10
        assert store.count() == 10
    finally:
        store.close()


def test_collections_made_before_generations_still_overwrite_correctly(
    tmp_path, monkeypatch, caplog
):
    """A collection without ``tok_gen`` (made by an earlier version) is opened with a warning
    and overwritten in the old order: still no stale or duplicated token rows."""
    import connectors.milvus.convert as cv

    real = cv.doc_schema

    def without_generation(spec, layout):
        schema = real(spec, layout)
        schema.fields[:] = [f for f in schema.fields if f.name != cv.TOKEN_GEN]
        return schema

    uri = str(tmp_path / "m.db")
    monkeypatch.setattr(cv, "doc_schema", without_generation)
    store = MilvusStore.create("docs", uri=uri, spec=SPEC, layout="token_rows")
    assert not store.layout.generations
    store.upsert(version(1))
    store.close()
    monkeypatch.undo()
    store = MilvusStore.open("docs", uri=uri)
    try:
        assert "predates atomic overwrites" in caplog.text
        store.upsert(version(2))
        assert check_each_record_old_or_new(store) == [2] * 10
        rows = store.client.query("docs__tokens", filter="", output_fields=["pos"], limit=1000)
        assert len(rows) == 10 * 3  # the rows past the new length were deleted
    finally:
        store.close()


@pytest.mark.parametrize("layout", ["packed", "token_rows"])
def test_an_overwrite_deletes_the_previous_generation(tmp_path, layout):
    store = MilvusStore.create("docs", uri=str(tmp_path / "m.db"), spec=SPEC, layout=layout)
    per_row = 1 if layout == "token_rows" else store.layout.tokens_per_row
    try:
        for v in (1, 2, 1):
            store.upsert(version(v))
            rows = store.client.query("docs__tokens", filter="", output_fields=["pk"], limit=1000)
            assert len(rows) == 10 * -(-len(version(v)[0].multivector) // per_row)
        assert check_each_record_old_or_new(store) == [1] * 10
    finally:
        store.close()

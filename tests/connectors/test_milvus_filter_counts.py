"""A filtered search on Milvus counts rows only when the counts may have changed.

A dense stage restricted by a filter or a ``pk in [...]`` candidate list widens its HNSW
breadth by the inverse selectivity (``convert.filtered_ef``), from the collection's row
count and the filter's match count. These counts used to be two ``count(*)`` requests per
restricted stage and search; on Milvus Lite a filter's count(*) materialises every matching
row, so a 50% filter's counts took 2 s on 20,000 documents. The store now keeps them
(``connectors/milvus/sizes.py``), and these tests count the requests its real Milvus Lite
client sends.
"""

from __future__ import annotations

import numpy as np
import pytest
from recording import RecordingClient

from connectors import CollectionSpec, Eq, Query, Range, Record
from connectors.milvus import MilvusStore
from connectors.milvus.convert import PK, filtered_ef
from connectors.milvus.sizes import PROBE_ROWS

DOCS = 600
DIM = 16
BUCKETS = 10  # Eq("bucket", b) keeps 10% (60 documents: fewer than PROBE_ROWS)


def _vectors() -> np.ndarray:
    dense = np.random.default_rng(3).standard_normal((DOCS, DIM)).astype(np.float32)
    return dense / np.linalg.norm(dense, axis=1, keepdims=True)  # (DOCS, DIM) unit rows


def _open(tmp_path) -> tuple[MilvusStore, RecordingClient]:
    """A reopened (sealed, indexed) Milvus Lite collection behind a request-recording client."""
    from pymilvus import MilvusClient

    uri = str(tmp_path / "m.db")
    spec = CollectionSpec(
        dim=DIM, prefetch_dims=(8,), multivector=False, payload_indexes={"bucket": "integer"}
    )
    writer = MilvusStore.create("counts", uri=uri, spec=spec)
    vectors = _vectors()
    writer.upsert([Record(i, vectors[i], None, {"bucket": i % BUCKETS}) for i in range(DOCS)])
    writer.close()
    client = RecordingClient(MilvusClient(uri))
    return MilvusStore.open("counts", client=client), client


@pytest.fixture
def opened(tmp_path):
    store, client = _open(tmp_path)
    yield store, client
    store.close()
    client.inner.close()


def sizing(client: RecordingClient) -> list[dict]:
    """The query requests sent besides fetching the hits' payloads (``pk in [...]``)."""
    return [
        kw
        for name, kw in client.requests
        if name == "query" and not str(kw.get("filter", "")).startswith(f"{PK} in ")
    ]


def exact(query: np.ndarray, keep: np.ndarray, k: int) -> list[int]:
    scores = np.where(keep, _vectors() @ query, -np.inf)
    return [int(i) for i in np.argsort(-scores)[:k]]


@pytest.mark.parametrize("mode", ["dense", "funnel"])
def test_a_repeated_filtered_search_sends_no_count(opened, mode):
    store, client = opened
    query = Query(dense=_vectors()[7])
    client.clear()
    first = store.search(query, mode=mode, limit=5, prefetch_limit=20, filter=Eq("bucket", 7))
    # The row count and the filter's match count; the funnel's second stage searches a
    # candidate list, whose match count is its length: no third request.
    assert len(sizing(client)) == 2, sizing(client)
    client.clear()
    again = store.search(query, mode=mode, limit=5, prefetch_limit=20, filter=Eq("bucket", 7))
    assert sizing(client) == []  # the store has not changed: the same counts
    assert [h.id for h in again] == [h.id for h in first]
    assert first[0].id == 7


def test_a_write_or_delete_through_the_store_counts_again(opened):
    store, client = opened
    flt = Eq("bucket", 3)
    query = Query(dense=_vectors()[3])
    store.search(query, mode="dense", limit=5, filter=flt)
    store.upsert([Record(10_000, _vectors()[3], None, {"bucket": 3})])
    client.clear()
    hits = store.search(query, mode="dense", limit=5, filter=flt)
    assert len(sizing(client)) == 2
    assert {h.id for h in hits[:2]} == {3, 10_000}
    store.delete([10_000])
    client.clear()
    hits = store.search(query, mode="dense", limit=5, filter=flt)
    assert len(sizing(client)) == 2
    assert 10_000 not in [h.id for h in hits]


def test_a_filter_matching_nothing_is_counted_every_time(opened):
    """An empty count is never reused: a later match must not be hidden by a stale 0."""
    store, client = opened
    for _ in range(2):
        client.clear()
        hits = store.search(
            Query(dense=_vectors()[0]), mode="dense", limit=5, filter=Eq("bucket", 99)
        )
        assert hits == []
        assert len(sizing(client)) >= 1


@pytest.mark.parametrize("percent", [50, 90])
def test_a_broad_filter_on_lite_is_probed_and_ef_errs_wide(opened, percent):
    """Milvus Lite's count(*) of a filter materialises every match: the store asks for at most
    PROBE_ROWS of them, and the ef it sets is never below the rule's for the true count."""
    store, client = opened
    flt = Range("bucket", lt=percent // BUCKETS)
    keep = np.arange(DOCS) % BUCKETS < percent // BUCKETS
    assert keep.sum() > PROBE_ROWS
    q = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)
    client.clear()
    hits = store.search(Query(dense=q), mode="dense", limit=10, filter=flt)
    assert [h.id for h in hits] == exact(q, keep, 10)
    probes = [kw for kw in sizing(client) if kw.get("filter")]
    assert probes and all(kw.get("limit") == PROBE_ROWS for kw in probes), probes
    (search,) = [kw for name, kw in client.requests if name == "search"]
    assert search["search_params"]["params"]["ef"] >= filtered_ef(10, int(keep.sum()), DOCS)


def test_another_writers_rows_are_found_while_the_counts_are_kept(opened):
    """Kept counts only set ef: the search itself sees another store's new rows at once."""
    store, client = opened
    other = MilvusStore.open("counts", client=client)  # another writer on the same collection
    store._sizes.max_age = 3600.0  # however slow this machine: the counts are still kept
    flt = Eq("bucket", 4)
    query = Query(dense=_vectors()[4])
    store.search(query, mode="dense", limit=5, filter=flt)
    other.upsert([Record(20_000, _vectors()[4], None, {"bucket": 4})])
    client.clear()
    hits = store.search(query, mode="dense", limit=5, filter=flt)
    assert sizing(client) == []  # the old counts
    assert {h.id for h in hits[:2]} == {4, 20_000}


def test_counts_older_than_max_age_are_taken_again(opened):
    store, client = opened
    store._sizes.max_age = 0.0  # sizes.MAX_AGE_S (30 s) already passed
    for _ in range(2):
        client.clear()
        store.search(Query(dense=_vectors()[1]), mode="dense", limit=5, filter=Eq("bucket", 1))
        assert len(sizing(client)) == 2


def test_a_count_taken_while_the_store_writes_is_not_kept(opened, monkeypatch):
    """A search counting while another thread writes through the store: that count may miss
    the write, so the next search counts again."""
    store, client = opened
    real_query = client.inner.query
    writes = [Record(30_000, _vectors()[2], None, {"bucket": 2})]

    def query_then_write(*args, **kwargs):
        answer = real_query(*args, **kwargs)
        if writes and kwargs.get("filter"):  # the filter's match count (the first count)
            store.upsert(writes[:])  # lands after the count was taken
            writes.clear()
        return answer

    monkeypatch.setattr(client.inner, "query", query_then_write)
    flt = Eq("bucket", 2)
    store.search(Query(dense=_vectors()[2]), mode="dense", limit=5, filter=flt)
    monkeypatch.undo()
    client.clear()
    hits = store.search(Query(dense=_vectors()[2]), mode="dense", limit=5, filter=flt)
    # The filter is counted again; the row count, taken after the write, was kept.
    assert [kw["filter"] for kw in sizing(client)] == [store._expr(flt)]
    assert {h.id for h in hits[:2]} == {2, 30_000}

"""Ingest into a real Milvus server (PyPI ``milvus`` 2.3.5) that is killed mid-ingest.

The server is this module's own (``own_milvus_server``): it is ``kill -9``-ed from inside the
encoder, so the failure always lands between writes of a running ingest.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import SpyEncoder, assert_store_holds, write_text_corpus

from connectors import BackendError, StoreUnavailableError
from connectors.milvus import MilvusStore
from jina_vdb.ingest import ingest
from jina_vdb.ingest_types import IngestOptions
from jina_vdb.sources import iter_items

pytestmark = pytest.mark.slow

OPTIONS = IngestOptions(text_batch=2, write_batch=2, check_batch=4, progress=False)


class KillingEncoder(SpyEncoder):
    """The real encoder; runs ``action`` once, just before its ``at``-th call."""

    def __init__(self, inner: Any, at: int, action: Callable[[], None]) -> None:
        super().__init__(inner)
        self.at, self.action, self.fired = at, action, False

    def _check(self, contents: Any) -> None:
        if len(self.calls) + 1 == self.at and not self.fired:
            self.fired = True
            self.action()
        super()._check(contents)


def _items(folder: Path, tiny_embedder: Any) -> list[Any]:
    write_text_corpus(folder, 16, words=20)
    return list(iter_items([folder], tokenizer=tiny_embedder.tokenizer))


def _store(server: Any, name: str) -> MilvusStore:
    # Milvus 2.3 holds one vector field per collection: no Matryoshka prefix.
    return MilvusStore.create(name, uri=server.uri, dim=64, prefetch_dims=())


def _once_written(store: MilvusStore, then: Callable[[], None]) -> Callable[[], None]:
    """``then``, as soon as the ingest has written something (so the fault lands mid-ingest)."""

    def action() -> None:
        deadline = time.monotonic() + 120
        while store.count() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        then()

    return action


def _token_rows(store: MilvusStore) -> int:
    rows = store.client.query(f"{store.name}__tokens", filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"])


def _assert_exactly_once(store: MilvusStore, items: list[Any], tiny_embedder: Any) -> None:
    assert_store_holds(store, items, tiny_embedder)  # count == len(items), each with its vectors
    records = store.get([it.id for it in items], with_vectors=True)
    per_row = getattr(store.layout, "tokens_per_row", 1)  # packed: several tokens a row
    rows = sum(-(-len(r.multivector) // per_row) for r in records)
    assert _token_rows(store) == rows  # no token row written twice or left behind


def test_ingest_rides_out_a_server_crash_and_restart(
    own_milvus_server: Any, tiny_embedder: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = own_milvus_server
    items = _items(tmp_path / "texts", tiny_embedder)
    store = _store(server, f"crash_{uuid.uuid4().hex[:8]}")

    def crash_and_restart() -> None:
        server.kill()
        threading.Timer(2.0, server.start).start()  # back (healthy) ~9 s later

    encoder = KillingEncoder(tiny_embedder, at=3, action=_once_written(store, crash_and_restart))
    with caplog.at_level(logging.WARNING, logger="connectors"):
        summary = ingest(items, encoder, store, OPTIONS)
    assert encoder.fired
    assert summary.added == len(items) and not summary.failed
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert retries and "retry 1/8" in retries[0], retries
    _assert_exactly_once(store, items, tiny_embedder)
    store.close()


def test_outage_past_the_retry_budget_is_a_clear_error_and_a_rerun_completes(
    own_milvus_server: Any, tiny_embedder: Any, tmp_path: Path
) -> None:
    server = own_milvus_server
    items = _items(tmp_path / "texts", tiny_embedder)
    name = f"outage_{uuid.uuid4().hex[:8]}"
    store = _store(server, name)
    store.retries = 2  # a 1.5 s budget: the server stays down longer than that
    encoder = KillingEncoder(tiny_embedder, at=3, action=_once_written(store, server.kill))
    with pytest.raises(BackendError) as err:  # PartialWriteError: what was / was not written
        ingest(items, encoder, store, OPTIONS)
    message = str(err.value)
    assert isinstance(err.value.__cause__, StoreUnavailableError)
    assert f"cannot reach Milvus at {server.uri}" in message
    assert "gave up after 2 retries" in message and "Not written" in message
    store.close()

    server.start()
    again = _store(server, name)  # the default budget covers the reload after the restart
    summary = ingest(items, tiny_embedder, again, OPTIONS)
    assert summary.added + summary.skipped == len(items) and summary.skipped > 0
    _assert_exactly_once(again, items, tiny_embedder)
    again.close()

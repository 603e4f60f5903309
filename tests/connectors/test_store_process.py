"""An embedded qdrant-edge store served from a child process (connectors.store_process)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from corpus import make_corpus

from connectors import (
    BackendError,
    Eq,
    PartialWriteError,
    RecordError,
    UnsupportedSpecError,
)
from connectors.errors import pack_error, unpack_error
from connectors.qdrant import QdrantStore
from connectors.store_process import StoreProcess, store_in_process

pytest.importorskip("qdrant_edge")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(24)


def _same_records(a, b) -> None:
    assert [r.id for r in a] == [r.id for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.payload == y.payload
        np.testing.assert_array_equal(x.dense, y.dense)
        np.testing.assert_array_equal(x.multivector, y.multivector)


def test_child_writes_what_the_store_would_and_hands_the_store_back(tmp_path, corpus):
    ids = corpus.ids
    with QdrantStore.create("direct", path=tmp_path, spec=corpus.spec) as direct:
        direct.upsert(corpus.records)
        expected = direct.get(ids, with_vectors=True)
    with QdrantStore.create("child", path=tmp_path, spec=corpus.spec) as store:
        with store_in_process(store) as child:
            assert child.spec == store.spec
            assert child.upsert(corpus.records[:10]) == 10
            assert child.upsert(corpus.records[10:]) == len(ids) - 10
            assert child.upsert(corpus.records[:3]) == 3  # idempotent by id
            assert child.count() == len(ids)
            assert child.count(Eq("kind", "even")) == len(ids) // 2
            assert sorted(map(str, (r.id for r in child.scan(page_size=5)))) == sorted(
                map(str, ids)
            )
            child.delete([ids[0]])
            assert [r.id for r in child.get(ids[:2])] == ids[1:2]
            child.upsert(corpus.records[:1])
            child.add_payload_indexes({"lang": "keyword"})
            process = child._process
        assert not process.is_alive()
        # the parent's store is live again and sees what the child wrote, and its index
        _same_records(store.get(ids, with_vectors=True), expected)
        assert ("lang", "keyword") in {(k, t.value) for k, t in store.spec.payload_indexes}


def test_errors_come_back_with_their_type_and_the_record(tmp_path, corpus):
    with QdrantStore.create("c", path=tmp_path, spec=corpus.spec) as store:
        bad = dataclasses.replace(corpus.records[1], dense=np.ones(3, dtype=np.float32))
        with store_in_process(store) as child:
            with pytest.raises(RecordError, match="doc-1") as caught:
                child.upsert([corpus.records[0], bad])
            assert caught.value.index == 1 and caught.value.record_id == "doc-1"
            assert child.count() == 0  # validation refuses the whole batch first
            child.upsert([corpus.records[0]])
        assert store.count() == 1


def test_error_attributes_survive_the_pipe():
    error = PartialWriteError(
        "wrote 1 of 3", index=1, record_id="b", written_ids=["a"], unwritten_ids=["b", "c"]
    )
    back = unpack_error(*pack_error(error))
    assert type(back) is PartialWriteError and str(back) == "wrote 1 of 3"
    assert (back.index, back.written_ids, back.unwritten_ids) == (1, ["a"], ["b", "c"])
    unknown = unpack_error("no_such_module", "Oops", "it broke", {})
    assert isinstance(unknown, BackendError) and "Oops: it broke" in str(unknown)


def test_only_an_embedded_qdrant_store_is_lent(tmp_path, corpus):
    milvus = pytest.importorskip("connectors.milvus")
    with (
        milvus.MilvusStore.create("c", uri=str(tmp_path / "m.db"), spec=corpus.spec) as store,
        pytest.raises(UnsupportedSpecError, match="qdrant-edge"),
        store_in_process(store),
    ):
        pass


def test_a_dead_child_is_an_error_naming_the_collection(tmp_path, corpus):
    with QdrantStore.create("c", path=tmp_path, spec=corpus.spec) as store:
        with store_in_process(store) as child:
            child.upsert(corpus.records[:4])
            child._process.kill()
            child._process.join()
            with pytest.raises(BackendError, match=r"'c'.*writer process died"):
                child.upsert(corpus.records[4:8])
        # reloaded in the parent: the WAL replay keeps what the child had written
        assert store.count() == 4


def test_the_child_closes_the_store_when_its_parent_dies(tmp_path, corpus):
    """A parent killed outright: the child sees its pipe close, closes the shard and exits."""
    with QdrantStore.create("c", path=tmp_path, spec=corpus.spec):
        pass
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / "tests" / "connectors")!r}]
        from corpus import make_corpus
        from connectors.store_process import StoreProcess
        if __name__ == "__main__":
            child = StoreProcess({str(tmp_path)!r}, "c")
            child.upsert(make_corpus(24).records[:5])
            print(child._process.pid, flush=True)
            os._exit(0)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.split()[-1])
    # the child exits by itself once the pipe is gone; then the folder opens here
    deadline = 60.0
    while deadline > 0 and _alive(pid):
        time.sleep(0.2)
        deadline -= 0.2
    assert not _alive(pid)
    with QdrantStore.open("c", path=tmp_path) as store:
        assert store.count() == 5


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_store_process_refuses_calls_after_close(tmp_path, corpus):
    with QdrantStore.create("c", path=tmp_path, spec=corpus.spec):
        pass
    child = StoreProcess(tmp_path, "c")
    child.close()
    child.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        child.count()

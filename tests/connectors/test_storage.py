"""Where vectors live: placements per field kind on every backend, and qdrant-edge's files.

Every backend round-trips the placements it honours, refuses the others before creating
anything, and fills unset ones with its default. qdrant-edge keeps token vectors
memory-mapped by default, is described by ``info`` without loading its shard, refuses a
locked folder before loading, and announces the WAL replay after a crash.
"""

from __future__ import annotations

import itertools
import json
import logging
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from backends import BACKENDS, Backend
from corpus import make_corpus

from connectors import (
    CollectionNotFoundError,
    CollectionSpec,
    SchemaMismatchError,
    StoreLockedError,
)
from connectors.errors import UnsupportedSpecError
from connectors.qdrant import QdrantStore
from connectors.stores import collection_info

REPO = Path(__file__).resolve().parents[2]
#: (multivector_on_disk, dense_on_disk) each backend honours, and its default for None.
HONOURED = {
    "qdrant-edge": (set(itertools.product((False, True), repeat=2)), (True, False)),
    "qdrant-local": ({(False, False)}, (False, False)),
    "milvus-lite": ({(False, False)}, (False, False)),
}


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(6)


def _spec(corpus, tokens: bool | None, dense: bool | None) -> CollectionSpec:
    return CollectionSpec.from_dict(
        {**corpus.spec.to_dict(), "multivector_on_disk": tokens, "dense_on_disk": dense}
    )


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_placements_round_trip_or_are_refused(name, tmp_path, corpus):
    backend: Backend = BACKENDS[name]
    honoured, default = HONOURED[name]
    for n, (tokens, dense) in enumerate(itertools.product((False, True, None), repeat=2)):
        spec = _spec(corpus, tokens, dense)
        wanted = (default[0] if tokens is None else tokens, default[1] if dense is None else dense)
        if wanted not in honoured:
            with pytest.raises(UnsupportedSpecError, match="on_disk=True"):
                backend.create(tmp_path, f"c{n}", spec)
            with pytest.raises(CollectionNotFoundError):  # refused before anything was created
                backend.open(tmp_path, f"c{n}")
            continue
        store = backend.create(tmp_path, f"c{n}", spec)
        store.upsert(corpus.records[:3])
        store.close()
        reopened = backend.open(tmp_path, f"c{n}")
        try:
            got = (reopened.spec.multivector_on_disk, reopened.spec.dense_on_disk)
            assert got == wanted, (tokens, dense)
            assert reopened.info()["spec"]["multivector_on_disk"] is wanted[0]
            assert reopened.count() == 3
        finally:
            reopened.close()


def test_unset_placement_accepts_the_existing_one_and_a_different_one_is_refused(tmp_path, corpus):
    QdrantStore.create("p", path=tmp_path, spec=_spec(corpus, False, True)).close()
    with QdrantStore.create("p", path=tmp_path, spec=corpus.spec) as store:  # None: as stored
        assert (store.spec.multivector_on_disk, store.spec.dense_on_disk) == (False, True)
    with pytest.raises(SchemaMismatchError, match="multivector_on_disk: existing=False"):
        QdrantStore.create("p", path=tmp_path, spec=_spec(corpus, True, None))


def test_specs_written_before_placements_read_back_as_stored():
    old = {"dim": 64, "prefetch_dims": [16], "on_disk": False}  # tokens and dense in RAM
    spec = CollectionSpec.from_dict(old)
    assert (spec.multivector_on_disk, spec.dense_on_disk) == (False, False)
    assert CollectionSpec.from_dict({**old, "on_disk": True}).multivector_on_disk is True
    with pytest.raises(ValueError, match="dense_on_disk must be True, False or None"):
        CollectionSpec(dense_on_disk="yes")  # type: ignore[arg-type]


def _storage_types(folder: Path) -> dict[str, set[str]]:
    """Vector field -> the storage types of its segments (Qdrant's segment.json)."""
    kinds: dict[str, set[str]] = {}
    for seg in (folder / "shard" / "segments").glob("*/segment.json"):
        for field, data in json.loads(seg.read_text())["config"]["vector_data"].items():
            kinds.setdefault(field, set()).add(data["storage_type"])
    return kinds


@pytest.mark.parametrize(("dense_on_disk"), [False, True])
def test_edge_segments_map_what_is_on_disk(tmp_path, corpus, dense_on_disk):
    with QdrantStore.create("s", path=tmp_path, spec=_spec(corpus, None, dense_on_disk)) as s:
        s.upsert(corpus.records)
        s.optimize()
    kinds = _storage_types(tmp_path / "s")
    # "InRam..." storages are read in whole when the shard loads; the others are mapped.
    assert not any(k.startswith("InRam") for k in kinds["multi"]), kinds
    dense_in_ram = {k.startswith("InRam") for k in kinds["dense"] | kinds["dense_32"]}
    assert dense_in_ram == {not dense_on_disk}, kinds


def test_edge_info_without_loading_and_lock_refused_first(tmp_path, corpus):
    url = f"qdrant:{tmp_path}"
    with QdrantStore.create("i", path=tmp_path, spec=corpus.spec) as store:
        store.upsert(corpus.records)
        with pytest.raises(StoreLockedError, match=str(tmp_path / "i")):
            collection_info(url, "i")  # refused by the lock probe, nothing loaded
    info = collection_info(url, "i")
    assert info["count"] == len(corpus.records) and "not loaded" in info["counted"]
    assert info["storage"]["token_vectors"].startswith("on disk")
    # A store that dies with the shard open leaves its marker: the counts may be stale,
    # so info loads the shard (and counts exactly).
    (tmp_path / "i" / "jina_vdb.open").write_text('{"pid": 1}')
    assert QdrantStore.describe("i", path=tmp_path) is None
    info = collection_info(url, "i")
    assert info["count"] == len(corpus.records) and "counted" not in info
    with pytest.raises(CollectionNotFoundError):
        collection_info(url, "missing")


def test_edge_wal_replay_after_kill_is_announced(tmp_path, corpus, caplog):
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO / "tests" / "connectors")!r})
        from corpus import make_corpus
        from connectors.qdrant import QdrantStore
        corpus = make_corpus(6)
        store = QdrantStore.create("k", path={str(tmp_path)!r}, spec=corpus.spec)
        store.upsert(corpus.records)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=120)
    assert run.returncode == -signal.SIGKILL
    caplog.set_level(logging.INFO, logger="connectors")
    with QdrantStore.open("k", path=tmp_path) as store:
        assert store.count() == len(corpus.records)
    messages = [r.getMessage() for r in caplog.records]
    before = [m for m in messages if "not closed cleanly" in m and "replaying" in m]
    after = [m for m in messages if m.startswith("recovered qdrant-edge collection 'k' in")]
    assert before and after, messages
    assert messages.index(before[0]) < messages.index(after[0])

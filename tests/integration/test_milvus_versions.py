"""What Milvus 2.3 (the real 2.3.5 server of PyPI ``milvus``) cannot hold is refused at
create time, naming the server's version and the minimum, and leaves nothing behind."""

from __future__ import annotations

import uuid

import pytest

from connectors import BackendError, CollectionSpec
from connectors.errors import UnsupportedSpecError
from connectors.milvus import Layout, MilvusStore
from connectors.milvus import versions as mv

pytestmark = pytest.mark.integration

SPEC = CollectionSpec(dim=32, prefetch_dims=())


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _left(server, name: str) -> list[str]:
    """Collections on the server whose name starts with ``name`` (the companion included)."""
    from pymilvus import MilvusClient

    client = MilvusClient(server.uri)
    try:
        return [c for c in client.list_collections() if c.startswith(name)]
    finally:
        client.close()


def test_the_local_server_is_a_2_3_server_not_lite(milvus_server):
    name = _name("kind")
    store = MilvusStore.create(name, uri=milvus_server.uri, spec=SPEC)
    assert store.server.version.startswith("v2.3.") and store.server.version.endswith("-lite")
    assert not store.server.lite and store.layout.kind is Layout.PACKED
    indexes = store.client.list_indexes(f"{name}__tokens")
    assert "doc_id_trie" in indexes, indexes  # INVERTED does not exist on 2.3
    store.drop()
    store.close()


def test_prefix_fields_need_2_4_and_nothing_is_created(milvus_server):
    name = _name("prefix")
    with pytest.raises(UnsupportedSpecError) as err:
        MilvusStore.create(name, uri=milvus_server.uri, dim=32, prefetch_dims=(8,))
    message = str(err.value)
    assert "v2.3.5-lite" in message and "Milvus >= 2.4.0" in message and "dense_8" in message
    assert _left(milvus_server, name) == []


def test_muvera_field_needs_2_4_and_nothing_is_created(milvus_server):
    name = _name("muvera")
    with pytest.raises(UnsupportedSpecError) as err:
        MilvusStore.create(name, uri=milvus_server.uri, dim=32, prefetch_dims=(), muvera=True)
    message = str(err.value)
    assert "v2.3.5-lite" in message and "Milvus >= 2.4.0" in message
    assert "(dense, muvera)" in message and "muvera=None" in message
    assert _left(milvus_server, name) == []


def test_struct_layout_needs_2_6_4(milvus_server):
    name = _name("struct")
    with pytest.raises(UnsupportedSpecError, match=r"Milvus >= 2\.6\.4.*v2\.3\.5-lite"):
        MilvusStore.create(name, uri=milvus_server.uri, spec=SPEC, layout="struct")
    assert _left(milvus_server, name) == []


def test_tokens_on_disk_are_refused_on_2_3_naming_the_server_setting(milvus_server):
    name = _name("mmap")
    spec = CollectionSpec(dim=32, prefetch_dims=(), multivector_on_disk=True)
    with pytest.raises(UnsupportedSpecError, match=r"v2\.3\.5-lite.*queryNode\.mmapDirPath"):
        MilvusStore.create(name, uri=milvus_server.uri, spec=spec)
    assert _left(milvus_server, name) == []


def test_a_create_the_server_refuses_halfway_leaves_no_orphan(milvus_server, monkeypatch):
    """Claiming 2.4 makes the real 2.3 server refuse the companion's INVERTED index after the
    companion exists: the old orphan ``<name>__tokens``. Now it is removed again."""
    claim = mv.ServerInfo("v2.4.0", lite=False)
    monkeypatch.setattr(mv.ServerInfo, "detect", classmethod(lambda cls, *a, **k: claim))
    name = _name("half")
    with pytest.raises(BackendError, match="INVERTED|Trie"):
        MilvusStore.create(name, uri=milvus_server.uri, spec=SPEC)
    monkeypatch.undo()
    assert _left(milvus_server, name) == []
    store = MilvusStore.create(name, uri=milvus_server.uri, spec=SPEC)  # the name is free again
    store.drop()
    store.close()


def test_collection_names_servers_refuse_are_refused_up_front(milvus_server, tmp_path):
    for uri in (milvus_server.uri, str(tmp_path / "lite.db")):
        with pytest.raises(ValueError, match="not valid on Milvus servers.*'demo_tiny'"):
            MilvusStore.create("demo-tiny", uri=uri, spec=SPEC)

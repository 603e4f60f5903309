"""How the contract suite opens each backend. Adding a backend = adding one entry here.

Each entry: (create(tmp_path, name, spec) -> store, open(tmp_path, name) -> store,
capabilities, and how the database can lose a collection under an open store). Stores are
imported lazily so a missing backend fails its own tests only.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors import CollectionSpec, VectorStore


@dataclass(frozen=True)
class Backend:
    name: str
    create: Callable[[Path, str, CollectionSpec], VectorStore]
    open: Callable[[Path, str], VectorStore]
    #: Embedded stores: a second process opening the same folder gets StoreLockedError.
    embedded: bool = True
    #: The optional CollectionSpec fields the backend implements (``connectors.spec.
    #: OPTIONAL_FEATURES``): a field name for every value, ``"field=value"`` for one.
    spec_features: frozenset[str] = frozenset()
    #: Removes the collection's data behind the open store's back (another client, a user).
    lose_collection: Callable[[Any], None] | None = None
    #: Several vector fields: Matryoshka prefixes (``dense_<k>``, funnel mode) and the MUVERA
    #: encoding (muvera mode); not on Milvus 2.3 (one vector field per collection).
    prefix_fields: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _qdrant_edge_create(tmp: Path, name: str, spec: CollectionSpec) -> VectorStore:
    from connectors.qdrant import QdrantStore

    return QdrantStore.create(name, path=tmp / "qdrant_edge", spec=spec)


def _qdrant_edge_open(tmp: Path, name: str) -> VectorStore:
    from connectors.qdrant import QdrantStore

    return QdrantStore.open(name, path=tmp / "qdrant_edge")


def _qdrant_local_create(tmp: Path, name: str, spec: CollectionSpec) -> VectorStore:
    from connectors.qdrant import QdrantStore

    return QdrantStore.create(name, local=str(tmp / "qdrant_local"), spec=spec)


def _qdrant_local_open(tmp: Path, name: str) -> VectorStore:
    from connectors.qdrant import QdrantStore

    return QdrantStore.open(name, local=str(tmp / "qdrant_local"))


def _milvus_lite_create(tmp: Path, name: str, spec: CollectionSpec) -> VectorStore:
    from connectors.milvus import MilvusStore

    return MilvusStore.create(name, uri=str(tmp / "milvus.db"), spec=spec)


def _milvus_lite_open(tmp: Path, name: str) -> VectorStore:
    from connectors.milvus import MilvusStore

    return MilvusStore.open(name, uri=str(tmp / "milvus.db"))


#: qdrant-edge and servers; local mode keeps no quantized copy and refuses quantization.
QDRANT_FEATURES = frozenset(
    {"quantization", "multivector_quantization", "muvera", "multivector_dtype", "dense_dtype"}
)
BACKENDS = {
    "qdrant-edge": Backend(
        "qdrant-edge",
        _qdrant_edge_create,
        _qdrant_edge_open,
        spec_features=QDRANT_FEATURES,
        lose_collection=lambda store: shutil.rmtree(store.folder),
    ),
    "qdrant-local": Backend(
        "qdrant-local",
        _qdrant_local_create,
        _qdrant_local_open,
        spec_features=frozenset({"muvera", "multivector_dtype=float32"}),
        lose_collection=lambda store: store._client.delete_collection(store.name),
    ),
    "milvus-lite": Backend(
        "milvus-lite",
        _milvus_lite_create,
        _milvus_lite_open,
        spec_features=frozenset({"muvera", "multivector_dtype=float32", "multivector_dtype=uint8"}),
        lose_collection=lambda store: store.client.drop_collection(store.name),
    ),
}

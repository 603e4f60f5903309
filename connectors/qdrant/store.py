"""QdrantStore: one-line create/open of a collection on qdrant-edge, local mode or a server.

    QdrantStore.create("docs")                          # embedded qdrant-edge in ./qdrant_data
    QdrantStore.create("docs", url="http://host:6333")  # a Qdrant server (gRPC preferred)
    QdrantStore.create("docs", client=QdrantClient(":memory:"))  # any QdrantClient

The engine-specific classes live in ``edge.py`` (EdgeShard) and ``client.py`` (QdrantClient);
this module holds what they share and picks one from the arguments.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base import VectorStore
from ..clients import QdrantClientHandle
from ..errors import ConnectorError
from ..query import Hit
from ..records import Record, RecordId
from ..spec import OPTIONAL_FEATURES, CollectionSpec, MuveraParams
from . import convert, schema

logger = logging.getLogger(__name__)

DEFAULT_PATH = "./qdrant_data"
DEFAULT_TIMEOUT = 30
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class QdrantStore(VectorStore):
    """A collection in Qdrant: an embedded qdrant-edge shard, qdrant-client local mode or a server.

    Use ``QdrantStore.create`` / ``QdrantStore.open``; the instance is a subclass for the engine
    chosen. String ids are stored as stable uuid5 point ids with the original id in the
    payload key ``_jvdb_id``, which results never show.
    """

    #: int8 / binary quantization of the dense and token fields (servers and qdrant-edge;
    #: local mode refuses them: it ignores quantization_config).
    spec_features = frozenset(OPTIONAL_FEATURES)
    #: A stage on a quantized field keeps this many times its limit by the quantized scores,
    #: then rescores them with the original vectors (Qdrant's QuantizationSearchParams).
    oversampling: float = 2.0

    @classmethod
    def create(
        cls,
        name: str,
        *,
        path: str | os.PathLike[str] | None = None,
        local: str | os.PathLike[str] | None = None,
        url: str | None = None,
        api_key: str | None = None,
        client: QdrantClientHandle | None = None,
        spec: CollectionSpec | None = None,
        dim: int = 2048,
        prefetch_dims: Sequence[int] = (128,),
        multivector: bool = True,
        multivector_dtype: str = "float16",
        quantization: str = "none",
        multivector_quantization: str = "none",
        token_pooling: int | None = None,
        multivector_on_disk: bool | None = None,
        dense_on_disk: bool | None = None,
        muvera: MuveraParams | bool | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        prefer_grpc: bool | None = None,
        grpc_port: int | None = None,
        timeout: int = DEFAULT_TIMEOUT,
    ) -> QdrantStore:
        """Create a collection, or open it when it exists with the same spec.

        Args:
            name: collection name (letters, digits, ``_``, ``-``, ``.``).
            path: folder of embedded qdrant-edge collections (the default: ``./qdrant_data``);
                the collection lives in ``<path>/<name>/``.
            local: qdrant-client local mode, ``":memory:"`` or a folder (one process per folder).
            url: a Qdrant server, e.g. ``http://host:6333``. Its port is honoured: REST goes
                to it; gRPC (faster for token vectors) is used on port 6334 when the URL has no
                port or 6333, on ``grpc_port`` when given, and otherwise only when asked.
            api_key: server API key; defaults to the ``QDRANT_API_KEY`` environment variable.
            client: an existing ``QdrantClient`` (server or local mode); the caller closes it.
            spec: the whole spec at once, instead of dim ... dense_on_disk.
            dim, prefetch_dims, multivector, multivector_dtype, quantization,
                multivector_quantization, token_pooling: the ``CollectionSpec`` fields.
            multivector_on_disk, dense_on_disk: placement of the token / dense vectors; None
                (the default): tokens memory-mapped from disk, dense vectors in RAM, on
                qdrant-edge and servers; everything in RAM in local mode, which refuses True.
            muvera: store a MUVERA encoding of the token vectors for ``mode="muvera"``
                (``MuveraParams``, or True for the defaults).
            shard_number, replication_factor: passed to the server at creation.
            prefer_grpc: True for gRPC, False for REST, None (default) as described at url.
            grpc_port: the server's gRPC port (implies gRPC).
            timeout: seconds per request.

        Raises:
            SchemaMismatchError: the collection exists with another spec (nothing is changed).
            UnsupportedSpecError: a placement or quantization the engine cannot honour
                (local mode: on disk, quantization).
            StoreLockedError: an embedded folder is open in another process.
            StoreUnavailableError: the server cannot be reached (the message names the URL).
        """
        spec = cls._requested_spec(
            spec,
            dim=dim,
            prefetch_dims=tuple(prefetch_dims),
            multivector=multivector,
            multivector_dtype=multivector_dtype,
            quantization=quantization,
            multivector_quantization=multivector_quantization,
            token_pooling=token_pooling,
            multivector_on_disk=multivector_on_disk,
            dense_on_disk=dense_on_disk,
            muvera=muvera,
        )
        where = _where(path=path, local=local, url=url, client=client)
        _check_name(name)
        server_opts = {"shard_number": shard_number, "replication_factor": replication_factor}
        if where[0] in ("path", "local") and any(v is not None for v in server_opts.values()):
            raise ValueError(
                "shard_number and replication_factor apply to Qdrant servers (url= or client=), "
                f"not to {where[0]}="
            )
        if where[0] == "path":
            from .edge import EdgeQdrantStore

            return EdgeQdrantStore.create_at(name, Path(where[1]), spec)
        from .client import ClientQdrantStore

        return ClientQdrantStore.open_on(
            name,
            where,
            spec,
            api_key=api_key,
            transport=(prefer_grpc, grpc_port),
            timeout=timeout,
            **server_opts,
        )

    @classmethod
    def open(
        cls,
        name: str,
        *,
        path: str | os.PathLike[str] | None = None,
        local: str | os.PathLike[str] | None = None,
        url: str | None = None,
        api_key: str | None = None,
        client: QdrantClientHandle | None = None,
        prefer_grpc: bool | None = None,
        grpc_port: int | None = None,
        timeout: int = DEFAULT_TIMEOUT,
    ) -> QdrantStore:
        """Open an existing collection; its spec is read back from the database.

        Arguments as in ``create``. Raises CollectionNotFoundError when it does not exist.
        """
        where = _where(path=path, local=local, url=url, client=client)
        _check_name(name)
        if where[0] == "path":
            from .edge import EdgeQdrantStore

            return EdgeQdrantStore.open_at(name, Path(where[1]))
        from .client import ClientQdrantStore

        return ClientQdrantStore.open_on(
            name,
            where,
            None,
            api_key=api_key,
            transport=(prefer_grpc, grpc_port),
            timeout=timeout,
        )

    @classmethod
    def describe(cls, name: str, *, path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """``info()`` of an embedded collection from its files, without loading its shard.

        None when only loading can count (no clean close recorded). Raises
        CollectionNotFoundError, or StoreLockedError while another process has it open.
        """
        _check_name(name)
        from .edge import EdgeQdrantStore

        return EdgeQdrantStore.describe_at(name, Path(os.fspath(path)))

    # -- shared by both engines ---------------------------------------------------------
    def _rescoring(self) -> convert.Rescoring:
        return convert.Rescoring(schema.quantized_fields(self.spec), self.oversampling)

    def optimize(self) -> None:
        """Build pending indexes now (qdrant-edge); servers and local mode need nothing."""

    def _order_records(
        self, ids: Sequence[RecordId], points: Sequence[Any], with_vectors: bool
    ) -> list[Record]:
        by_id: dict[RecordId, Record] = {}
        for point in points:
            record = convert.to_record(point, self.spec, with_vectors)
            by_id[record.id] = record
        return [by_id[i] for i in ids if i in by_id]

    @staticmethod
    def _point_ids(ids: Sequence[RecordId]) -> list[int | str]:
        return [convert.point_id(i) for i in ids]

    @staticmethod
    def _hits(points: Sequence[Any]) -> list[Hit]:
        return [convert.to_hit(p) for p in points]

    def _closed_error(self) -> ConnectorError:
        return ConnectorError(f"collection {self.name!r} is closed (or dropped); open it again")


def _where(
    *,
    path: str | os.PathLike[str] | None,
    local: str | os.PathLike[str] | None,
    url: str | None,
    client: QdrantClientHandle | None,
) -> tuple[str, Any]:
    """Which engine: exactly one of path / local / url / client; nothing -> path=./qdrant_data."""
    chosen: dict[str, Any] = {
        k: v
        for k, v in (("path", path), ("local", local), ("url", url), ("client", client))
        if v is not None
    }
    if len(chosen) > 1:
        raise ValueError(
            f"give one of path=, local=, url=, client=; got {', '.join(sorted(chosen))}"
        )
    if not chosen:
        return "path", DEFAULT_PATH
    ((kind, value),) = chosen.items()
    if kind == "url" and not isinstance(value, str):
        raise TypeError(f"url must be a string like 'http://host:6333', got {type(value).__name__}")
    return kind, (os.fspath(value) if kind in ("path", "local") else value)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise ValueError(
            f"collection name must be 1-255 letters, digits, '_', '-' or '.' (not starting with "
            f"'_', '-' or '.'), got {name!r}"
        )

"""QdrantStore over qdrant-client: a Qdrant server (gRPC or REST) or qdrant-client local mode.

The spec is kept in the collection's metadata (Qdrant >= 1.16); for collections without it
the spec is derived from the named vectors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..clients import QdrantClientHandle
from ..errors import (
    BackendError,
    CollectionNotFoundError,
    ConnectorError,
    StoreLockedError,
    StoreUnavailableError,
    TransientServerError,
)
from ..filters import Filter
from ..names import check_collection_name
from ..payload_index import PayloadIndexes
from ..query import Hit, SearchPlan
from ..records import PreparedRecord, Record, RecordId
from ..spec import CollectionSpec, StoragePolicy, check_supported, reconcile_spec
from . import _deps, convert, schema
from .store import QdrantStore

logger = logging.getLogger(__name__)

T = TypeVar("T")
API_KEY_ENV = "QDRANT_API_KEY"
#: Byte budget of one upsert, measured on the stored dtype (what PreparedRecord.nbytes counts).
#: gRPC sends every float as 4 bytes (float16 token vectors double), REST as ~20 JSON
#: characters: both stay well under the server's 32 MiB request limit.
GRPC_REQUEST_BYTES = 8 * 1024 * 1024
REST_REQUEST_BYTES = 2 * 1024 * 1024
LOCAL_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_REST_PORT = 6333
DEFAULT_GRPC_PORT = 6334
#: Token vectors on disk (``on_disk=True``) by default, dense vectors and graphs in RAM.
SERVER_STORAGE = StoragePolicy("a Qdrant server")
#: qdrant-client local mode keeps every point in Python objects and ignores ``on_disk``.
LOCAL_STORAGE = StoragePolicy(
    "qdrant-client local mode",
    multivector_on_disk=(False,),
    dense_on_disk=(False,),
    defaults=(False, False),
    reason="it holds every point in RAM (pure Python) and ignores on_disk; use qdrant-edge "
    "(path=) or a server",
)
#: The optional spec fields local mode honours (quantization is not one: see below).
LOCAL_FEATURES = frozenset({"muvera", "multivector_dtype=float32"})
#: Why local mode refuses quantization and the storage datatypes (it never builds the copy,
#: and holds every vector as a float numpy array whatever the datatype says).
LOCAL_QUANTIZATION = (
    "it keeps no quantized copy and no other datatype (its searches are brute force on "
    "float arrays) and would ignore the option; use qdrant-edge (path=) or a server"
)


class ClientQdrantStore(QdrantStore):
    """A collection reached through a ``QdrantClient`` (server or local mode)."""

    hnsw_ef: int | None = 128
    _secret: str | None = None  # the API key, redacted from every message

    def __init__(
        self,
        name: str,
        spec: CollectionSpec,
        client: QdrantClientHandle,
        *,
        owns_client: bool,
        where: str,
    ) -> None:
        super().__init__(name, spec)
        self.where = where  # for messages: a URL without credentials, or the local folder
        self._client: QdrantClientHandle | None = client
        self._owns_client = owns_client

    # -- create / open ------------------------------------------------------------------
    @classmethod
    def open_on(
        cls,
        name: str,
        where: tuple[str, Any],
        spec: CollectionSpec | None,
        *,
        api_key: str | None,
        transport: tuple[bool | None, int | None],
        timeout: int,
        shard_number: int | None = None,
        replication_factor: int | None = None,
    ) -> ClientQdrantStore:
        """Open the collection and read its spec back (``spec=None``), or create it with
        ``spec`` (opening it when it exists with the same spec)."""
        store = cls._connect(
            name,
            where,
            spec or CollectionSpec(),
            api_key=api_key,
            transport=transport,
            timeout=timeout,
        )
        try:
            existing = store._existing_spec()
            if existing is not None:
                store.spec = existing
                if spec is not None:
                    reconcile_spec(
                        spec, existing, name=name, where=f"at {store.where}", opener="QdrantStore"
                    )
                    store.add_payload_indexes(spec.payload_indexes)
                return store
            if spec is None:
                raise CollectionNotFoundError(
                    f"no collection {name!r} at {store.where}; create it with QdrantStore.create"
                )
            check_collection_name(name, "qdrant")
            if store.where.startswith("local mode"):
                local = "qdrant-client local mode"
                check_supported(spec, LOCAL_FEATURES, local, LOCAL_QUANTIZATION)
            spec = store.storage_policy().apply(spec)
            store.spec = spec
            logger.info("creating Qdrant collection %r at %s", name, store.where)
            store._call(
                lambda c: c.create_collection(
                    name,
                    vectors_config=schema.client_vectors_config(spec),
                    shard_number=shard_number,
                    replication_factor=replication_factor,
                    metadata=schema.spec_metadata(spec),
                )
            )
            store._create_payload_indexes(spec.payload_indexes)
            return store
        except BaseException:
            store.close()
            raise

    @classmethod
    def _connect(
        cls,
        name: str,
        where: tuple[str, Any],
        spec: CollectionSpec,
        *,
        api_key: str | None,
        transport: tuple[bool | None, int | None],
        timeout: int,
    ) -> ClientQdrantStore:
        kind, value = where
        _deps.require("qdrant_client")
        from qdrant_client import QdrantClient

        key = None
        client: QdrantClientHandle
        if kind == "client":
            if not isinstance(value, QdrantClient):
                raise TypeError(
                    f"client must be a qdrant_client.QdrantClient, got {type(value).__name__}"
                )
            client = value
        elif kind == "local":
            client = _local_client(value)
        else:
            key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
            client = QdrantClient(
                url=value,
                api_key=key,
                timeout=timeout,
                check_compatibility=False,
                **server_transport(value, *transport),
            )
        store = cls(name, spec, client, owns_client=kind != "client", where="")
        store._secret = key or None
        store._describe(client.init_options)
        return store

    def _describe(self, options: dict[str, Any]) -> None:
        """Set ``where`` (for messages) and the request byte budget from the client's settings."""
        if options.get("location") == ":memory:" or options.get("path"):
            self.where = f"local mode {options.get('path') or ':memory:'}"
            self.max_request_bytes = LOCAL_REQUEST_BYTES
            self.hnsw_ef = None  # local mode is brute force and warns about search params
            return
        grpc = bool(options.get("prefer_grpc"))
        url = (
            options.get("url")
            or options.get("location")
            or f"{options.get('host') or 'localhost'}:{options.get('port')}"
        )
        self.where = _display_url(str(url), grpc_port=options.get("grpc_port") if grpc else None)
        self.max_request_bytes = GRPC_REQUEST_BYTES if grpc else REST_REQUEST_BYTES
        logger.info("Qdrant server at %s (%s)", self.where, "gRPC" if grpc else "REST")

    def storage_policy(self) -> StoragePolicy:
        """Servers honour both placements; local mode holds everything in RAM (pure Python)."""
        if self.where.startswith("local mode"):
            return LOCAL_STORAGE
        return SERVER_STORAGE

    def _existing_spec(self) -> CollectionSpec | None:
        if not self._call(lambda c: c.collection_exists(self.name)):
            return None
        info = self._call(lambda c: c.get_collection(self.name))
        spec = schema.spec_from_metadata(getattr(info.config, "metadata", None))
        if spec is None:
            logger.warning(
                "collection %r has no jina-vdb metadata; deriving its spec from its vectors",
                self.name,
            )
            spec = schema.spec_from_client_params(
                self.name, info.config.params.vectors, info.config.quantization_config
            )
        return spec

    # -- the client calls, with server faults translated ---------------------------------
    def _call(self, fn: Callable[[QdrantClientHandle], T]) -> T:
        client = self._client
        if client is None:
            raise self._closed_error()
        return self._translated(lambda: fn(client))

    def _translate_error(self, error: Exception) -> ConnectorError | None:
        return _translate_server_error(error, self.name, self.where, self._secret)

    # -- writes -------------------------------------------------------------------------
    def _write(self, records: Sequence[PreparedRecord]) -> None:
        points = convert.client_points(records, self.spec)
        self._call(lambda c: c.upsert(self.name, points=points, wait=True))

    def _create_payload_indexes(self, indexes: PayloadIndexes) -> None:
        if not indexes:
            return
        if self.where.startswith("local mode"):
            logger.warning(
                "qdrant-client local mode has no payload indexes (it checks every point in "
                "Python): %s recorded in the spec, not built; filtered results are the same",
                ", ".join(k for k, _ in indexes),
            )
            return
        for key, kind in indexes:
            self._call(partial(_create_index, self.name, key, schema.client_index_schema(kind)))

    def _save_spec(self) -> None:
        self._call(
            lambda c: c.update_collection(self.name, metadata=schema.spec_metadata(self.spec))
        )

    def _delete(self, ids: list[RecordId]) -> None:
        selector = _deps.models().PointIdsList(points=self._point_ids(ids))
        self._call(lambda c: c.delete(self.name, points_selector=selector, wait=True))

    # -- reads --------------------------------------------------------------------------
    def _execute(self, plan: SearchPlan, vectors: dict[str, Any]) -> list[Hit]:
        vectors, scores = convert.encode_query_tokens(self.spec, plan, vectors)
        kwargs = convert.client_query(
            plan, vectors, hnsw_ef=self.hnsw_ef, rescoring=self._rescoring()
        )
        points = self._call(lambda c: c.query_points(self.name, **kwargs)).points
        return scores(self._hits(points))

    def _get(self, ids: list[RecordId], with_vectors: bool) -> list[Record]:
        point_ids = self._point_ids(ids)
        points = self._call(
            lambda c: c.retrieve(self.name, point_ids, with_payload=True, with_vectors=with_vectors)
        )
        return self._order_records(ids, points, with_vectors)

    def _scan_page(
        self, filter: Filter | None, limit: int, cursor: Any
    ) -> tuple[list[Record], Any]:
        flt = convert.client_filter(filter)
        points, after = self._call(
            lambda c: c.scroll(
                self.name,
                scroll_filter=flt,
                limit=limit,
                offset=cursor,
                with_payload=True,
                with_vectors=False,
            )
        )
        return [convert.to_record(p, self.spec, False) for p in points], after

    def _count(self, filter: Filter | None) -> int:
        flt = convert.client_filter(filter)
        return int(self._call(lambda c: c.count(self.name, count_filter=flt, exact=True)).count)

    def info(self) -> dict[str, Any]:
        """Spec, count, where the collection lives and its status."""
        details = super().info()
        info = self._call(lambda c: c.get_collection(self.name))
        details.update(
            engine="qdrant-client",
            where=self.where,
            status=str(info.status),
            indexed_vectors=info.indexed_vectors_count,
        )
        return details

    # -- lifecycle ----------------------------------------------------------------------
    def _drop(self) -> None:
        self._call(lambda c: c.delete_collection(self.name))
        logger.info("dropped Qdrant collection %r at %s", self.name, self.where)

    def close(self) -> None:
        """Close the client if this store created it (idempotent)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            client.close()


def _create_index(name: str, key: str, field_schema: Any, client: QdrantClientHandle) -> None:
    client.create_payload_index(name, field_name=key, field_schema=field_schema, wait=True)


def server_collection_names(
    url: str, *, grpc_port: int | None = None, api_key: str | None = None, timeout: int = 30
) -> list[str]:
    """Names of every collection on a Qdrant server, sorted (one ``get_collections`` call).

    Raises:
        StoreUnavailableError: the server does not answer; ConnectorError: credentials
            refused (the key from ``api_key`` or ``$QDRANT_API_KEY``).
    """
    _deps.require("qdrant_client")
    from qdrant_client import QdrantClient

    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    where = _display_url(url, grpc_port=grpc_port)
    client = QdrantClient(
        url=url,
        api_key=key,
        timeout=timeout,
        check_compatibility=False,
        **server_transport(url, None, grpc_port),
    )
    try:
        response = client.get_collections()
    except Exception as e:
        translated = _translate_server_error(e, "(listing collections)", where, key or None)
        if translated is None:
            raise
        raise translated from None
    finally:
        client.close()
    return sorted(c.name for c in response.collections)


def _local_client(location: str) -> QdrantClientHandle:
    from qdrant_client import QdrantClient

    try:
        return (
            QdrantClient(location=":memory:")
            if location == ":memory:"
            else QdrantClient(path=location)
        )
    except RuntimeError as e:
        if "already accessed" not in str(e):
            raise
        raise StoreLockedError(
            f"Qdrant local-mode folder {location} is already open in another process (or by "
            "another client in this one): one client per folder. Close it there, pass client= "
            "to share one, or use a Qdrant server."
        ) from e


def server_transport(url: str, prefer_grpc: bool | None, grpc_port: int | None) -> dict[str, Any]:
    """QdrantClient's transport arguments for a server URL, honouring the URL's port.

    qdrant-client sends gRPC to ``grpc_port`` (default 6334) whatever port the URL names, so
    ``http://host:7000`` with prefer_grpc reached host:6334, perhaps another server. Here a
    URL without a port or with Qdrant's REST port 6333 gets gRPC on 6334 (the pair a server
    listens on); another port gets REST on it, and gRPC only with ``grpc_port``.
    """
    port = urlsplit(url if "://" in url else f"http://{url}").port
    if grpc_port is not None:
        if prefer_grpc is False:
            raise ValueError("grpc_port is the gRPC port: it cannot go with prefer_grpc=False")
        return {"prefer_grpc": True, "grpc_port": grpc_port}
    own_port = port is not None and port != DEFAULT_REST_PORT
    if prefer_grpc and own_port:
        raise ValueError(
            f"{_display_url(url, grpc_port=None)} names port {port}, but gRPC would go to "
            f"{DEFAULT_GRPC_PORT}: pass grpc_port= (or a qdrant+grpc://HOST:PORT store URL) for "
            f"gRPC, or leave prefer_grpc unset for REST on port {port}"
        )
    if prefer_grpc is None and own_port:
        logger.info("Qdrant URL names port %d: REST on it (gRPC only with grpc_port=)", port)
    return {"prefer_grpc": not own_port if prefer_grpc is None else prefer_grpc}


def _display_url(url: str, *, grpc_port: int | None) -> str:
    """The URL as shown in messages: no user:password, query string or fragment."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    shown = f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"
    return f"{shown} (gRPC port {grpc_port})" if grpc_port else shown


def _translate_server_error(
    error: Exception, name: str, where: str, secret: str | None
) -> ConnectorError | None:
    """Server answers as the project's errors: StoreUnavailableError / TransientServerError for
    faults worth retrying, ConnectorError for credentials, BackendError for any other refusal;
    None for what is not a server answer (local mode raises plain Python errors)."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    reason = _reason(error, secret)
    refused = BackendError(f"Qdrant at {where} refused a request on collection {name!r}: {reason}")
    if _raised_in(error, "qdrant_client.local"):  # local mode answers with plain Python errors
        return refused
    denied = f"Qdrant at {where} refused the credentials (%s); check api_key / {API_KEY_ENV}"
    if isinstance(error, ResponseHandlingException):
        return StoreUnavailableError(f"cannot reach Qdrant at {where}: {reason}")
    if isinstance(error, UnexpectedResponse):
        if error.status_code in (401, 403):
            return ConnectorError(denied % f"HTTP {error.status_code}")
        if error.status_code in (429, 502, 503, 504):
            return TransientServerError(f"Qdrant at {where} is busy or unavailable: {reason}")
        return refused
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpcio is a qdrant-client dependency
        return None
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        code = error.code()
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return ConnectorError(denied % code.name)
        if code is grpc.StatusCode.UNAVAILABLE:
            return StoreUnavailableError(f"cannot reach Qdrant at {where}: {reason}")
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return TransientServerError(f"Qdrant at {where} timed out: {reason}")
        return refused
    return None


def _raised_in(error: Exception, package: str) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in ``package``."""
    tb, module = error.__traceback__, ""
    while tb is not None:
        module, tb = tb.tb_frame.f_globals.get("__name__", ""), tb.tb_next
    return module == package or module.startswith(package + ".")


def _reason(error: Exception, secret: str | None) -> str:
    details = getattr(error, "details", None)
    text = details() if callable(details) else str(error)
    text = " ".join(str(text).split())[:300]
    return text.replace(secret, "***") if secret else text

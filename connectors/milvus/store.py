"""MilvusStore: a jina-vdb collection in Milvus (server or Milvus Lite file), through MilvusClient.

    store = MilvusStore.create("docs", uri="./milvus.db")            # Milvus Lite: packed
    store = MilvusStore.create("docs", uri="http://host:19530")      # Milvus >= 2.6.4: struct
    store.upsert(records); store.search(Query.from_batch(batch), mode="hybrid")

The documents collection holds ``pk`` (VARCHAR, type-tagged id: see convert.py), ``dense``
and ``dense_<k>`` (HNSW, COSINE), ``muvera`` (HNSW, IP; with ``spec.muvera``) and
``payload`` (JSON). Token vectors live where the layout puts them (struct_layout.py /
packed.py / token_rows.py); the layout is chosen from the server version at create(),
logged, and recorded with the spec in the collection's properties for open().

This module decides what to create or open; writes.py checks and translates records,
collection.py creates, checks and loads the collection, search.py runs a SearchPlan
(cascades, RRF fusion). What each of them sends is built by client-free functions
(``collection.create_request``, ``writes.document_rows``, ``search.stage_request`` ...).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..base import VectorStore
from ..clients import MilvusClientHandle
from ..errors import CollectionNotFoundError, ConnectorError
from ..filters import Filter
from ..names import check_collection_name
from ..payload_index import PayloadIndexes, PayloadType
from ..query import Hit, SearchPlan
from ..records import PreparedRecord, Record, RecordId
from ..spec import CollectionSpec, MuveraParams
from . import collection, payload_columns, search
from . import convert as cv
from .connection import Connection, connect, is_lite, raise_translated, redact, translate_error
from .convert import PAYLOAD, PK, Layout
from .layout import Consistency, DenseOnly, Target, TokenLayout, check_consistency
from .lite_engine import find_engine
from .packed import PackedLayout
from .sizes import Sizes, count
from .struct_layout import DEFAULT_MAX_TOKENS, StructLayout
from .token_rows import TokenRowsLayout
from .versions import ServerInfo, check_layout_dtype, resolve_layout
from .writes import check_record, document_rows

logger = logging.getLogger(__name__)

_LAYOUTS: dict[Layout, type[TokenLayout]] = {
    Layout.STRUCT: StructLayout,
    Layout.PACKED: PackedLayout,
    Layout.TOKEN_ROWS: TokenRowsLayout,
    Layout.NONE: DenseOnly,
}


class MilvusStore(VectorStore):
    """One jina-vdb collection in Milvus. Create with ``create()``, reopen with ``open()``."""

    #: The MUVERA field is one more dense field; token vectors are float16 or float32 (Milvus
    #: Lite has no float16 / uint8 vector type: the layouts store float bytes), or uint8 codes
    #: in the packed layout only (its rows hold bytes; the others refuse it at create).
    spec_features = frozenset({"muvera", "multivector_dtype=float32", "multivector_dtype=uint8"})

    #: ~45 s of retries (0.5, 1, 2, 4, 8, 10, 10, 10 s): a server restarted after a crash is
    #: healthy in ~8 s, then answers "collection not loaded" until the dead process's etcd
    #: session expires (``common.session.ttl``, 30 s by default).
    retries = 8

    def __init__(
        self,
        name: str,
        spec: CollectionSpec,
        conn: Connection,
        layout: Layout,
        *,
        server: ServerInfo,
        max_tokens: int | None = None,
        timeout: float | None = None,
        consistency: Consistency = Consistency.SESSION,
        create_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name, spec)
        self._conn = conn
        self.client = conn.client
        self.server = server
        request = {"timeout": timeout} if timeout is not None else {}
        self._target = Target(
            self.client,
            name,
            spec,
            max_tokens,
            request,
            dict(create_kwargs or {}),
            server,
            consistency,
        )
        if server.lite and layout is Layout.PACKED:
            self._target.engine = find_engine(self.client)
        self.layout: TokenLayout = _LAYOUTS[layout](self._target)
        #: Indexed payload keys with their own column in this collection (payload_columns.py).
        self._columns: dict[str, PayloadType] = {}
        #: Row and filter match counts for the filtered searches' ef, kept between searches.
        self._sizes = Sizes()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        *,
        uri: str = "./milvus.db",
        token: str | None = None,
        client: MilvusClientHandle | None = None,
        spec: CollectionSpec | None = None,
        dim: int = 2048,
        prefetch_dims: Sequence[int] = (128,),
        multivector: bool = True,
        multivector_dtype: str = "float16",
        muvera: MuveraParams | bool | None = None,
        layout: Layout | str = Layout.AUTO,
        max_tokens: int | None = None,
        num_shards: int | None = None,
        consistency_level: Consistency | str = Consistency.SESSION,
        timeout: float | None = None,
    ) -> MilvusStore:
        """Create the collection, or open it if it exists with the same spec.

        Args:
            name: collection name (the packed and token_rows layouts add ``<name>__tokens``).
            uri: ``./file.db`` (Milvus Lite) or ``http(s)://host:19530``; ignored with ``client``.
            token: ``user:password`` or an API key; defaults to ``$MILVUS_TOKEN``. Never logged.
            client: an existing ``pymilvus.MilvusClient`` (not closed by ``close()``).
            spec: the full CollectionSpec; otherwise built from dim, prefetch_dims, multivector
                and multivector_dtype (giving both is an error).
            muvera: store a MUVERA encoding of the token vectors for ``mode="muvera"``
                (``MuveraParams``, or True for the defaults); servers 2.3.x refuse it (one
                vector field per collection).
            layout: ``auto`` (from the server version: ``struct`` on Milvus >= 2.6.4,
                ``packed`` otherwise), ``struct``, ``packed`` or ``token_rows`` (one row per
                token: the layout before ``packed``, kept for existing collections).
            max_tokens: struct layout only: most token vectors per document (default 1024,
                see struct_layout.py); longer records are refused.
            num_shards: passed to Milvus at creation.
            consistency_level: what every read of this store waits for (``Consistency``):
                ``Session`` (default: this process's own writes are always visible, and
                reads wait for nothing else), ``Strong`` (other processes' writes too, at
                ~200 ms per request on a server), ``Bounded`` or ``Eventually``. Also the
                collection's default for other clients.
            timeout: seconds to wait for a server at connect (default 10) and per request.

        Raises:
            SchemaMismatchError: the collection exists with another spec or layout, or the
                server dropped a field (Milvus Lite and layout='struct').
            StoreUnavailableError / StoreLockedError: see ``connection.connect``.
        """
        spec = cls._requested_spec(
            spec,
            dim=dim,
            prefetch_dims=tuple(prefetch_dims),
            multivector=multivector,
            multivector_dtype=multivector_dtype,
            muvera=muvera,
        )
        check_collection_name(name, "milvus")  # before has_collection, which servers refuse
        wanted = collection.check_layout(layout, max_tokens)
        consistency = check_consistency(consistency_level)
        conn = connect(uri, token=token, client=client, timeout=timeout)
        try:
            server = ServerInfo.detect(str(conn.client.get_server_version()), lite_uri=conn.lite)
            if conn.client.has_collection(name):
                return cls._existing(
                    name, conn, server, timeout, consistency, spec=spec, wanted=wanted
                )
            spec = server.storage_policy().apply(spec)  # refusals name what to do
            server.check_supported(spec, name)
            chosen = resolve_layout(server, spec, wanted)
            check_layout_dtype(chosen, spec, name)
            if chosen is not Layout.STRUCT:
                max_tokens = None
            elif max_tokens is None:
                max_tokens = DEFAULT_MAX_TOKENS
            store = cls(
                name,
                spec,
                conn,
                chosen,
                server=server,
                max_tokens=max_tokens,
                timeout=timeout,
                consistency=consistency,
                create_kwargs=collection.create_kwargs(consistency, num_shards),
            )
            store._columns = payload_columns.planned(spec.payload_indexes, server, name)
            collection.create(store._target, store.spec, store.layout, store._columns)
            return store
        except BaseException as e:
            conn.close()
            raise_translated(e, name, conn.uri)

    @classmethod
    def open(
        cls,
        name: str,
        *,
        uri: str = "./milvus.db",
        token: str | None = None,
        client: MilvusClientHandle | None = None,
        consistency_level: Consistency | str = Consistency.SESSION,
        timeout: float | None = None,
    ) -> MilvusStore:
        """Open an existing collection; its spec and layout are read back from Milvus.

        ``consistency_level``: as in ``create``.

        Raises:
            CollectionNotFoundError: there is no collection ``name``.
        """
        consistency = check_consistency(consistency_level)
        if client is None and is_lite(uri) and not Path(uri).exists():
            # Connecting would create the file: opening never creates anything.
            raise CollectionNotFoundError(f"no Milvus collection {name!r}: {uri} does not exist")
        conn = connect(uri, token=token, client=client, timeout=timeout)
        try:
            if not conn.client.has_collection(name):
                where = redact(conn.uri) if conn.uri else "this client"
                raise CollectionNotFoundError(f"no Milvus collection {name!r} at {where}")
            server = ServerInfo.detect(str(conn.client.get_server_version()), lite_uri=conn.lite)
            return cls._existing(name, conn, server, timeout, consistency)
        except BaseException as e:
            conn.close()
            raise_translated(e, name, conn.uri)

    @classmethod
    def _existing(
        cls,
        name: str,
        conn: Connection,
        server: ServerInfo,
        timeout: float | None,
        consistency: Consistency,
        *,
        spec: CollectionSpec | None = None,
        wanted: Layout = Layout.AUTO,
    ) -> MilvusStore:
        description = conn.client.describe_collection(name)
        stored, layout, max_tokens = cv.read_properties(name, description)
        collection.check_existing(name, conn.uri, stored, layout, spec=spec, wanted=wanted)
        store = cls(
            name,
            stored,
            conn,
            layout,
            server=server,
            max_tokens=max_tokens,
            timeout=timeout,
            consistency=consistency,
        )
        store._columns = payload_columns.existing(stored.payload_indexes, description)
        collection.open_existing(
            store._target, store.spec, store.layout, store._columns, description
        )
        if spec is not None:
            store.add_payload_indexes(spec.payload_indexes)
        return store

    # -- writes ------------------------------------------------------------------------
    def _check_record(self, record: PreparedRecord, index: int) -> None:
        cap = self._target.max_tokens if self.layout.kind is Layout.STRUCT else None
        check_record(record, index, self.spec, cap)

    def _write(self, records: Sequence[PreparedRecord]) -> None:
        try:
            self.layout.write(*document_rows(self.spec, self._columns, records))
        finally:
            self._sizes.forget()

    def _delete(self, ids: list[RecordId]) -> None:
        """Documents rows go first, then their token vectors."""
        keys = [cv.encode_id(i) for i in ids]
        try:
            self._target.delete_keys(self.name, keys)
            self.layout.delete_tokens(keys)
        finally:
            self._sizes.forget()

    def _drop(self) -> None:
        """Drop the documents collection, then its companions."""
        self._sizes.forget()
        self.client.drop_collection(self.name, **self._target.request)
        self.layout.drop_companions()

    # -- reads -------------------------------------------------------------------------
    def _execute(self, plan: SearchPlan, vectors: dict[str, Any]) -> list[Hit]:
        run = search.Search(self._target, self.layout, self.spec, self._sizes)
        return run.execute(plan, vectors, self._expr(plan.filter))

    def _get_rows(self, keys: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        return self._target.rows(self.name, keys, fields)

    def _get(self, ids: list[RecordId], with_vectors: bool) -> list[Record]:
        keys = [cv.encode_id(i) for i in ids]
        fields = [PAYLOAD, self.spec.dense_field] if with_vectors else [PAYLOAD]
        rows = {r[PK]: r for r in self._get_rows(keys, fields)}
        tokens = (
            self.layout.tokens_of(list(rows))
            if with_vectors and self.spec.multivector and rows
            else {}
        )
        out = []
        for key in keys:
            row = rows.get(key)
            if row is None:
                continue
            dense = (
                np.asarray(row[self.spec.dense_field], dtype=np.float32) if with_vectors else None
            )
            out.append(Record(cv.decode_id(key), dense, tokens.get(key), row[PAYLOAD] or {}))
        return out

    def _scan_page(
        self, filter: Filter | None, limit: int, cursor: Any
    ) -> tuple[list[Record], Any]:
        pages = cursor or self._query_iterator(filter, limit)  # the cursor: pymilvus' iterator
        rows = pages.next()
        if not rows:
            pages.close()
            return [], None
        return [Record(cv.decode_id(r[PK]), None, None, r[PAYLOAD] or {}) for r in rows], pages

    def _query_iterator(self, filter: Filter | None, limit: int) -> Any:
        expr = self._expr(filter)
        request = {"filter": expr, "output_fields": [PAYLOAD], **self._target.request}
        # Milvus Lite has no server timestamp: pymilvus warns and uses the client's (correct).
        quiet = logging.getLogger("pymilvus.client.iterator.query_iterator")
        quiet.addFilter(_no_mvcc_warning)
        try:
            return self.client.query_iterator(self.name, batch_size=limit, **request)
        finally:
            quiet.removeFilter(_no_mvcc_warning)

    def _count(self, filter: Filter | None) -> int:
        return count(self._target, self._expr(filter))

    def _expr(self, flt: Filter | None) -> str:
        return cv.filter_expr(flt, self._columns) if flt is not None else ""

    def _create_payload_indexes(self, indexes: PayloadIndexes) -> None:
        logger.warning(
            "Milvus cannot add columns to the existing collection %r: payload fields %s are "
            "recorded as indexed but not indexed (filters on them read the JSON payload); "
            "re-ingest into a new collection to index them",
            self.name,
            ", ".join(k for k, _ in indexes),
        )

    def _save_spec(self) -> None:
        props = {cv.PROP_SPEC: json.dumps(self.spec.to_dict(), sort_keys=True)}
        self.client.alter_collection_properties(self.name, props, **self._target.request)

    def close(self) -> None:
        """Close the client if this store opened it (idempotent)."""
        self._conn.close()

    def _translate_error(self, error: Exception) -> ConnectorError | None:
        return translate_error(error, self.name, self._conn.uri)

    def info(self) -> dict[str, Any]:
        """Spec, count, layout and where the collection lives."""
        return {
            **super().info(),
            "layout": self.layout.kind.value,
            "uri": redact(self._conn.uri) if self._conn.uri else None,
            "max_tokens": self._target.max_tokens,
            "payload_index_columns": {
                payload_columns.column_name(k): t.value for k, t in self._columns.items()
            },
        }


def _no_mvcc_warning(record: logging.LogRecord) -> bool:
    return "mvccTs" not in record.getMessage()

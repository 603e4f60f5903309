"""The documents collection's life: checking create() arguments, creating the collection with
its layout's companions, and checking, indexing and loading it again at open().

``MilvusStore`` (store.py) decides what to create or open (server version, spec, layout);
the functions here do it on its ``Target`` with its ``TokenLayout`` and payload columns.
A create that fails part-way leaves nothing behind (``create``), and an open checks that the
collection still has the fields its recorded spec and layout need (``open_existing``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..errors import SchemaMismatchError
from ..spec import CollectionSpec, reconcile_spec
from . import convert as cv
from . import payload_columns
from .connection import redact
from .convert import Layout
from .layout import Consistency, Target, TokenLayout
from .payload_columns import Columns
from .struct_layout import SERVER_ARRAY_CAP

logger = logging.getLogger(__name__)


def check_layout(layout: Layout | str, max_tokens: int | None) -> Layout:
    """The Layout a create() asks for (``layout``, ``max_tokens`` validated; ValueError)."""
    try:
        wanted = Layout(layout)
    except ValueError:
        chosen = (Layout.AUTO, Layout.STRUCT, Layout.PACKED, Layout.TOKEN_ROWS)
        valid = ", ".join(repr(v.value) for v in chosen)
        raise ValueError(f"layout must be one of {valid}, got {layout!r}") from None
    if wanted is Layout.NONE:
        raise ValueError("layout='none' is implied by multivector=False; pass 'auto'")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
            raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
        if max_tokens > SERVER_ARRAY_CAP:
            logger.warning(
                "max_tokens=%d is above Milvus' default array cap %d: the server refuses it unless "
                "proxy.maxArrayCapacity is raised",
                max_tokens,
                SERVER_ARRAY_CAP,
            )
    return wanted


def check_existing(
    name: str,
    uri: str | None,
    stored: CollectionSpec,
    layout: Layout,
    *,
    spec: CollectionSpec | None,
    wanted: Layout,
) -> None:
    """An existing collection (``stored`` spec, ``layout``) against what create() asked for
    (``spec``, ``wanted``; None and AUTO from open()): SchemaMismatchError when they differ,
    a WARNING for the token_rows layout."""
    if spec is not None:
        where = f"at {redact(uri)}" if uri else "on this client"
        reconcile_spec(spec, stored, name=name, where=where, opener="MilvusStore")
    if wanted is not Layout.AUTO and stored.multivector and wanted is not layout:
        raise SchemaMismatchError(
            f"collection {name!r} exists with layout {layout.value!r}, not {wanted.value!r}"
        )
    if layout is Layout.TOKEN_ROWS and wanted is not Layout.TOKEN_ROWS:
        logger.warning(
            "Milvus collection %r has the token_rows layout (one row per token vector): it "
            "stays readable and writable, but a MaxSim rerank fetches every candidate token "
            "as a row (~1.8 s per hybrid search at 2k documents on Milvus Lite). For the "
            "packed layout (a few rows per document), re-ingest the documents into a new "
            "collection (or drop this one and re-ingest): new collections get it by default",
            name,
        )


def create_kwargs(consistency: Consistency, num_shards: int | None) -> dict[str, Any]:
    """Keyword arguments of ``create_collection`` beyond schema and properties."""
    kwargs: dict[str, Any] = {"consistency_level": consistency.value}
    if num_shards is not None:
        kwargs["num_shards"] = num_shards
    return kwargs


@dataclass
class CreateRequest:
    """What ``create`` sends: the documents collection's schema and properties (with
    ``Target.create`` as keyword arguments) and the index parameters after it."""

    schema: Any  # pymilvus CollectionSchema
    properties: dict[str, str]
    index_params: Any  # pymilvus IndexParams (a list of IndexParam)


def create_request(
    t: Target, spec: CollectionSpec, layout: TokenLayout, columns: Columns
) -> CreateRequest:
    """The documents collection ``create`` makes for this spec, layout and payload columns
    (built by pymilvus' schema and index builders; no client is used)."""
    schema = cv.doc_schema(spec, layout.kind)
    layout.extend_schema(schema)
    payload_columns.add_fields(schema, columns)
    props = {**cv.collection_properties(spec, layout.kind, t.max_tokens), **layout.properties()}
    return CreateRequest(schema, props, index_params(spec, layout, columns))


def index_params(spec: CollectionSpec, layout: TokenLayout, columns: Columns) -> Any:
    """Every index of the documents collection: dense HNSW, the layout's, payload columns'."""
    params = cv.dense_index_params(spec)
    layout.extend_indexes(params)
    payload_columns.add_indexes(params, columns)
    return params


def create(t: Target, spec: CollectionSpec, layout: TokenLayout, columns: Columns) -> None:
    """Companions first, then the documents collection, checked, then indexed and loaded:
    the documents collection existing means the rest exists. A failure anywhere drops
    what was created (no orphan ``<name>__tokens``); if even that fails (the server went
    away), the next create() finds the orphan companion and replaces it."""
    client = t.client
    try:
        layout.create_companions()
        request = create_request(t, spec, layout, columns)
        client.create_collection(
            t.name,
            schema=request.schema,
            properties=request.properties,
            **t.create,
            **t.request,
        )
        _verify(t, spec, layout, client.describe_collection(t.name, **t.request))
        _ensure_indexes(t, request.index_params)
        client.load_collection(t.name, **t.request)
        layout.open_companions()  # token rows: loaded (waited for) at first use
    except BaseException:
        _undo_create(t, layout)
        raise
    logger.info(
        "created Milvus collection %r (layout %s, spec %s)",
        t.name,
        layout.kind.value,
        spec.to_dict(),
    )


def _undo_create(t: Target, layout: TokenLayout) -> None:
    try:
        if t.client.has_collection(t.name, **t.request):
            t.client.drop_collection(t.name, **t.request)
        layout.drop_companions()
    except Exception as e:  # the original error matters more; say what was left
        logger.warning(
            "could not remove the half-created collection %r (%s); the next create() replaces it",
            t.name,
            e,
        )


def open_existing(
    t: Target,
    spec: CollectionSpec,
    layout: TokenLayout,
    columns: Columns,
    description: dict[str, Any],
) -> None:
    """Check the collection described by ``description``, create missing indexes, load it."""
    _verify(t, spec, layout, description)
    _ensure_indexes(t, index_params(spec, layout, columns))
    unindexed = [k for k, _ in spec.payload_indexes if k not in columns]
    if unindexed:
        logger.warning(
            "Milvus collection %r has no column for its payload indexes %s (asked for after "
            "it was created, or made on a server without nullable fields): filters on them "
            "read the JSON payload; re-ingest into a new collection to index them",
            t.name,
            ", ".join(unindexed),
        )
    state = t.client.get_load_state(t.name, **t.request).get("state")
    if getattr(state, "name", str(state)) != "Loaded":
        t.client.load_collection(t.name, **t.request)
    layout.open_companions()
    logger.info("opened Milvus collection %r (layout %s)", t.name, layout.kind.value)


def _verify(
    t: Target, spec: CollectionSpec, layout: TokenLayout, description: dict[str, Any]
) -> None:
    cv.check_description(t.name, description, spec, layout.kind)
    layout.verify(description)


def _ensure_indexes(t: Target, params: Any) -> None:
    """Create the indexes of ``params`` that are missing (all of them right after
    create_collection)."""
    existing = set(t.client.list_indexes(t.name, **t.request))
    # Milvus Lite names an index after its field whatever index_name says; servers keep it.
    missing = type(params)(
        i for i in params if not {i.index_name, i.field_name} & existing
    )  # IndexParams is a list
    if missing:
        # sync=False: pymilvus would poll every 0.5 s per index; load_collection waits anyway.
        t.client.create_index(t.name, missing, sync=False, **t.request)

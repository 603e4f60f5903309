"""Pure translation to Milvus: ids, filter expressions, collection metadata, schemas, requests.

Nothing here talks to a server: every function builds a value (a string, a dict, a pymilvus
schema or index object) that store.py, collection.py and search.py send. That keeps the
request shapes unit-testable without Milvus (tests/connectors/test_milvus.py and
test_milvus_requests.py assert on them; the latter through pymilvus' own ``Prepare``).

Ids: Milvus has one primary-key type per collection, while our ids are ints *or* strings,
even mixed in one collection. The primary key is therefore a VARCHAR holding a type-tagged
encoding, ``"i:<decimal>"`` for ints and ``"s:<text>"`` for strings, decoded on the way back
so the caller gets the type it wrote.
"""

from __future__ import annotations

import enum
import importlib
import json
import math
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, RecordError, SchemaMismatchError
from ..filters import And, AnyOf, Eq, Filter, Not, Or, Range, Scalar
from ..records import RecordId
from ..spec import CollectionSpec
from .payload_columns import Columns, column_leaf

# -- field and property names ------------------------------------------------------------
PK = "pk"
PAYLOAD = "payload"
N_TOKENS = "n_tokens"  # companion layouts: how many token vectors the document has
TOKEN_GEN = "tok_gen"  # companion layouts: which generation of companion rows is the document's
#: Bytes an encoded primary key may take (VARCHAR max_length of the pk field).
ID_MAX_BYTES = 1024
#: Largest payload of a record, as compact UTF-8 JSON: Milvus servers refuse a JSON field
#: over 65,536 bytes (measured on 2.3.5; Lite has no limit, refused there too so a Lite
#: collection can move to a server), less room for the keys jina-vdb adds.
MAX_PAYLOAD_BYTES = 65_536 - 64
#: Milvus returns at most this many rows per query() call (offset + limit).
QUERY_MAX_ROWS = 16_384
#: Longest ``pk in [...]`` list put in one expression (keeps requests small).
MAX_IDS_PER_EXPR = 4096

PROP_FORMAT = "jvdb.format"
PROP_SPEC = "jvdb.spec"
PROP_LAYOUT = "jvdb.layout"
PROP_MAX_TOKENS = "jvdb.max_tokens"
FORMAT_VERSION = "1"

#: Dense HNSW build parameters (Milvus defaults are M=16 too; efConstruction a bit higher).
HNSW_BUILD = {"M": 16, "efConstruction": 200}
#: Search breadth: HNSW needs ef >= limit; a floor keeps small limits accurate.
HNSW_MIN_EF = 128


class Layout(str, enum.Enum):
    """Where a collection keeps its token vectors."""

    AUTO = "auto"  # choose from the server's capabilities at create()
    STRUCT = "struct"  # Array of Structs field + MAX_SIM index (Milvus >= 2.6.4)
    PACKED = "packed"  # companion collection, a few rows per document (Milvus Lite, < 2.6.4)
    TOKEN_ROWS = "token_rows"  # companion collection, one row per token (before packed)
    NONE = "none"  # multivector=False: no token vectors at all


#: Layouts keeping token vectors in a companion collection ``<name>__tokens``.
COMPANION_LAYOUTS = (Layout.PACKED, Layout.TOKEN_ROWS)


def pymilvus() -> ModuleType:
    """The ``pymilvus`` module, imported at first use (a pip hint when it is missing)."""
    try:
        return importlib.import_module("pymilvus")
    except ImportError as e:
        raise MissingDependencyError(
            "pymilvus is required for MilvusStore: pip install 'jina-vdb[milvus]'"
        ) from e


# -- ids -----------------------------------------------------------------------------------
def encode_id(record_id: RecordId, *, index: int | None = None) -> str:
    """The primary key stored for an id: ``i:<int>`` or ``s:<str>`` (RecordError if too long)."""
    key = f"i:{record_id}" if isinstance(record_id, int) else f"s:{record_id}"
    if len(key.encode("utf-8")) > ID_MAX_BYTES:
        raise RecordError(
            f"id is too long for Milvus ({len(key.encode('utf-8'))} bytes encoded, "
            f"at most {ID_MAX_BYTES})",
            index=index,
            record_id=record_id,
        )
    return key


def decode_id(key: str) -> RecordId:
    """Inverse of ``encode_id``."""
    tag, _, value = key.partition(":")
    if tag == "i":
        return int(value)
    if tag == "s":
        return value
    raise ValueError(
        f"primary key {key!r} was not written by jina-vdb (expected 'i:' or 's:' prefix)"
    )


# -- filter expressions --------------------------------------------------------------------
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def quote_string(value: str) -> str:
    """A double-quoted Milvus string literal.

    Only the escapes both Milvus (Go) and Milvus Lite understand are used: backslash,
    double quote, newline, carriage return and tab; everything else (any Unicode) is literal.
    Every expression is built from values through this (ids included: pymilvus'
    ``get/delete(ids=)`` paste ids into ``pk in ['...']`` unescaped). Templated expressions
    (``filter_params``) would be nicer but Milvus Lite 3.2.2 and the 2.3.5 server both reject
    them ("unexpected character '{'"). Measured: ids and values with quotes, backslashes,
    control characters, NUL, U+2028 and astral characters match exactly themselves on Lite
    (fuzzed in tests/connectors/test_fuzz.py) and on the 2.3.5 server (pk, ==, exists).
    """
    return '"' + value.translate(_ESCAPE_TABLE) + '"'


def literal(value: Scalar | float) -> str:
    """A Milvus literal for a filter value (bools before ints: bool is an int subclass)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Positional notation: the expression grammars have no exponent form in common.
        return np.format_float_positional(value, trim="-")
    if isinstance(value, str):
        return quote_string(value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a Milvus literal")


def json_path(key: str) -> str:
    """``meta.page`` -> ``payload["meta"]["page"]`` (keys were validated by connectors.filters)."""
    return PAYLOAD + "".join(f"[{quote_string(part)}]" for part in key.split("."))


def filter_expr(flt: Filter, columns: Columns | None = None) -> str:
    """A Milvus boolean expression equivalent to ``flt.matches`` on the JSON payload.

    ``columns``: indexed payload keys with their own column (payload_columns.py); a
    condition the column answers exactly reads it instead of the JSON.

    Every leaf is guarded with ``exists``: on a missing key a bare comparison is *null* in
    Milvus' three-valued logic, so ``not (...)`` would drop documents the reference keeps.
    ``exists`` is parenthesised on its own: Milvus 2.3 binds it looser than ``and``.
    A list-valued field matches when any element matches (``json_contains``), like Qdrant.
    """
    if columns and (leaf := column_leaf(flt, columns, literal)) is not None:
        return leaf
    if isinstance(flt, Eq):
        path = json_path(flt.key)
        value = literal(flt.value)
        # json_contains_any with one value, not json_contains: Milvus Lite cannot parse a
        # negative number as json_contains' argument ("unexpected token '-'"), in a list it can.
        return f"((exists {path}) and ({path} == {value} or json_contains_any({path}, [{value}])))"
    if isinstance(flt, AnyOf):
        path = json_path(flt.key)
        values = [literal(v) for v in flt.values]
        # Milvus Lite has no `json["k"] in [...]`: spell it as equalities.
        equal = " or ".join(f"{path} == {v}" for v in values)
        listed = ", ".join(values)
        return f"((exists {path}) and ({equal} or json_contains_any({path}, [{listed}])))"
    if isinstance(flt, Range):
        path = json_path(flt.key)
        ops = (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<="))
        bounds = [
            f"{path} {op} {literal(getattr(flt, name))}"
            for name, op in ops
            if getattr(flt, name) is not None
        ]
        return f"((exists {path}) and {' and '.join(bounds)})"
    if isinstance(flt, And):
        return "(" + " and ".join(filter_expr(c, columns) for c in flt.conditions) + ")"
    if isinstance(flt, Or):
        return "(" + " or ".join(filter_expr(c, columns) for c in flt.conditions) + ")"
    if isinstance(flt, Not):
        return f"(not {filter_expr(flt.condition, columns)})"
    raise TypeError(f"unsupported filter node {type(flt).__name__}")


def in_expr(field: str, keys: Sequence[str]) -> str:
    """``field in ["a", "b"]`` for primary keys / document ids."""
    return f"{field} in [{', '.join(quote_string(k) for k in keys)}]"


def and_expr(*parts: str | None) -> str:
    """Conjunction of the non-empty parts ('' when there are none)."""
    kept = [p for p in parts if p]
    if len(kept) <= 1:
        return kept[0] if kept else ""
    return " and ".join(f"({p})" for p in kept)


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- collection metadata (how open() finds the spec and the layout again) ------------------
def collection_properties(
    spec: CollectionSpec, layout: Layout, max_tokens: int | None
) -> dict[str, str]:
    """Properties recording the spec and layout (Milvus Lite keeps properties, not descriptions)."""
    props = {
        PROP_FORMAT: FORMAT_VERSION,
        PROP_SPEC: json.dumps(spec.to_dict(), sort_keys=True),
        PROP_LAYOUT: layout.value,
    }
    if max_tokens is not None:
        props[PROP_MAX_TOKENS] = str(max_tokens)
    return props


def read_properties(
    name: str, description: dict[str, Any]
) -> tuple[CollectionSpec, Layout, int | None]:
    """Spec, layout and max_tokens back from ``describe_collection`` output."""
    props = description.get("properties") or {}
    if PROP_SPEC not in props or PROP_LAYOUT not in props:
        raise SchemaMismatchError(
            f"collection {name!r} exists but was not created by jina-vdb "
            f"(no {PROP_SPEC!r} property); "
            "use another name or drop it"
        )
    if props.get(PROP_FORMAT) != FORMAT_VERSION:
        raise SchemaMismatchError(
            f"collection {name!r} has jina-vdb format {props.get(PROP_FORMAT)!r}; "
            f"this version reads {FORMAT_VERSION!r}"
        )
    spec = CollectionSpec.from_dict(json.loads(props[PROP_SPEC]))
    max_tokens = int(props[PROP_MAX_TOKENS]) if PROP_MAX_TOKENS in props else None
    return spec, Layout(props[PROP_LAYOUT]), max_tokens


# -- the documents collection --------------------------------------------------------------
def dense_fields(spec: CollectionSpec) -> dict[str, int]:
    """Every dense vector field and its width: ``dense``, one ``dense_<k>`` per prefix and
    ``muvera`` (the MUVERA encoding) when the spec has it."""
    fields = {spec.dense_field: spec.dim}
    fields.update({spec.prefix_field(k): k for k in spec.prefetch_dims})
    if spec.muvera is not None:
        fields[spec.muvera_field] = spec.muvera.dim
    return fields


def metric(spec: CollectionSpec, field: str) -> str:
    """A dense field's metric: inner product for the MUVERA encoding (its norm is part of the
    MaxSim estimate: connectors/muvera.py), cosine for the others."""
    return "IP" if spec.muvera is not None and field == spec.muvera_field else "COSINE"


def doc_schema(spec: CollectionSpec, layout: Layout) -> Any:
    """pk (VARCHAR), the dense fields, the JSON payload; ``n_tokens`` and ``tok_gen`` in the
    companion layouts (packed, token_rows).

    The struct layout's token field is added by ``struct_layout.add_struct_field``.
    """
    DataType = pymilvus().DataType
    schema = pymilvus().MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(PK, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
    for name, width in dense_fields(spec).items():
        schema.add_field(name, DataType.FLOAT_VECTOR, dim=width)
    schema.add_field(PAYLOAD, DataType.JSON)
    if layout in COMPANION_LAYOUTS:
        schema.add_field(N_TOKENS, DataType.INT32)
        schema.add_field(TOKEN_GEN, DataType.INT64)  # optional: older collections lack it
    return schema


def dense_index_params(spec: CollectionSpec, index_params: Any | None = None) -> Any:
    """HNSW on every dense field (COSINE; IP for the MUVERA encoding)."""
    params = (
        index_params if index_params is not None else pymilvus().MilvusClient.prepare_index_params()
    )
    for name in dense_fields(spec):
        params.add_index(
            field_name=name,
            index_name=f"{name}_hnsw",
            index_type="HNSW",
            metric_type=metric(spec, name),
            params=dict(HNSW_BUILD),
        )
    return params


def dense_search_params(
    limit: int, metric_type: str = "COSINE", ef: int | None = None
) -> dict[str, Any]:
    """Search parameters for an HNSW field (ef must be at least the limit)."""
    return {"metric_type": metric_type, "params": {"ef": max(limit, HNSW_MIN_EF, ef or 0)}}


def filtered_ef(limit: int, matches: int, total: int) -> int:
    """HNSW breadth for a search restricted to ``matches`` of the ``total`` rows.

    Milvus' HNSW walks the graph and drops the rows the filter rejects; with ef ~ limit the
    walk stops before it has met every match when few rows pass. Measured on Milvus Lite
    3.2 (2,000 sealed rows, 20 matching a 1% filter, limit 100): ef 100 -> 13.6 of the 20
    returned on average, 200 -> 17.8, 500 -> 19.9, 1000 -> 20. Widening ef by the inverse
    selectivity keeps the walk's share of matches what an unfiltered search has; ef never
    needs to exceed the row count.
    """
    base = max(limit, HNSW_MIN_EF)
    if matches <= 0 or matches >= total:
        return base
    return max(base, min(math.ceil(base * total / matches), total))


def dense_search_request(
    field: str,
    vector: np.ndarray,
    limit: int,
    expr: str,
    output_fields: Sequence[str],
    metric_type: str = "COSINE",
    ef: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``MilvusClient.search`` for one dense stage (``ef``: a wider
    breadth for a restricted search, see ``filtered_ef``)."""
    return {
        "data": [np.asarray(vector, dtype=np.float32).tolist()],
        "anns_field": field,
        "limit": limit,
        "filter": expr,
        "output_fields": list(output_fields),
        "search_params": dense_search_params(limit, metric_type, ef),
    }


def doc_row(
    spec: CollectionSpec, key: str, vectors: dict[str, np.ndarray], payload: dict[str, Any]
) -> dict[str, Any]:
    """One documents-collection row (without the layout's token fields)."""
    row: dict[str, Any] = {PK: key, PAYLOAD: payload}
    for name in dense_fields(spec):
        row[name] = vectors[name].astype(np.float32, copy=False)
    return row


def check_description(
    name: str, description: dict[str, Any], spec: CollectionSpec, layout: Layout
) -> None:
    """Raise if the server lacks a field we asked for (Milvus Lite drops some silently)."""
    fields = {f["name"]: f for f in description.get("fields", [])}
    missing = [f for f in (PK, PAYLOAD, *dense_fields(spec)) if f not in fields]
    if layout in COMPANION_LAYOUTS and N_TOKENS not in fields:
        missing.append(N_TOKENS)
    if missing:
        raise SchemaMismatchError(f"collection {name!r} on the server lacks fields {missing}")

"""Indexed payload fields as scalar columns of the documents collection (see payload_index.py).

Milvus keeps the payload in one JSON field, which Milvus Lite cannot index at all and servers
only from 2.5.11 (JSON path indexes). So an indexed payload field is copied, at upsert, into
its own nullable column (``pf_<key>``, dots as ``__``) with an INVERTED index; the JSON keeps
the value too, so reads do not change. A filter condition on an indexed key reads the column
when the column answers it exactly (``column_leaf``); anything else (a value of another type,
a range on a keyword) keeps the JSON expression.

Measured on milvus-lite 3.2.2: nullable VARCHAR / INT64 / DOUBLE / BOOL columns with INVERTED
indexes, ``is null`` / ``is not null``, ``in [...]`` and ranges with float bounds on INT64.
Nullable fields need Milvus >= 2.5; columns cannot be added to an existing collection (Lite,
servers before 2.6), so only a new collection gets them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import UnsupportedSpecError
from ..filters import AnyOf, Eq, Filter, Range
from ..payload_index import PayloadIndexes, PayloadType, accepts, lookup

if TYPE_CHECKING:  # versions imports convert, which imports this module
    from .versions import ServerInfo

logger = logging.getLogger(__name__)

#: Nullable scalar fields (a record without the key holds NULL) appeared in Milvus 2.5.
NULLABLE_MIN = (2, 5, 0)
PREFIX = "pf_"
#: VARCHAR column width in bytes (Milvus' maximum); payload strings are at most this long.
KEYWORD_MAX_BYTES = 65_535
#: Integer ranges are translated only with bounds an INT64 comparison reads exactly.
_EXACT_FLOAT = 2**53

#: Indexed payload keys of a collection that have a column, and their types.
Columns = Mapping[str, PayloadType]


def column_name(key: str) -> str:
    """``meta.page`` -> ``pf_meta__page``."""
    return PREFIX + key.replace(".", "__")


def supported(server: ServerInfo) -> bool:
    """Whether the server can hold nullable indexed columns (Lite: yes; servers >= 2.5)."""
    return server.at_least(NULLABLE_MIN)


def planned(indexes: PayloadIndexes, server: ServerInfo, name: str) -> dict[str, PayloadType]:
    """The columns a new collection gets (none, with a WARNING, where the server cannot)."""
    if not indexes:
        return {}
    names: dict[str, str] = {}
    for key, _ in indexes:
        other = names.setdefault(column_name(key), key)
        if other != key:
            raise UnsupportedSpecError(
                f"payload_indexes {other!r} and {key!r} both map to the Milvus column "
                f"{column_name(key)!r}; index only one of them"
            )
    if not supported(server):
        from .versions import dotted

        logger.warning(
            "Milvus %s has no nullable scalar fields (Milvus >= %s): payload fields %s of "
            "collection %r are not indexed; filters on them read the JSON payload",
            server.version,
            dotted(NULLABLE_MIN),
            ", ".join(k for k, _ in indexes),
            name,
        )
        return {}
    return dict(indexes)


def existing(indexes: PayloadIndexes, description: Mapping[str, Any]) -> dict[str, PayloadType]:
    """The indexed keys whose column the collection has (from ``describe_collection``)."""
    fields = {f["name"] for f in description.get("fields", [])}
    return {key: kind for key, kind in indexes if column_name(key) in fields}


def add_fields(schema: Any, columns: Columns) -> None:
    """Add one nullable scalar field per indexed key to a pymilvus schema."""
    from .convert import pymilvus

    DataType = pymilvus().DataType
    types = {
        PayloadType.INTEGER: DataType.INT64,
        PayloadType.FLOAT: DataType.DOUBLE,
        PayloadType.BOOL: DataType.BOOL,
    }
    for key, kind in columns.items():
        if kind is PayloadType.KEYWORD:
            schema.add_field(
                column_name(key), DataType.VARCHAR, max_length=KEYWORD_MAX_BYTES, nullable=True
            )
        else:
            schema.add_field(column_name(key), types[kind], nullable=True)


def add_indexes(params: Any, columns: Columns) -> None:
    """An INVERTED index on every column."""
    for key in columns:
        name = column_name(key)
        params.add_index(field_name=name, index_name=f"{name}_inv", index_type="INVERTED")


def row_values(payload: Mapping[str, Any], columns: Columns) -> dict[str, Any]:
    """The column values of one row (None where the payload lacks the key).

    Values were checked at upsert (``payload_index.check_indexed_values``).
    """
    out: dict[str, Any] = {}
    for key, kind in columns.items():
        value = lookup(payload, key)
        if kind is PayloadType.FLOAT and value is not None:
            value = float(value)  # the column is a DOUBLE
        out[column_name(key)] = value
    return out


def column_leaf(flt: Filter, columns: Columns, literal: Any) -> str | None:
    """The condition on the key's column, when it is exactly the JSON one; None otherwise.

    Exact because an indexed field holds a single value of its type or nothing (checked at
    upsert): the column is that value, or NULL where the JSON lacks the key. ``is not null``
    keeps a missing key false, not null, so ``not (...)`` keeps those records as the
    reference does. Equality on a float field keeps the JSON expression (an int filter
    value against a stored float compares differently across engines).
    """
    key = getattr(flt, "key", None)
    kind = columns.get(key) if isinstance(key, str) else None
    if kind is None:
        return None
    col = column_name(key)  # type: ignore[arg-type]
    if isinstance(flt, Eq) and kind is not PayloadType.FLOAT and accepts(kind, flt.value):
        return f"({col} is not null and {col} == {literal(flt.value)})"
    if (
        isinstance(flt, AnyOf)
        and kind is not PayloadType.FLOAT
        and all(accepts(kind, v) for v in flt.values)
    ):
        values = ", ".join(literal(v) for v in flt.values)
        return f"({col} is not null and {col} in [{values}])"
    if isinstance(flt, Range) and kind in (PayloadType.INTEGER, PayloadType.FLOAT):
        ops = (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<="))
        bounds = [(op, getattr(flt, name)) for name, op in ops if getattr(flt, name) is not None]
        if any(isinstance(b, float) and abs(b) > _EXACT_FLOAT for _, b in bounds):
            return None
        return (
            f"({col} is not null and "
            + " and ".join(f"{col} {op} {literal(b)}" for op, b in bounds)
            + ")"
        )
    return None

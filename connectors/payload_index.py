"""Payload indexes: which payload fields a collection indexes for filtering, and as what type.

An index is a performance hint, never a semantic option: a filtered search returns the same
hits with or without it (the contract suite checks this on every backend). What it buys is
speed at scale: without one, Qdrant and Milvus check a filter's condition on every point's
payload; with one they look the matching points up (Qdrant also plans filtered HNSW searches
from the index's cardinality estimate).

How each backend builds them:

- qdrant-edge and Qdrant servers: a payload index per field (``create_field_index`` /
  ``create_payload_index``) with the Qdrant schema type of the field's ``PayloadType``.
- qdrant-client local mode has no payload indexes (it scans in Python): the spec records
  them, a WARNING says they are not built, results are the same.
- Milvus keeps the payload in one JSON field, and neither Milvus Lite (3.2.2: "field type
  JSON does not support scalar index") nor servers before 2.5.11 index JSON paths. So each
  indexed field gets its own nullable scalar column beside the JSON (VARCHAR / INT64 /
  DOUBLE / BOOL, NULL when the record lacks the key) with an INVERTED index, written from
  the payload at upsert; a filter condition on the key reads the column. Columns can only
  be added when the collection is created (Milvus Lite and servers before 2.6 cannot add
  fields), and nullable columns need Milvus >= 2.5: elsewhere a WARNING says which fields
  stay unindexed.

To keep results identical, a record whose indexed field holds a value of another type (a
list included) is refused at upsert, naming the record and the field, on every backend.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import RecordError, SchemaMismatchError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class PayloadType(str, enum.Enum):
    """The type of an indexed payload field (what the filter language compares)."""

    KEYWORD = "keyword"  # str: Eq / AnyOf
    INTEGER = "integer"  # int: Eq / AnyOf / Range
    FLOAT = "float"  # int or float: Range
    BOOL = "bool"  # bool: Eq


#: The Python types a stored value of each PayloadType may have (bool is not an int here).
_ACCEPTS: dict[PayloadType, tuple[type, ...]] = {
    PayloadType.KEYWORD: (str,),
    PayloadType.INTEGER: (int,),
    PayloadType.FLOAT: (int, float),
    PayloadType.BOOL: (bool,),
}

PayloadIndexes = tuple[tuple[str, PayloadType], ...]


def normalize_indexes(value: object) -> PayloadIndexes:
    """``{"kind": "keyword", ...}`` (or pairs) as sorted ``(key, PayloadType)`` pairs.

    Raises ValueError naming the bad key or type and listing the valid types.
    """
    if value is None:
        return ()
    if isinstance(value, Mapping):
        pairs: Iterable[Any] = value.items()
    elif isinstance(value, list | tuple):
        pairs = value
    else:
        raise ValueError(
            "payload_indexes must map payload keys to types, like {'kind': 'keyword'}, "
            f"got {type(value).__name__} {value!r}"
        )
    out: dict[str, PayloadType] = {}
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValueError(f"payload_indexes: expected (key, type) pairs, got {pair!r}")
        key, kind = pair
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(
                "payload_indexes: keys are payload field names like 'kind' or 'meta.page' "
                f"(letters, digits, _ and dots), got {key!r}"
            )
        try:
            parsed = PayloadType(kind)
        except ValueError:
            valid = ", ".join(repr(t.value) for t in PayloadType)
            raise ValueError(
                f"payload_indexes[{key!r}]: type must be one of {valid}, got {kind!r}"
            ) from None
        if key in out and out[key] is not parsed:
            raise ValueError(f"payload_indexes: {key!r} is given twice with different types")
        out[key] = parsed
    return tuple(sorted(out.items()))


def lookup(payload: Mapping[str, Any], key: str) -> Any:
    """``payload["meta"]["page"]`` for ``meta.page``; None when any part is missing."""
    value: Any = payload
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def accepts(kind: PayloadType, value: object) -> bool:
    """Whether ``value`` can be stored in a field indexed as ``kind`` (None: the key is absent)."""
    if value is None:
        return True
    if isinstance(value, bool) and kind is not PayloadType.BOOL:
        return False
    return isinstance(value, _ACCEPTS[kind])


def check_indexed_values(payload: Mapping[str, Any], indexes: PayloadIndexes, **where: Any) -> None:
    """RecordError naming the field when an indexed key holds a value of another type."""
    for key, kind in indexes:
        value = lookup(payload, key)
        if not accepts(kind, value):
            expected = " or ".join(t.__name__ for t in _ACCEPTS[kind])
            raise RecordError(
                f"payload[{key!r}] is indexed as {kind.value} and must be a single {expected} "
                f"(or absent), got {type(value).__name__} {value!r}",
                **where,
            )


def added_indexes(
    existing: PayloadIndexes, requested: PayloadIndexes, *, name: str
) -> PayloadIndexes:
    """The requested indexes a collection lacks; the same key with another type is refused."""
    have = dict(existing)
    clashes = [
        f"{key!r}: existing={have[key].value!r}, requested={kind.value!r}"
        for key, kind in requested
        if key in have and have[key] is not kind
    ]
    if clashes:
        raise SchemaMismatchError(
            f"collection {name!r} indexes payload fields with other types: {'; '.join(clashes)}"
        )
    return tuple((key, kind) for key, kind in requested if key not in have)

"""What a write sends to the documents collection, built without a client: the checks of
Milvus' own limits on a batch (before anything is written) and the documents rows.

The layout adds its token vectors to these rows (struct layout: ``with_struct_tokens``) or
writes them to its companion collection (packed.py, token_rows.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import RecordError
from ..records import PreparedRecord
from ..spec import CollectionSpec
from . import convert as cv
from . import payload_columns


def check_record(
    record: PreparedRecord, index: int, spec: CollectionSpec, max_tokens: int | None
) -> None:
    """Milvus' own limits, checked for the whole batch before anything is written: ids
    encode to at most 1024 bytes; payloads take at most 65,472 bytes of JSON; the struct
    layout holds at most ``max_tokens`` tokens (None: no cap, the other layouts)."""
    cv.encode_id(record.id, index=index)
    if record.payload_bytes > cv.MAX_PAYLOAD_BYTES:
        raise RecordError(
            f"payload is {record.payload_bytes} bytes as JSON; Milvus takes at most "
            f"{cv.MAX_PAYLOAD_BYTES} (its JSON field limit is 65,536)",
            index=index,
            record_id=record.id,
        )
    tokens = record.vectors.get(spec.multivector_field)
    if max_tokens is not None and tokens is not None and len(tokens) > max_tokens:
        raise RecordError(
            f"multivector has {len(tokens)} tokens; this collection's max_tokens is "
            f"{max_tokens} (create it with a larger max_tokens, or use layout='packed')",
            index=index,
            record_id=record.id,
        )


def document_rows(
    spec: CollectionSpec, columns: payload_columns.Columns, records: Sequence[PreparedRecord]
) -> tuple[list[str], list[dict[str, Any]], list[np.ndarray]]:
    """The documents rows a write sends (pk, dense fields, payload, payload columns), their
    primary keys, and each record's (t, 128) token matrix for the layout (none when the
    spec has no multivector)."""
    keys = [cv.encode_id(r.id) for r in records]
    rows = [
        cv.doc_row(spec, k, r.vectors, r.payload) | payload_columns.row_values(r.payload, columns)
        for k, r in zip(keys, records, strict=True)
    ]
    field = spec.multivector_field
    tokens = [r.vectors[field] for r in records] if spec.multivector else []
    return keys, rows, tokens

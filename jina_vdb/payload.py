"""The payload stored with every ingested record: its keys and types, named once.

The sources write payloads (``make_payload``); the CLI, the pipeline's failure reports and
any reader of search hits read them back (``read_payload``). Both sides go through
:class:`Payload`, so a key is spelled in one place.

A payload is a plain JSON-able dict (what the stores keep), typed as a ``TypedDict``:
``source``, ``kind``, ``mime`` and ``sha256`` are always written; the rest only where they
apply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal, TypedDict, cast, get_args, get_origin, get_type_hints

logger = logging.getLogger(__name__)

#: What a record was made from.
PayloadKind = Literal["text", "code", "image", "pdf_page", "pdf_text"]
#: The payload keys ingest's own filters use (``search --filter source=...``, sync's
#: per-source bookkeeping, a task's records), indexed by every collection ingest writes to.
INDEXED_PAYLOAD: dict[str, str] = {"source": "keyword", "kind": "keyword", "task": "keyword"}
#: Longest text kept in a payload (``text``); the full chunk is what was embedded.
MAX_PAYLOAD_TEXT_CHARS = 8192


class Payload(TypedDict, total=False):
    """What is stored with a record's vectors.

    Attributes:
        source: the file's absolute POSIX path (always written); bytes of a name that are
            not UTF-8 are shown as ``\\xNN``.
        source_b64: the exact bytes of such a name, base64 (only for those names).
        kind: text, code, image, pdf_page or pdf_text (always written).
        mime: the content's MIME type (always written).
        sha256: hex digest of the content: the file's bytes, or the chunk's text (always
            written).
        page: 1-based PDF page (PDF pages and their text chunks).
        chunk: 0-based chunk index within its text (or page text).
        line: 1-based line of a JSONL file.
        task: the LoRA task the record was encoded with.
        encoding: the codec a text file was decoded with.
        text: the embedded text, cut at ``MAX_PAYLOAD_TEXT_CHARS`` (texts only).
        meta: user metadata (``--meta``, a JSONL line's own keys).
    """

    source: str
    source_b64: str
    kind: PayloadKind
    mime: str
    sha256: str
    page: int
    chunk: int
    line: int
    task: str
    encoding: str
    text: str
    meta: dict[str, Any]


def _runtime_type(hint: Any) -> type:
    """The class an isinstance check needs for a schema hint (a Literal of str -> str)."""
    origin = get_origin(hint)
    if origin is Literal:
        return type(get_args(hint)[0])
    return cast(type, origin or hint)


#: Each schema key's runtime type, in the order the keys are written.
_TYPES = {key: _runtime_type(hint) for key, hint in get_type_hints(Payload).items()}
PAYLOAD_KEYS = tuple(_TYPES)
_KINDS = frozenset(get_args(PayloadKind))


def make_payload(
    source: str,
    kind: PayloadKind,
    mime: str,
    sha256: str,
    *,
    source_b64: str | None = None,
    page: int | None = None,
    chunk: int | None = None,
    line: int | None = None,
    task: str | None = None,
    encoding: str | None = None,
    text: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Payload:
    """The payload of one item; keys whose value is None (or empty ``meta``) are left out."""
    if kind not in _KINDS:
        raise ValueError(f"payload kind must be one of {sorted(_KINDS)}, got {kind!r}")
    optional: dict[str, Any] = {
        "source_b64": source_b64,
        "page": page,
        "chunk": chunk,
        "line": line,
        "task": task,
        "encoding": encoding,
        "text": None if text is None else text[:MAX_PAYLOAD_TEXT_CHARS],
        "meta": dict(meta) if meta else None,
    }
    payload: dict[str, Any] = {"source": source, "kind": kind, "mime": mime, "sha256": sha256}
    payload.update((k, v) for k, v in optional.items() if v is not None)
    return cast(Payload, payload)


def read_payload(raw: Mapping[str, Any] | None) -> Payload:
    """A stored payload (a hit's, a record's) as the schema.

    Keeps the schema's keys; other keys (another writer's own) are not part of it. A
    schema key holding a value of another type (a collection this application did not
    write) is left out with a WARNING, so a reader never trips on it.
    """
    out: dict[str, Any] = {}
    for key, expected in _TYPES.items():
        value = (raw or {}).get(key)
        if value is None:
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            logger.warning(
                "payload key %r: expected %s, got %r; left out", key, expected.__name__, value
            )
            continue
        out[key] = value
    return cast(Payload, out)


def item_location(payload: Payload, fallback: object = None) -> str:
    """Where an item comes from, for messages: ``file``, ``file:line`` or ``file#page=N``."""
    where = str(payload.get("source", fallback))
    if "page" in payload:
        where += f"#page={payload['page']}"
    if "line" in payload:
        where += f":{payload['line']}"
    return where

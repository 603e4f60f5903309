"""JSONL sources: one line, one record.

Each line is an object with exactly one of ``text`` or ``image`` (a path relative to the
JSONL file, an http(s) URL, a data URI or base64), an optional ``id`` (int or string, used
as is), an optional ``task``, and metadata: ``payload`` / ``metadata`` objects and any
other keys end up under ``payload["meta"]``. Lines are not chunked (the writer of the
file chose the granularity; texts over the model's max_length are truncated by it).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedder.options import Task
from jina_vdb.ingest_types import Ignored

from .chunking import count_tokens
from .files import (
    IMAGE_EXTENSIONS,
    Item,
    ItemError,
    Modality,
    SourceOptions,
    _payload,
    display_path,
    sha256_file,
    sha256_text,
    stable_id,
    text_payload_value,
)
from .images import load_image_checked

_RESERVED = frozenset({"id", "text", "image", "task", "payload", "metadata"})


def iter_jsonl(
    path: str | os.PathLike[str],
    *,
    tokenizer: Any | None = None,
    options: SourceOptions | None = None,
) -> Iterator[Item | ItemError | Ignored]:
    """Yield one item per non-blank line of a JSONL file (an ItemError per bad line).

    JSON text is UTF-8 (RFC 8259; a UTF-8 BOM is accepted): other encodings are refused,
    naming the line. A file without any record is ``Ignored``.
    """
    opts = options or SourceOptions()
    path = Path(path)
    source = path.resolve().as_posix()  # may hold surrogate escapes: hashed for ids
    shown = display_path(source)
    try:
        f = open(path, encoding="utf-8-sig")
    except OSError as e:
        yield ItemError(shown, e.strerror or str(e))
        return
    with f:
        lineno = records = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                yield ItemError(
                    f"{shown}:{lineno + 1}",
                    f"not UTF-8 text ({e.reason}); JSONL must be UTF-8, rest of file skipped",
                )
                return
            if not line:
                break
            lineno += 1
            if not line.strip():
                continue
            records += 1
            try:
                yield _line_item(json.loads(line), path, source, lineno, tokenizer, opts)
            except (ValueError, OSError) as e:  # JSONDecodeError is a ValueError
                yield ItemError(f"{shown}:{lineno}", str(e))
    if not records:
        yield Ignored(shown, "empty file" if not lineno else "no records (only blank lines)")


def _line_item(
    obj: object, path: Path, source: str, lineno: int, tokenizer: Any, opts: SourceOptions
) -> Item:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    has_text, has_image = "text" in obj, "image" in obj
    if has_text == has_image:
        raise ValueError("a line needs exactly one of 'text' or 'image'")
    task = obj.get("task", "retrieval" if opts.task == "auto" else opts.task)
    if task not in Task.values():
        raise ValueError(f"task must be one of {', '.join(Task.values())}, got {task!r}")
    meta = _meta(obj, opts)
    user_id = obj.get("id")
    if user_id is not None and (
        isinstance(user_id, bool) or not isinstance(user_id, int | str) or user_id == ""
    ):
        raise ValueError(f"'id' must be a non-empty string or an int, got {user_id!r}")
    if has_text:
        text = obj["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"'text' must be a non-empty string, got {text!r:.60}")
        sha = sha256_text(text)
        payload = _payload(
            source,
            "text",
            "text/plain",
            sha,
            opts,
            line=lineno,
            task=task,
            text=text_payload_value(text),
        )
        loader: Any = functools.partial(str, text)
        modality, cost = Modality.TEXT, count_tokens(text, tokenizer)
    else:
        image, sha = _image_ref(obj["image"], path)
        payload = _payload(source, "image", "image/*", sha, opts, line=lineno, task=task)
        loader, modality, cost = functools.partial(load_image_checked, image), Modality.IMAGE, 1
    if meta:
        payload["meta"] = meta
    item_id = user_id if user_id is not None else stable_id(source, f"line={lineno}", sha)
    return Item(item_id, modality, task, payload, cost, loader)


def _meta(obj: dict[str, Any], opts: SourceOptions) -> dict[str, Any]:
    meta: dict[str, Any] = dict(opts.metadata)
    for key in ("metadata", "payload"):
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{key!r} must be a JSON object, got {type(value).__name__}")
        meta.update(value)
    meta.update({k: v for k, v in obj.items() if k not in _RESERVED})
    return meta


def _image_ref(value: object, jsonl_path: Path) -> tuple[str, str]:
    """(what to load, content hash): a path relative to the JSONL file is resolved and hashed."""
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"'image' must be a non-empty string (path, URL, data URI or base64), got {value!r:.60}"
        )
    if "://" not in value and not value.startswith("data:") and len(value) < 4096:
        candidate = Path(value) if os.path.isabs(value) else jsonl_path.parent / value
        if candidate.is_file():
            return str(candidate), sha256_file(candidate)
        if Path(value).suffix.lower() in IMAGE_EXTENSIONS:
            raise ValueError(f"image file not found: {candidate}")
    return value, sha256_text(value)

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
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedder.inputs import text_problem
from embedder.options import Task

from ..errors import Failure, Ignored
from .chunking import count_tokens
from .images import load_image_checked
from .items import (
    Item,
    Modality,
    SourceOptions,
    display_path,
    file_payload,
    sha256_file,
    sha256_text,
    stable_id,
)

_RESERVED = frozenset({"id", "text", "image", "task", "payload", "metadata"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
# Base64 (standard or URL-safe) has no "." and real images are long: never a file name.
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-\s]+={0,2}")
_MIN_BASE64_CHARS = 64


def iter_jsonl(
    path: str | os.PathLike[str],
    *,
    tokenizer: Any | None = None,
    options: SourceOptions | None = None,
    root: Path | None = None,
) -> Iterator[Item | Failure | Ignored]:
    """Yield one item per non-blank line of a JSONL file (a Failure per bad line).

    JSON text is UTF-8 (RFC 8259; a UTF-8 BOM is accepted): other encodings are refused,
    naming the line. A file without any record is ``Ignored``.

    ``root``: the folder being ingested that holds the file (image paths must stay inside
    it); None: the file's own folder.
    """
    opts = options or SourceOptions()
    path = Path(path)
    source = path.resolve().as_posix()  # may hold surrogate escapes: hashed for ids
    shown = display_path(source)
    try:
        f = open(path, encoding="utf-8-sig")
    except OSError as e:
        yield Failure(shown, e.strerror or str(e))
        return
    with f:
        lineno = records = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                yield Failure(
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
                obj = json.loads(line, parse_constant=_no_constant)
                _check_unicode(obj)
                yield _line_item(obj, path, root, source, lineno, tokenizer, opts)
            except (ValueError, OSError) as e:  # JSONDecodeError is a ValueError
                yield Failure(f"{shown}:{lineno}", str(e))
    if not records:
        yield Ignored(shown, "empty file" if not lineno else "no records (only blank lines)")


def item_from_object(
    obj: dict[str, Any],
    path: str | os.PathLike[str],
    lineno: int,
    *,
    tokenizer: Any | None = None,
    options: SourceOptions | None = None,
) -> Item:
    """The item of one already-parsed JSONL line (``obj`` as :func:`iter_jsonl` reads it).

    For readers of JSONL files in other layouts (``jina_vdb.evaluation.beir``) that map
    their lines to this one's keys; a ValueError says what is wrong with the line.
    """
    path = Path(path)
    _check_unicode(obj)
    return _line_item(
        obj, path, None, path.resolve().as_posix(), lineno, tokenizer, options or SourceOptions()
    )


def _line_item(
    obj: object,
    path: Path,
    root: Path | None,
    source: str,
    lineno: int,
    tokenizer: Any,
    opts: SourceOptions,
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
        raise ValueError(f"'id' must be a non-empty string or an int, got {_describe(user_id)}")
    if has_text:
        text = obj["text"]
        if not isinstance(text, str):
            raise ValueError(f"'text' must be a non-empty string, got {_describe(text)}")
        problem = text_problem(text)
        if problem is not None:
            raise ValueError(f"'text': {problem}")
        sha = sha256_text(text)
        payload = file_payload(
            source,
            "text",
            "text/plain",
            sha,
            opts,
            line=lineno,
            task=task,
            text=text,
            meta=meta,
        )
        loader: Any = functools.partial(str, text)
        modality, cost = Modality.TEXT, count_tokens(text, tokenizer)
    else:
        image, sha = _image_ref(obj["image"], path, root, opts)
        payload = file_payload(
            source, "image", "image/*", sha, opts, line=lineno, task=task, meta=meta
        )
        loader = functools.partial(
            load_image_checked,
            image,
            timeout=opts.image_timeout,
            max_pixels=opts.image_max_pixels,
        )
        modality, cost = Modality.IMAGE, 1
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


def _image_ref(
    value: object, jsonl_path: Path, root: Path | None, opts: SourceOptions
) -> tuple[str, str]:
    """(What to load, content hash): an http(s) URL, a data URI, or a checked path.

    A path is resolved (symlinks followed) against the JSONL file's folder and must stay
    under the folder being ingested (the JSONL file's own folder when it was named
    directly) unless ``opts.allow_outside_paths``: a JSONL line must not make the ingest
    read ``/etc/passwd``. Base64 is handed on as a data URI, so the loader never looks it up
    as a file name.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            "'image' must be a non-empty string (path, http(s) URL, data URI or base64), "
            f"got {_describe(value)}"
        )
    text = value.strip()
    if text[:8].lower().startswith(("http://", "https://", "data:")):
        return text, sha256_text(text)
    scheme = _SCHEME.match(text)
    if scheme:
        raise ValueError(
            f"'image' URL scheme {scheme.group(1)!r} is not supported (http(s) or data: only)"
        )
    if _BASE64.fullmatch(text) and len(text) >= _MIN_BASE64_CHARS:
        return "data:;base64," + text, sha256_text(text)
    candidate = Path(text) if os.path.isabs(text) else jsonl_path.parent / text
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise ValueError(f"image path {text!r} cannot be resolved ({e.__class__.__name__})") from e
    base = Path(os.path.abspath(root if root is not None else jsonl_path.parent)).resolve()
    if not opts.allow_outside_paths and not resolved.is_relative_to(base):
        raise ValueError(
            f"image path {text!r} is outside {base.as_posix()}, the folder being ingested; "
            "pass --allow-outside-paths (SourceOptions.allow_outside_paths) to read it"
        )
    if not resolved.is_file():
        raise ValueError(f"image file not found: {candidate.as_posix()}")
    return resolved.as_posix(), sha256_file(resolved)


def _describe(value: object) -> str:
    """A JSON value's type and size for messages; a line's contents are not repeated."""
    if isinstance(value, bool | int | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        return f"a string of {len(value):,} characters"
    return "null" if value is None else type(value).__name__


def _check_unicode(obj: object, where: str = "line") -> None:
    """Lone surrogates (from ``\\ud800`` escapes) anywhere in the line: not storable text."""
    if isinstance(obj, str):
        problem = text_problem(obj) if not obj.isascii() else None
        if problem is not None and "surrogate" in problem:
            raise ValueError(f"{where}: {problem}")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_unicode(key, f"{where}: a key")
            _check_unicode(value, f"{where}[{key!r}]" if key.isascii() else where)
    elif isinstance(obj, list):
        for value in obj:
            _check_unicode(value, where)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows (nor can a store keep it)")

"""What a source yields and how it is named: ``Item``, ``SourceOptions``, ids and payloads.

Every item has a stable id derived from (source, page/chunk, content hash); ``stable_id``,
``display_path`` and ``file_payload`` also serve file names that are not UTF-8.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import mimetypes
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedder.fetch import DEFAULT_TIMEOUT_S
from embedder.options import DEFAULT_MAX_PIXELS, Task

from ..payload import Payload, PayloadKind, make_payload
from .chunking import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_TOKENS, check_chunking
from .pdf import DEFAULT_DPI, DEFAULT_MAX_RENDER_PIXELS

#: Larger text files are reported and skipped (the whole text is tokenized at once).
DEFAULT_MAX_TEXT_BYTES = 32 * 2**20


class Modality(str, enum.Enum):
    TEXT = "text"
    IMAGE = "image"


@dataclass(frozen=True)
class Item:
    """One thing to embed.

    Attributes:
        id: stable id from (source, page/chunk, content hash), or the JSONL line's own id.
        modality: text or image (PDF pages are images).
        task: the LoRA task to encode it with.
        payload: what is stored with the vectors (source, kind, mime, page, chunk, sha256,
            encoding, text, meta; source_b64 for a file name that is not UTF-8).
        cost: tokens for a text, 1 for an image (progress and rates).
    """

    id: str | int
    modality: Modality
    task: str
    payload: Payload
    cost: int
    _loader: Callable[[], Any] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.modality, Modality):  # "text" / "image" are accepted too
            try:
                object.__setattr__(self, "modality", Modality(self.modality))
            except ValueError:
                valid = ", ".join(repr(m.value) for m in Modality)
                raise ValueError(
                    f"item {self.id!r}: modality must be one of {valid}, got {self.modality!r}"
                ) from None

    def load(self) -> Any:
        """The content to encode: the text, or the decoded RGB ``PIL.Image`` (decoded now)."""
        return self._loader()


@dataclass(frozen=True)
class SourceOptions:
    """How files become items.

    Attributes:
        include: glob patterns (on the path relative to the folder given, or the file name);
            when set, files found in folders must match one. Files named directly are
            always taken.
        exclude: glob patterns of files found in folders to leave out.
        task: "retrieval", "text-matching", "code", or "auto" (code files get "code", the
            rest "retrieval").
        chunk_tokens: chunk size in tokens for texts; chunk_overlap: tokens shared by
            neighbouring chunks.
        pdf_dpi: render resolution of PDF pages; pdf_text: also embed each page's text layer.
        pdf_max_render_pixels: renders larger than this are scaled down.
        max_text_bytes: larger text files are reported and skipped (the whole text is
            tokenized at once for chunking; split huge files or raise this).
        metadata: user metadata stored under ``payload["meta"]`` of every item.
        image_max_pixels: the model's pixel budget; decoded images far over it are reduced
            while loading (memory). None: keep full size.
        image_timeout: seconds allowed for one image URL download (JSONL), in all.
        allow_outside_paths: let JSONL image paths point outside the folder ingested (or
            the JSONL file's folder); by default such a path is refused.
        hidden: also walk hidden files and folders (names starting with ".").
        strict: raise SourceError on the first bad source instead of yielding a Failure.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    task: str = "retrieval"
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP
    pdf_dpi: float = DEFAULT_DPI
    pdf_text: bool = True
    pdf_max_render_pixels: int = DEFAULT_MAX_RENDER_PIXELS
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
    metadata: Mapping[str, Any] = field(default_factory=dict)
    image_max_pixels: int | None = DEFAULT_MAX_PIXELS
    image_timeout: float = DEFAULT_TIMEOUT_S
    allow_outside_paths: bool = False
    hidden: bool = False
    strict: bool = False

    def __post_init__(self) -> None:
        if self.task not in (*Task.values(), "auto"):
            raise ValueError(
                f"task must be one of {', '.join(Task.values())} or 'auto', got {self.task!r}"
            )
        check_chunking(self.chunk_tokens, self.chunk_overlap)
        if not self.pdf_dpi > 0:
            raise ValueError(f"pdf_dpi must be positive, got {self.pdf_dpi!r}")
        for name in ("include", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))


def stable_id(source: str, locator: str, content_sha256: str) -> str:
    """Id of one item: 32 hex digits of sha256(source, locator, content hash).

    ``source`` is hashed as the path's bytes (``os.fsencode`` on POSIX: UTF-8 with the
    surrogate escapes of undecodable bytes), so any file name the OS can hold gets an id,
    and the ids of UTF-8 names are what they always were.
    """
    key = "\x00".join((source, locator, content_sha256)).encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).hexdigest()[:32]


def display_path(name: str) -> str:
    """A path as valid text: bytes that are not UTF-8 shown as ``\\xNN`` (``caf\\xe9.txt``).

    Payloads, messages and terminals need valid Unicode; ``os.fsdecode`` keeps undecodable
    bytes as lone surrogates, which none of them accept. The exact bytes go in the payload
    as ``source_b64`` when this form differs (see ``file_payload``).
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mime_type(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    special = {
        ".md": "text/markdown",
        ".markdown": "text/markdown",
        ".jsonl": "application/jsonl",
        ".webp": "image/webp",
        ".rs": "text/x-rust",
        ".go": "text/x-go",
        ".ts": "text/x-typescript",
    }
    return special.get(suffix) or mimetypes.guess_type(str(path))[0] or "application/octet-stream"


def file_payload(
    source: str, kind: PayloadKind, mime: str, sha: str, opts: SourceOptions, **extra: Any
) -> Payload:
    """The payload of an item of the file ``source`` (``make_payload`` plus the file name's
    shown form, its exact bytes when they differ, and the options' metadata)."""
    shown = display_path(source)
    # A name that is not UTF-8: its exact bytes, losslessly.
    exact = base64.b64encode(os.fsencode(source)).decode("ascii") if shown != source else None
    extra.setdefault("meta", opts.metadata)
    return make_payload(shown, kind, mime, sha, source_b64=exact, **extra)

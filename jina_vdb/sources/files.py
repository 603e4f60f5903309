"""Sources for ingestion: files, folders and JSONL turned into typed, lazily loaded items.

    for item in iter_items(["./docs", "extra.jsonl"], tokenizer=model.tokenizer):
        ...  # Item (text chunk, image, PDF page), Failure (a bad file, reported) or
             # Ignored (a file of an unsupported type or without content, counted)

Every item has a stable id derived from (source, page/chunk, content hash), so the same
input always gives the same ids and re-ingesting it writes nothing new. Texts are read and
chunked while iterating (they are needed for the id); images are hashed from their bytes
and decoded, and PDF pages rendered, only when ``Item.load()`` is called, so an ingest can
skip items already stored before paying for them.

Text files need not be UTF-8: ``encoding.decode_text`` reads BOMs, Python coding
declarations and unambiguous legacy encodings, and the payload records the codec used.
File names need not be UTF-8 either: ids hash the name's bytes, payloads and messages show
undecodable bytes as ``\\xNN`` (``display_path``) and keep the exact bytes in ``source_b64``.
SVG stays unsupported (counted as ignored): no well-kept rasteriser installs from PyPI
without system libraries (cairosvg needs libcairo), and its XML is markup, not prose.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from embedder.inputs import is_blank

from ..errors import Failure, Ignored, SourceError
from ..payload import PayloadKind
from .chunking import iter_chunks
from .encoding import TextDecodeError, decode_text
from .images import load_image_checked
from .items import (
    Item,
    Modality,
    SourceOptions,
    display_path,
    file_payload,
    mime_type,
    sha256_file,
    sha256_text,
    stable_id,
)
from .jsonl import iter_jsonl
from .pdf import page_texts, render_page
from .walk import walk_files

logger = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset(
    ".txt .text .md .markdown .rst .adoc .org .tex .csv .tsv .log .html .htm .xml".split()
)
CODE_EXTENSIONS = frozenset(
    (
        ".py .pyi .ipynb .js .mjs .cjs .ts .tsx .jsx .java .kt .kts .scala .c .h .cc .cpp .cxx "
        ".hpp .cs .go .rs .rb .php .swift .m .mm .r .jl .lua .pl .pm .sh .bash .zsh .ps1 .sql "
        ".hs .ml .ex .exs .erl .clj .dart .vue .svelte .css .scss .json .yaml .yml .toml .ini .cfg"
    ).split()
)
IMAGE_EXTENSIONS = frozenset(".png .jpg .jpeg .webp .gif .tif .tiff .bmp".split())
PDF_EXTENSIONS = frozenset({".pdf"})
JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson"})


def iter_items(
    paths: Iterable[str | os.PathLike[str]],
    *,
    tokenizer: Any | None = None,
    options: SourceOptions | None = None,
) -> Iterator[Item | Failure | Ignored]:
    """Walk files and folders (recursively, sorted) and yield their items lazily.

    Args:
        paths: files and folders; .txt/.md (and other text), code files, images, PDFs, JSONL.
        tokenizer: the model's tokenizer for token-aware chunking (words when None).
        options: filters, task, chunking, PDF and strictness settings.

    Yields:
        An :class:`Item` per text chunk, image, PDF page and page text chunk, a
        :class:`~jina_vdb.errors.Failure` per bad source (strict mode raises SourceError
        instead), and an ``Ignored`` per file found in a folder whose type is unsupported
        or that holds no content (files named directly with an unsupported type are
        Failures).
    """
    opts = options or SourceOptions()
    for path, root in walk_files(paths, opts):
        yield from file_entries(path, root, tokenizer=tokenizer, options=opts)


def file_entries(
    path: Path,
    root: Path | None,
    *,
    tokenizer: Any | None = None,
    options: SourceOptions | None = None,
) -> Iterator[Item | Failure | Ignored]:
    """The entries of one file that ``walk_files`` found (``iter_items`` for one file).

    Args:
        path: the file.
        root: the folder it was found in, or None for a file named directly (an unsupported
            type is then a Failure, not Ignored, and JSONL image paths are checked against
            the JSONL file's folder).
        tokenizer: as for ``iter_items``.
        options: as for ``iter_items``.
    """
    opts = options or SourceOptions()
    suffix = path.suffix.lower()
    if suffix in JSONL_EXTENSIONS:
        producer: Iterator[Item | Failure | Ignored] = iter_jsonl(
            path, tokenizer=tokenizer, options=opts, root=root
        )
    else:
        producer = _file_items(path, suffix, tokenizer, opts, root is not None)
    for item in _guarded(producer, path):
        if isinstance(item, Failure) and opts.strict:
            raise SourceError(f"{item.source}: {item.reason}")
        yield item


def _guarded(producer: Iterator[Any], path: Path) -> Iterator[Any]:
    """One file's items; an unexpected error ends that file as a Failure, not the walk."""
    while True:
        try:
            item = next(producer)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001 - one bad file never aborts the others
            logger.debug("reading %s failed", path, exc_info=True)
            shown = display_path(_source_name(path))
            yield Failure(shown, f"cannot read: {type(e).__name__}: {e}")
            return
        yield item


def _source_name(path: Path) -> str:
    try:
        return path.resolve().as_posix()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        return Path(os.path.abspath(path)).as_posix()


def _file_items(
    path: Path, suffix: str, tokenizer: Any, opts: SourceOptions, from_folder: bool
) -> Iterator[Item | Failure | Ignored]:
    if path.is_symlink() and not path.exists():  # reported under its own name, not its target
        target = display_path(os.readlink(path))
        why = "symlink loop through" if _loops(path) else "broken symbolic link to"
        yield Failure(display_path(os.path.abspath(path)), f"{why} {target}")
        return
    source = _source_name(path)
    shown = display_path(source)
    try:
        mode = path.stat().st_mode  # follows links: a loop raises ELOOP
    except OSError as e:
        reason = "symlink loop" if e.errno == errno.ELOOP else e.strerror or str(e)
        yield Failure(shown, reason)
        return
    if not stat.S_ISREG(mode):
        yield Failure(shown, "not a regular file")
        return
    kind = _file_kind(suffix)
    if kind is None:
        unsupported = f"unsupported type {suffix or '(no extension)'}"
        yield Ignored(shown, unsupported) if from_folder else Failure(shown, unsupported)
        return
    try:
        if path.stat().st_size == 0:
            yield Ignored(shown, "empty file")
        elif kind == "text":
            yield from _text_file_items(path, source, suffix, tokenizer, opts)
        elif kind == "image":
            yield _image_file_item(path, source, opts)
        else:
            yield from _pdf_items(path, source, tokenizer, opts)
    except (OSError, SourceError, TextDecodeError) as e:
        yield Failure(shown, _reason(e))


def _loops(path: Path) -> bool:
    try:
        path.stat()
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


def _file_kind(suffix: str) -> str | None:
    if suffix in TEXT_EXTENSIONS or suffix in CODE_EXTENSIONS:
        return "text"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return "pdf" if suffix in PDF_EXTENSIONS else None


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _text_items(
    text: str,
    *,
    source: str,
    kind: PayloadKind,
    mime: str,
    task: str,
    tokenizer: Any,
    opts: SourceOptions,
    page: int | None = None,
    encoding: str | None = None,
) -> Iterator[Item]:
    line, counted = 1, 0  # the line a chunk starts on (files only: a page has its number)
    for chunk in iter_chunks(
        text, tokenizer, chunk_tokens=opts.chunk_tokens, overlap=opts.chunk_overlap
    ):
        line += text.count("\n", counted, chunk.start)
        counted = chunk.start
        sha = sha256_text(chunk.text)
        locator = f"chunk={chunk.index}" if page is None else f"page={page};chunk={chunk.index}"
        payload = file_payload(
            source,
            kind,
            mime,
            sha,
            opts,
            page=page,
            line=line if page is None else None,
            chunk=chunk.index,
            task=task,
            encoding=encoding,
            text=chunk.text,
        )
        yield Item(
            stable_id(source, locator, sha),
            Modality.TEXT,
            task,
            payload,
            chunk.tokens,
            functools.partial(str, chunk.text),
        )


def _text_file_items(
    path: Path, source: str, suffix: str, tokenizer: Any, opts: SourceOptions
) -> Iterator[Item | Ignored]:
    size = path.stat().st_size
    if size > opts.max_text_bytes:
        raise SourceError(
            f"text file of {size} bytes is over the limit of {opts.max_text_bytes} bytes; split "
            "it, or raise the limit with --max-text-bytes N (in Python: max_text_bytes=N)"
        )
    decoded = decode_text(path.read_bytes(), suffix=suffix)
    is_code = suffix in CODE_EXTENSIONS
    task = ("code" if is_code else "retrieval") if opts.task == "auto" else opts.task
    if is_blank(decoded.text):
        yield Ignored(display_path(source), "no text (only whitespace)")
        return
    yield from _text_items(
        decoded.text,
        source=source,
        kind="code" if is_code else "text",
        mime=mime_type(path),
        task=task,
        tokenizer=tokenizer,
        opts=opts,
        encoding=decoded.encoding,
    )


def _image_file_item(path: Path, source: str, opts: SourceOptions) -> Item:
    sha = sha256_file(path)
    task = "retrieval" if opts.task == "auto" else opts.task
    payload = file_payload(source, "image", mime_type(path), sha, opts, task=task)
    return Item(
        stable_id(source, "image", sha),
        Modality.IMAGE,
        task,
        payload,
        1,
        functools.partial(load_image_checked, str(path), max_pixels=opts.image_max_pixels),
    )


def _pdf_items(path: Path, source: str, tokenizer: Any, opts: SourceOptions) -> Iterator[Item]:
    sha = sha256_file(path)
    texts = page_texts(path)  # also proves the file opens before any item is yielded
    task = "retrieval" if opts.task == "auto" else opts.task
    for index, text in enumerate(texts):
        page = index + 1
        payload = file_payload(
            source, "pdf_page", "application/pdf", sha, opts, page=page, task=task
        )
        loader = functools.partial(
            render_page, path, index, dpi=opts.pdf_dpi, max_pixels=opts.pdf_max_render_pixels
        )
        yield Item(stable_id(source, f"page={page}", sha), Modality.IMAGE, task, payload, 1, loader)
        if opts.pdf_text and text.strip():
            yield from _text_items(
                text,
                source=source,
                kind="pdf_text",
                mime="application/pdf",
                task=task,
                tokenizer=tokenizer,
                opts=opts,
                page=page,
            )

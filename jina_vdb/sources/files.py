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

import base64
import enum
import errno
import fnmatch
import functools
import hashlib
import logging
import mimetypes
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedder.fetch import DEFAULT_TIMEOUT_S
from embedder.inputs import is_blank
from embedder.options import DEFAULT_MAX_PIXELS, Task

from ..errors import Failure, Ignored, SourceError
from ..payload import Payload, PayloadKind, make_payload
from .chunking import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_TOKENS, check_chunking, iter_chunks
from .encoding import TextDecodeError, decode_text
from .images import load_image_checked
from .pdf import DEFAULT_DPI, DEFAULT_MAX_RENDER_PIXELS, page_texts, render_page

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
_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", ".git", ".hg", ".svn", ".venv", "venv"})
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
    as ``source_b64`` when this form differs (see ``_payload``).
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
    from .jsonl import iter_jsonl  # local: jsonl imports this module

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


def count_files(
    paths: Iterable[str | os.PathLike[str]], options: SourceOptions | None = None
) -> int:
    """How many files ``iter_items`` will read (the folder walk alone: for a progress total)."""
    return sum(1 for _ in walk_files(paths, options or SourceOptions()))


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


def walk_files(
    paths: Iterable[str | os.PathLike[str]], opts: SourceOptions
) -> Iterator[tuple[Path, Path | None]]:
    """The files ``iter_items`` reads, in its order: (file, the folder it was found in, or
    None for a file named directly); ``file_entries`` reads one."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            for path in _walk_folder(root, opts):
                yield path, root
        else:
            yield root, None  # missing files are reported by _file_items


def _walk_folder(root: Path, opts: SourceOptions) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d for d in dirs if d not in _SKIPPED_DIRS and (opts.hidden or not d.startswith("."))
        )
        for name in sorted(files):
            if not opts.hidden and name.startswith("."):
                continue
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if opts.include and not any(
                fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in opts.include
            ):
                continue
            if any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in opts.exclude):
                continue
            yield path


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


def _payload(
    source: str, kind: PayloadKind, mime: str, sha: str, opts: SourceOptions, **extra: Any
) -> Payload:
    """The payload of an item of the file ``source`` (``make_payload`` plus the file name's
    shown form, its exact bytes when they differ, and the options' metadata)."""
    shown = display_path(source)
    # A name that is not UTF-8: its exact bytes, losslessly.
    exact = base64.b64encode(os.fsencode(source)).decode("ascii") if shown != source else None
    extra.setdefault("meta", opts.metadata)
    return make_payload(shown, kind, mime, sha, source_b64=exact, **extra)


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
        payload = _payload(
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
    payload = _payload(source, "image", mime_type(path), sha, opts, task=task)
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
        payload = _payload(source, "pdf_page", "application/pdf", sha, opts, page=page, task=task)
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

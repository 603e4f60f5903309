"""Validate texts and turn every supported image source into an RGB ``PIL.Image.Image``.

This module is pure PIL + stdlib (no torch), so inputs can be checked before a model is
loaded. Every error is an :class:`~embedder.errors.InputError` subclass whose message
names the item's position in the batch and what was wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import unicodedata
import urllib.parse
from collections.abc import Sequence
from typing import TypeAlias

from PIL import Image

from .decoding import Background, Look, decode, to_rgb
from .errors import ImageInputError, InputError, TextInputError, preview
from .fetch import DEFAULT_TIMEOUT_S, fetch, redact_url

logger = logging.getLogger(__name__)

ImageSource: TypeAlias = Image.Image | str | os.PathLike[str] | bytes
"""A PIL image, a local path, an http(s) URL, a data URI, a base64 string, or raw bytes."""

_ALLOWED_SOURCES = (
    "a PIL image, raw bytes, an existing local file path, an http:// or https:// URL, "
    "a data:image/...;base64,... URI, or a base64-encoded image string"
)
# Two or more letters, so that Windows drive letters ("C:\\...") are not taken for schemes.
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_URLSAFE_RE = re.compile(r"[A-Za-z0-9_-]*={0,2}")


# --- texts


def validate_texts(texts: object) -> list[str]:
    """Check a batch of texts and return it as a list.

    Texts with nothing visible in them (empty, whitespace, NUL and other control
    characters, zero-width and other format characters only) are rejected rather than
    embedded: the model would see only its prompt prefix ("Query: " / "Passage: "), and
    that embedding sits close to everything, so it would silently match any document.
    Lone surrogates (from ``"\\ud800"`` escapes in JSON, or ``surrogateescape`` decoding)
    are rejected too: they are not Unicode text and the tokenizer cannot encode them.

    Args:
        texts: A list or tuple of strings (not a bare string).

    Returns:
        The texts as a new list, unchanged.

    Raises:
        TextInputError: If ``texts`` is a bare string, not a sequence, or empty, or if an
            item is None, not a string, blank or not valid Unicode (the message names the
            item's index).
    """
    checked: list[str] = []
    for index, text in enumerate(_as_batch(texts, kind="texts", error=TextInputError)):
        if not isinstance(text, str):
            raise TextInputError(f"expected a str, got {_type_name(text)}", index=index)
        problem = text_problem(text)
        if problem is not None:
            raise TextInputError(problem, index=index)
        checked.append(text)
    return checked


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be embedded (blank, or a lone surrogate), or None if it can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (
            f"text has a lone surrogate U+{ord(text[e.start]):04X} at character {e.start} "
            "(not valid Unicode); fix the text's decoding"
        )
    if is_blank(text):
        return (
            f"text has no visible characters ({len(text):,} chars of whitespace, control or "
            "zero-width characters); blank texts are rejected because their embedding is the "
            "prompt's alone and would match everything"
        )
    return None


def is_blank(text: str) -> bool:
    """True when ``text`` holds only whitespace, control (Cc) and format (Cf) characters."""
    if not text.strip():
        return True
    # Fast path: any ASCII letter or digit is visible (the per-character scan is slow).
    if any(c.isalnum() for c in text[:256]):
        return False
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


# --- images


def load_images(
    sources: object,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    background: Background | None = None,
    max_pixels: int | None = None,
) -> list[Image.Image]:
    """Load a batch of images as RGB PIL images, in input order.

    Args:
        sources: A list or tuple of :data:`ImageSource` items (see :func:`load_image`).
        timeout: Seconds allowed for each URL download as a whole.
        background: See :func:`load_image`.
        max_pixels: See :func:`load_image`.

    Returns:
        One RGB image per source.

    Raises:
        ImageInputError: If ``sources`` is not a non-empty list or tuple, or if any item
            cannot be loaded (the message names the item's index).
    """
    items = _as_batch(sources, kind="images", error=ImageInputError)
    return [
        load_image(
            source,  # type: ignore[arg-type]  # load_image refuses other types, naming the item
            index=index,
            timeout=timeout,
            background=background,
            max_pixels=max_pixels,
        )
        for index, source in enumerate(items)
    ]


def load_image(
    source: ImageSource,
    *,
    index: int | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    background: Background | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Load one image as an RGB PIL image.

    A ``str`` is resolved in this order: an existing local file; an ``http://`` or
    ``https://`` URL; a ``data:`` URI; any other scheme (``file://``, ``ftp://``,
    ``s3://`` ...) is refused; otherwise strict base64 that decodes to an image.

    Decoded images (files, URLs, bytes, base64) are fully decoded, so truncation is
    detected here; multi-frame files (GIF, TIFF) give their first frame; EXIF orientation
    is applied. A PIL image is used as given (its current frame, no EXIF rotation).
    Colour follows the reference, PIL's ``convert("RGB")``: alpha is dropped (transparent
    pixels keep the colour they store). 16-bit grey is scaled (not clipped) and 32-bit /
    float images are stretched to 0..255. An RGB PIL image is returned as is (unless
    reduced); anything else yields a new image.

    Args:
        source: The image, as any :data:`ImageSource`.
        index: The item's position in its batch, quoted in error messages.
        timeout: Seconds allowed for a URL download as a whole (connect, headers, body).
        background: Composite transparent images onto this RGB colour instead of dropping
            alpha, e.g. ``(255, 255, 255)``; None (default) follows the reference.
        max_pixels: The model's pixel budget per image. An image more than 4x over it is
            reduced right after decoding by an integer factor (JPEGs decode at 1/2, 1/4 or
            1/8 scale), keeping at least 4x the budget for the processor's final resize;
            None keeps the full size.

    Returns:
        An RGB image.

    Raises:
        ImageInputError: If the source is of an unsupported type or scheme, a file is
            missing, a download fails (HTTP error, deadline, connection error, over
            ``embedder.fetch.MAX_DOWNLOAD_BYTES``), or the bytes are corrupt, truncated,
            not an image, or over PIL's decompression-bomb limit
            (``PIL.Image.MAX_IMAGE_PIXELS``).
        OptionError: A bad ``background`` or ``max_pixels``.
    """
    look = Look(background, max_pixels)
    if isinstance(source, Image.Image):
        return to_rgb(source, what="PIL image", index=index, look=look, ensure_loaded=True)
    if isinstance(source, bytes | bytearray | memoryview):
        return decode(bytes(source), what="image data", index=index, look=look)
    if isinstance(source, os.PathLike):
        return _load_path(os.fsdecode(source), index=index, look=look)
    if isinstance(source, str):
        return _load_str(source, index=index, timeout=timeout, look=look)
    raise ImageInputError(
        f"unsupported image input of type {_type_name(source)}; expected {_ALLOWED_SOURCES}",
        index=index,
    )


def _load_str(text: str, *, index: int | None, timeout: float, look: Look) -> Image.Image:
    if not text.strip():
        raise ImageInputError("image source is an empty string", index=index)
    if os.path.exists(text):  # False (never raises) for names too long or with NUL bytes.
        return _load_path(text, index=index, look=look)
    lowered = text.lstrip()[:8].lower()
    if lowered.startswith(("http://", "https://")):
        url = text.strip()
        data, content_type = fetch(url, timeout=timeout, index=index)
        what = f"image from {redact_url(url)} (Content-Type {content_type})"
        return decode(data, what=what, index=index, look=look)
    if lowered.startswith("data:"):
        media_type, data = _parse_data_uri(text.strip(), index=index)
        what = f"data URI image ({media_type or 'no media type'})"
        return decode(data, what=what, index=index, look=look)
    scheme = _SCHEME_RE.match(text.strip())
    if scheme:
        raise ImageInputError(
            f"URL scheme {scheme.group(1)!r} is not supported ({preview(redact_url(text))}); "
            f"expected {_ALLOWED_SOURCES} (and no local file has this name)",
            index=index,
        )
    return _load_base64_or_fail(text, index=index, look=look)


def _load_base64_or_fail(text: str, *, index: int | None, look: Look) -> Image.Image:
    not_found = (
        f"{preview(text)} is not an existing file, an http(s) URL, a data URI or a "
        "base64-encoded image"
    )
    if _looks_like_path(text):
        not_found = (
            f"image file not found: {preview(text)} (nor is it a URL, data URI or base64 image)"
        )
    data = _b64decode(text)
    if data is None:
        raise ImageInputError(not_found, index=index)
    return decode(data, what="base64 image", index=index, look=look, unidentified=not_found)


def _looks_like_path(text: str) -> bool:
    """Characters that base64 never contains, at the places where paths have them."""
    stem, suffix = os.path.splitext(text)
    return (
        text.startswith(("/", "./", "../", "~"))
        or "\\" in text
        or (bool(stem) and 1 < len(suffix) <= 6)
    )


def _load_path(path: str, *, index: int | None, look: Look) -> Image.Image:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise ImageInputError(f"image file not found: {path!r}", index=index) from e
    except IsADirectoryError as e:
        raise ImageInputError(f"{path!r} is a directory, not an image file", index=index) from e
    except OSError as e:
        raise ImageInputError(f"cannot read image file {path!r}: {e}", index=index) from e
    return decode(data, what=f"image file {path!r}", index=index, look=look)


# --- base64 / data URIs


def _b64decode(text: str, *, pad: bool = False) -> bytes | None:
    """Strict base64, standard or URL-safe; whitespace (MIME line breaks) is ignored."""
    compact = "".join(text.split())
    if pad:
        compact += "=" * (-len(compact) % 4)
    if not compact or len(compact) % 4:
        return None
    if _B64_RE.fullmatch(compact):
        altchars = None
    elif _B64_URLSAFE_RE.fullmatch(compact):
        altchars = b"-_"
    else:
        return None
    try:
        return base64.b64decode(compact, altchars=altchars, validate=True)
    except binascii.Error:
        return None


def _parse_data_uri(uri: str, *, index: int | None) -> tuple[str, bytes]:
    """Split ``data:[<media type>][;base64],<data>`` into (media type, payload bytes)."""
    header, sep, payload = uri[len("data:") :].partition(",")
    if not sep:
        raise ImageInputError(
            f"malformed data URI {preview(uri)}: expected 'data:image/<type>;base64,<data>'",
            index=index,
        )
    media_type, *params = (part.strip() for part in header.split(";"))
    if "base64" not in (param.lower() for param in params):
        return media_type, urllib.parse.unquote_to_bytes(payload)
    data = _b64decode(urllib.parse.unquote(payload), pad=True)
    if data is None:
        raise ImageInputError(
            f"data URI {preview(uri)} does not contain valid base64 data", index=index
        )
    return media_type, data


# --- helpers


def _as_batch(items: object, *, kind: str, error: type[InputError]) -> list[object]:
    if isinstance(items, str | bytes | bytearray | Image.Image | os.PathLike):
        raise error(
            f"expected a list of {kind}, got a single {_type_name(items)}; wrap it in a list: [x]"
        )
    if not isinstance(items, Sequence):
        raise error(f"expected a list or tuple of {kind}, got {_type_name(items)}")
    if len(items) == 0:
        raise error(f"expected at least one item in {kind}, got an empty {_type_name(items)}")
    return list(items)


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__

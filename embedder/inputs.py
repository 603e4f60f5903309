"""Validate texts and turn every supported image source into an RGB ``PIL.Image.Image``.

This module is pure PIL + stdlib (no torch), so inputs can be checked before a model is
loaded. Every error is an :class:`~embedder.errors.InputError` subclass whose message
names the item's position in the batch and what was wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Sequence
from typing import TypeAlias

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageInputError, InputError, TextInputError

logger = logging.getLogger(__name__)

ImageSource: TypeAlias = Image.Image | str | os.PathLike[str] | bytes
"""A PIL image, a local path, an http(s) URL, a data URI, a base64 string, or raw bytes."""

DEFAULT_TIMEOUT_S = 10.0
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
_READ_CHUNK_BYTES = 1024 * 1024
_ALLOWED_SOURCES = (
    "a PIL image, raw bytes, an existing local file path, an http:// or https:// URL, "
    "a data:image/...;base64,... URI, or a base64-encoded image string"
)
# Two or more letters, so that Windows drive letters ("C:\\...") are not taken for schemes.
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_URLSAFE_RE = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_BOMB_PIXELS_RE = re.compile(r"(\d+) pixels")


# --- texts


def validate_texts(texts: object) -> list[str]:
    """Check a batch of texts and return it as a list.

    Empty and whitespace-only texts are rejected rather than embedded: the model would
    see only its prompt prefix ("Query: " / "Passage: "), and that embedding sits close
    to everything, so it would silently match any document.

    Args:
        texts: A list or tuple of strings (not a bare string).

    Returns:
        The texts as a new list, unchanged.

    Raises:
        TextInputError: If ``texts`` is a bare string, not a sequence, or empty, or if an
            item is None, not a string, or empty/whitespace-only (the message names the
            item's index).
    """
    checked: list[str] = []
    for index, text in enumerate(_as_batch(texts, kind="texts", error=TextInputError)):
        if not isinstance(text, str):
            raise TextInputError(
                f"expected a str, got {_type_name(text)}"
                + ("" if text is None else f" ({_preview(text)})"),
                index=index,
            )
        if not text.strip():
            raise TextInputError(
                f"text is empty or whitespace-only ({_preview(text)}); empty texts are rejected "
                "because their embedding is the prompt's alone and would match everything",
                index=index,
            )
        checked.append(text)
    return checked


# --- images


def load_images(sources: object, *, timeout: float = DEFAULT_TIMEOUT_S) -> list[Image.Image]:
    """Load a batch of images as RGB PIL images, in input order.

    Args:
        sources: A list or tuple of :data:`ImageSource` items (see :func:`load_image`).
        timeout: Seconds to wait when connecting to, and for each read from, a URL.

    Returns:
        One RGB image per source.

    Raises:
        ImageInputError: If ``sources`` is not a non-empty list or tuple, or if any item
            cannot be loaded (the message names the item's index).
    """
    items = _as_batch(sources, kind="images", error=ImageInputError)
    return [load_image(source, index=index, timeout=timeout) for index, source in enumerate(items)]


def load_image(
    source: ImageSource, *, index: int | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> Image.Image:
    """Load one image as an RGB PIL image.

    A ``str`` is resolved in this order: an existing local file; an ``http://`` or
    ``https://`` URL; a ``data:`` URI; any other scheme (``file://``, ``ftp://``,
    ``s3://`` ...) is refused; otherwise strict base64 that decodes to an image.

    Decoded images (files, URLs, bytes, base64) are fully decoded, so truncation is
    detected here; multi-frame files (GIF, TIFF) give their first frame; EXIF orientation
    is applied. A PIL image is used as given (its current frame, no EXIF rotation).
    Transparency is composited onto white; palette, CMYK, grey and 16-bit modes become
    RGB. An RGB PIL image is returned as is; anything else yields a new image.

    Args:
        source: The image, as any :data:`ImageSource`.
        index: The item's position in its batch, quoted in error messages.
        timeout: Seconds to wait when connecting to, and for each read from, a URL.

    Returns:
        An RGB image.

    Raises:
        ImageInputError: If the source is of an unsupported type or scheme, a file is
            missing, a download fails (HTTP error, timeout, connection error, over
            ``MAX_DOWNLOAD_BYTES``), or the bytes are corrupt, truncated, not an image,
            or over PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    if isinstance(source, Image.Image):
        return _to_rgb(source, what="PIL image", index=index, ensure_loaded=True)
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode(bytes(source), what="image data", index=index)
    if isinstance(source, os.PathLike):
        return _load_path(os.fsdecode(source), index=index)
    if isinstance(source, str):
        return _load_str(source, index=index, timeout=timeout)
    raise ImageInputError(
        f"unsupported image input of type {_type_name(source)}; expected {_ALLOWED_SOURCES}",
        index=index,
    )


def _load_str(text: str, *, index: int | None, timeout: float) -> Image.Image:
    if not text.strip():
        raise ImageInputError("image source is an empty string", index=index)
    if os.path.exists(text):  # False (never raises) for names too long or with NUL bytes.
        return _load_path(text, index=index)
    lowered = text.lstrip()[:8].lower()
    if lowered.startswith(("http://", "https://")):
        url = text.strip()
        data, content_type = _fetch(url, timeout=timeout, index=index)
        return _decode(data, what=f"image from {url} (Content-Type {content_type})", index=index)
    if lowered.startswith("data:"):
        media_type, data = _parse_data_uri(text.strip(), index=index)
        return _decode(data, what=f"data URI image ({media_type or 'no media type'})", index=index)
    scheme = _SCHEME_RE.match(text.strip())
    if scheme:
        raise ImageInputError(
            f"URL scheme {scheme.group(1)!r} is not supported ({_preview(text)}); "
            f"expected {_ALLOWED_SOURCES} (and no local file has this name)",
            index=index,
        )
    return _load_base64_or_fail(text, index=index)


def _load_base64_or_fail(text: str, *, index: int | None) -> Image.Image:
    not_found = (
        f"{_preview(text)} is not an existing file, an http(s) URL, a data URI or a "
        "base64-encoded image"
    )
    if _looks_like_path(text):
        not_found = (
            f"image file not found: {_preview(text)} (nor is it a URL, data URI or base64 image)"
        )
    data = _b64decode(text)
    if data is None:
        raise ImageInputError(not_found, index=index)
    return _decode(data, what="base64 image", index=index, unidentified=not_found)


def _looks_like_path(text: str) -> bool:
    """Characters that base64 never contains, at the places where paths have them."""
    stem, suffix = os.path.splitext(text)
    return (
        text.startswith(("/", "./", "../", "~"))
        or "\\" in text
        or (bool(stem) and 1 < len(suffix) <= 6)
    )


def _load_path(path: str, *, index: int | None) -> Image.Image:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise ImageInputError(f"image file not found: {path!r}", index=index) from e
    except IsADirectoryError as e:
        raise ImageInputError(f"{path!r} is a directory, not an image file", index=index) from e
    except OSError as e:
        raise ImageInputError(f"cannot read image file {path!r}: {e}", index=index) from e
    return _decode(data, what=f"image file {path!r}", index=index)


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
            f"malformed data URI {_preview(uri)}: expected 'data:image/<type>;base64,<data>'",
            index=index,
        )
    media_type, *params = (part.strip() for part in header.split(";"))
    if "base64" not in (param.lower() for param in params):
        return media_type, urllib.parse.unquote_to_bytes(payload)
    data = _b64decode(urllib.parse.unquote(payload), pad=True)
    if data is None:
        raise ImageInputError(
            f"data URI {_preview(uri)} does not contain valid base64 data", index=index
        )
    return media_type, data


# --- URLs


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s): urllib would otherwise also follow ``ftp://``."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise urllib.error.HTTPError(
                newurl, code, f"redirect to non-http(s) URL {newurl!r} refused", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url: str, *, timeout: float, index: int | None) -> tuple[bytes, str]:
    """Download ``url`` with a per-operation ``timeout``; return (body, content type)."""
    logger.debug("fetching image %s from %s (timeout %g s)", index, url, timeout)
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    request = urllib.request.Request(url, headers={"Accept": "image/*", "User-Agent": "jina-vdb"})
    try:
        with opener.open(request, timeout=timeout) as response:
            data = _read_capped(response)
            content_type = response.headers.get_content_type()
    except urllib.error.HTTPError as e:
        e.close()
        raise ImageInputError(f"HTTP {e.code} {e.reason} fetching {url}", index=index) from e
    except urllib.error.URLError as e:
        raise ImageInputError(_network_error(url, e.reason, timeout), index=index) from e
    except (OSError, http.client.HTTPException, ValueError) as e:  # read timeouts, bad URLs
        raise ImageInputError(_network_error(url, e, timeout), index=index) from e
    if data is None:
        raise ImageInputError(
            f"image at {url} is larger than the download limit of {MAX_DOWNLOAD_BYTES:,} bytes "
            "(embedder.inputs.MAX_DOWNLOAD_BYTES)",
            index=index,
        )
    return data, content_type


def _read_capped(response: http.client.HTTPResponse) -> bytes | None:
    """The whole body, or None as soon as it exceeds ``MAX_DOWNLOAD_BYTES``."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_DOWNLOAD_BYTES:
        return None
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read(_READ_CHUNK_BYTES):
        total += len(chunk)
        if total > MAX_DOWNLOAD_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _network_error(url: str, reason: object, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s fetching {url}; pass a larger timeout= if slow"
    return f"could not fetch {url}: {reason}"


# --- decoding


def _decode(
    data: bytes, *, what: str, index: int | None, unidentified: str | None = None
) -> Image.Image:
    """Fully decode ``data`` (first frame) and convert it to RGB.

    ``unidentified`` replaces the "unsupported format" message, for callers that only
    guessed that ``data`` is an image.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; treat that as an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()  # Image.open is lazy: decode now so truncation is caught here.
            ImageOps.exif_transpose(image, in_place=True)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageInputError(_bomb_message(what, e), index=index) from e
    except UnidentifiedImageError as e:
        message = unidentified or _unidentified_message(what, data)
        raise ImageInputError(message, index=index) from e
    except Exception as e:  # noqa: BLE001 - PIL plugins raise many types on corrupt input
        raise ImageInputError(
            f"{what} is corrupt or truncated ({len(data):,} bytes): {type(e).__name__}: {e}",
            index=index,
        ) from e
    return _to_rgb(image, what=what, index=index)


def _bomb_message(what: str, error: Exception) -> str:
    limit = Image.MAX_IMAGE_PIXELS
    found = _BOMB_PIXELS_RE.search(str(error))
    size = f"{int(found.group(1)):,} pixels" if found else str(error)
    return (
        f"{what} has {size}, over PIL's decompression-bomb limit of {limit or 0:,} pixels "
        "(PIL.Image.MAX_IMAGE_PIXELS); if you trust this image, raise the limit, e.g. "
        "`PIL.Image.MAX_IMAGE_PIXELS = 300_000_000`, or set it to None to disable the check"
    )


def _unidentified_message(what: str, data: bytes) -> str:
    if data.lstrip().startswith(b"%PDF"):
        return f"{what} is a PDF, not an image; render its pages to images first"
    return (
        f"{what} is not in a supported image format ({len(data):,} bytes starting with "
        f"{data[:16]!r}); expected e.g. PNG, JPEG, WebP, GIF, BMP or TIFF"
    )


def _to_rgb(
    image: Image.Image, *, what: str, index: int | None, ensure_loaded: bool = False
) -> Image.Image:
    try:
        if ensure_loaded:
            image.load()  # a lazily opened user image may still fail to decode
        return _convert_rgb(image)
    except Exception as e:  # noqa: BLE001 - corrupt lazy images and odd modes raise many types
        raise ImageInputError(
            f"cannot convert {what} (mode {image.mode!r}, size {image.size}) to RGB: "
            f"{type(e).__name__}: {e}",
            index=index,
        ) from e


def _convert_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16"):
        # convert("RGB") would clip 16-bit values at 255; scale 0..65535 to 0..255 instead.
        image = image.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    elif image.mode in ("I", "F"):
        image = _stretch_to_l(image)
    elif image.mode == "La":
        image = image.convert("LA")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info


def _stretch_to_l(image: Image.Image) -> Image.Image:
    """32-bit int / float images have no fixed range: map their min..max to 0..255."""
    low, high = image.getextrema()
    scale = 255 / (high - low) if high > low else 0.0
    return image.convert("F").point(lambda v: (v - low) * scale).convert("L")


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


def _preview(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters for messages."""
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown):,} chars)"

"""Decode image bytes into the RGB image the processor sees: reduce, rotate, convert colour.

Pure PIL (no torch). Colour follows the reference (PIL's ``convert("RGB")``, alpha
dropped); compositing onto a background is an explicit :class:`Look` option. Images far
over the model's pixel budget are reduced while decoding (JPEG) or right after it, so a
small file with huge dimensions never waits for the encoder at full size.
"""

from __future__ import annotations

import io
import logging
import math
import re
import warnings
from dataclasses import dataclass
from typing import TypeAlias, cast

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageInputError, OptionError, preview

logger = logging.getLogger(__name__)

Background: TypeAlias = tuple[int, int, int]
"""An RGB colour to composite transparent images onto (None: drop alpha, as the reference)."""

# A decoded image more than this many times over the pixel budget is reduced by an integer
# factor at load time, keeping at least this many times the budget (2x its linear size)
# for the processor's own bicubic resize: a 9000x9000 PNG then holds ~7 MB instead of
# ~1 GB while it waits for the encoder.
_OVERSAMPLE = 4
_MIN_REDUCED_SIDE = 56  # never reduce the short side below two 28-pixel patches
_BOMB_PIXELS_RE = re.compile(r"(\d+) pixels")


@dataclass(frozen=True)
class Look:
    """How a decoded image becomes the RGB image the processor sees.

    Attributes:
        background: composite transparent images onto this RGB colour; None (default)
            drops alpha, as the reference's ``convert("RGB")`` does.
        max_pixels: the model's pixel budget; an image more than 4x over it is reduced by
            an integer factor while or right after decoding. None keeps the full size.
    """

    background: Background | None = None
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        bg = self.background
        if bg is not None and not (
            isinstance(bg, tuple)
            and len(bg) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in bg)
        ):
            raise OptionError(
                f"background must be None or an RGB tuple of three ints in 0..255, got {bg!r}"
            )
        mp = self.max_pixels
        if mp is not None and (isinstance(mp, bool) or not isinstance(mp, int) or mp < 1):
            raise OptionError(f"max_pixels must be a positive int or None, got {mp!r}")


def decode(
    data: bytes, *, what: str, index: int | None, look: Look, unidentified: str | None = None
) -> Image.Image:
    """Decode ``data`` (first frame, reduced when far over the budget) and convert it to RGB.

    ``unidentified`` replaces the "unsupported format" message, for callers that only
    guessed that ``data`` is an image.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; treat that as an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            factor = _reduce_factor(image.size, look.max_pixels)
            if factor > 1 and image.format == "JPEG":
                # DCT scaling: decode straight at 1/2, 1/4 or 1/8 size, never the full image.
                image.draft(image.mode, (image.width // factor, image.height // factor))
            image.load()  # Image.open is lazy: decode now so truncation is caught here.
            image = _reduce(image, look.max_pixels)
            ImageOps.exif_transpose(image, in_place=True)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageInputError(_bomb_message(what, e), index=index) from e
    except UnidentifiedImageError as e:
        message = unidentified or _unidentified_message(what, data)
        raise ImageInputError(message, index=index) from e
    except Exception as e:  # noqa: BLE001 - PIL plugins raise many types on corrupt input
        raise ImageInputError(
            f"{what} is corrupt or truncated ({len(data):,} bytes): {type(e).__name__}: "
            f"{preview(str(e), 120)}",
            index=index,
        ) from e
    return to_rgb(image, what=what, index=index, look=look)


def _reduce_factor(size: tuple[int, int], max_pixels: int | None) -> int:
    """Integer shrink factor keeping at least ``_OVERSAMPLE * max_pixels`` pixels (1: none)."""
    if max_pixels is None:
        return 1
    width, height = size
    factor = math.isqrt(width * height // (_OVERSAMPLE * max_pixels))
    return max(1, min(factor, min(width, height) // _MIN_REDUCED_SIDE))


def _reduce(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """Box-average ``image`` down by the integer factor it still needs (after a JPEG draft)."""
    factor = _reduce_factor(image.size, max_pixels)
    if factor == 1:
        return image
    if image.mode not in _REDUCIBLE_MODES:  # palette, bilevel, 16-bit: convert first
        image = _convert_rgb(image, None)
    logger.debug("reducing a %dx%d image by %d at load", image.width, image.height, factor)
    return image.reduce(factor)


_REDUCIBLE_MODES = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F"})


def _bomb_message(what: str, error: Exception) -> str:
    limit = Image.MAX_IMAGE_PIXELS
    found = _BOMB_PIXELS_RE.search(str(error))
    size = f"{int(found.group(1)):,} pixels" if found else type(error).__name__
    return (
        f"{what} has {size}, over PIL's decompression-bomb limit of {limit or 0:,} pixels "
        "(PIL.Image.MAX_IMAGE_PIXELS); if you trust this image, raise the limit, e.g. "
        "`PIL.Image.MAX_IMAGE_PIXELS = 300_000_000`, or set it to None to disable the check"
    )


def _unidentified_message(what: str, data: bytes) -> str:
    """Names the kind of data, never quotes it: the bytes may be a private file's contents."""
    if data.lstrip().startswith(b"%PDF"):
        return f"{what} is a PDF, not an image; render its pages to images first"
    head = data[:512]
    kind = "text" if head and all(b in _TEXT_BYTES for b in head) else "binary data"
    return (
        f"{what} is not in a supported image format ({len(data):,} bytes of {kind}); "
        "expected e.g. PNG, JPEG, WebP, GIF, BMP or TIFF"
    )


_TEXT_BYTES = frozenset(range(32, 127)) | {9, 10, 13} | frozenset(range(128, 256))


def to_rgb(
    image: Image.Image, *, what: str, index: int | None, look: Look, ensure_loaded: bool = False
) -> Image.Image:
    try:
        if ensure_loaded:
            image.load()  # a lazily opened user image may still fail to decode
        return _convert_rgb(_reduce(image, look.max_pixels), look.background)
    except Exception as e:  # noqa: BLE001 - corrupt lazy images and odd modes raise many types
        raise ImageInputError(
            f"cannot convert {what} (mode {image.mode!r}, size {image.size}) to RGB: "
            f"{type(e).__name__}: {preview(str(e), 120)}",
            index=index,
        ) from e


def _convert_rgb(image: Image.Image, background: Background | None) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16"):
        # convert("RGB") would clip 16-bit values at 255; scale 0..65535 to 0..255 instead.
        image = image.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    elif image.mode in ("I", "F"):
        image = _stretch_to_l(image)
    elif image.mode == "La":  # PIL has no La -> RGB conversion
        image = image.convert("LA")
    if background is not None and _has_alpha(image):
        rgba = image.convert("RGBA")
        under = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(under, rgba).convert("RGB")
    # The reference's conversion: alpha is dropped, not composited.
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info


def _stretch_to_l(image: Image.Image) -> Image.Image:
    """32-bit int / float images have no fixed range: map their min..max to 0..255."""
    low, high = cast("tuple[float, float]", image.getextrema())  # one band: (min, max)
    scale = 255 / (high - low) if high > low else 0.0
    return image.convert("F").point(lambda v: (v - low) * scale).convert("L")

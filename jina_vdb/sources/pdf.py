"""PDF pages as images (rendered with pypdfium2) and their text layers.

pdfium is not thread-safe: call these from one thread at a time (the ingest pipeline
calls them only from its reader thread). Each call opens and closes the document, so
nothing stays open between the pages of a long PDF. A PDF that cannot be opened, read or
rendered raises SourceError (the caller names the file).
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pypdfium2 makes the image; importing this module needs no PIL
    from PIL import Image

from .._deps import require
from ..errors import SourceError

logger = logging.getLogger(__name__)

DEFAULT_DPI = 150.0
#: Renders above this many pixels are scaled down first (a poster-sized page at 150 DPI
#: would otherwise allocate gigabytes; the model downsamples to ``max_pixels`` anyway).
DEFAULT_MAX_RENDER_PIXELS = 16_000_000


def _pdfium() -> Any:
    return require("pypdfium2", "for PDFs")


def _open(path: str | os.PathLike[str]) -> Any:
    pdfium = _pdfium()
    try:
        return pdfium.PdfDocument(os.fspath(path))
    except Exception as e:  # pdfium raises PdfiumError (and OSError) for bad files
        raise SourceError(f"cannot open PDF ({e})") from e


def page_texts(path: str | os.PathLike[str]) -> list[str]:
    """The text layer of every page (an empty string for a page without text)."""
    doc = _open(path)
    try:
        texts = []
        for i in range(len(doc)):
            page = doc[i]
            try:
                textpage = page.get_textpage()
                try:
                    texts.append(
                        textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
                    )
                finally:
                    textpage.close()
            except Exception as e:
                raise SourceError(f"cannot read the text of page {i + 1} ({e})") from e
            finally:
                page.close()
        return texts
    finally:
        doc.close()


def render_page(
    path: str | os.PathLike[str],
    index: int,
    *,
    dpi: float = DEFAULT_DPI,
    max_pixels: int = DEFAULT_MAX_RENDER_PIXELS,
) -> Image.Image:
    """Render page ``index`` (0-based) as RGB at ``dpi``, scaled down above ``max_pixels``."""
    if not dpi > 0:
        raise ValueError(f"dpi must be positive, got {dpi!r}")
    doc = _open(path)
    try:
        page = doc[index]
        try:
            width, height = page.get_size()  # in points (1/72 inch)
            scale = dpi / 72.0
            pixels = width * height * scale * scale
            if pixels > max_pixels:
                scale *= math.sqrt(max_pixels / pixels)
                logger.debug(
                    "%s page %d: render scaled to %.0f DPI (max %d pixels)",
                    path,
                    index + 1,
                    scale * 72,
                    max_pixels,
                )
            bitmap = page.render(scale=scale)
            image = bitmap.to_pil()
            return image if image.mode == "RGB" else image.convert("RGB")
        except Exception as e:
            raise SourceError(f"cannot render page {index + 1} ({e})") from e
        finally:
            page.close()
    finally:
        doc.close()

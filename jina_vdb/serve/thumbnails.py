"""Thumbnails of image and PDF-page hits, rendered from the source file the point names.

The client names a *point*, never a path: the path comes from that point's stored payload
(``source``, written by ``jina-vdb ingest``). Because anyone holding the API key can also
upsert points with any payload, a path from a payload is still not trusted on its own: the
file is served only when

- it is an absolute path to a regular file (no devices, FIFOs, directories; no relative
  path resolved against the server's working directory), no larger than ``MAX_FILE_BYTES``;
- the sha256 of its bytes equals the ``sha256`` stored in the payload at ingest. A point
  written with another path therefore yields nothing unless its writer already knew the
  exact content hash of that file;
- it decodes as an image (PIL) or, for ``pdf_page`` / ``pdf_text`` points, as a PDF
  whose page ``page`` pdfium renders.

The bytes are read once, hashed and rendered from memory (no check-then-reopen race), and
what goes back is a re-encoded PNG thumbnail, never the file's own bytes. Rendered
thumbnails are cached by (path, stored sha256, device, inode, size, mtime, page, size
asked): a point naming the same file with another hash never hits the cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from jina_vdb._deps import require
from jina_vdb.errors import MissingDependencyError
from jina_vdb.sync import disk_name

logger = logging.getLogger(__name__)

#: Payload kinds that have a picture: an image file, a PDF page (a page's text point,
#: whose sha256 is its text's, is mapped to the page's image point by the route).
THUMBNAIL_KINDS = frozenset({"image", "pdf_page"})
#: Larger source files are not read for a thumbnail.
MAX_FILE_BYTES = 256 * 2**20
_CACHE_ENTRIES = 256


class NoThumbnail(LookupError):
    """This point has no thumbnail to serve (the message says why: 404)."""


class Thumbnails:
    """Renders and caches thumbnails; safe to call from several threads."""

    def __init__(self, *, max_pixels: int) -> None:
        self._max_pixels = max_pixels  # decoded-image limit (decompression bombs)
        self._cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._pdfium = threading.Lock()  # pdfium is not thread-safe

    def png(self, payload: Mapping[str, Any], size: int) -> bytes:
        """A PNG no larger than ``size`` x ``size`` of the point's image or PDF page."""
        kind = payload.get("kind")
        if kind not in THUMBNAIL_KINDS:
            raise NoThumbnail(f"no thumbnail for a point of kind {kind!r} (only images and pages)")
        expected = payload.get("sha256")
        if not isinstance(payload.get("source"), str) or not isinstance(expected, str):
            raise NoThumbnail("the point's payload has no source file and sha256")
        name = disk_name(dict(payload))
        path = os.fsdecode(name)
        if not os.path.isabs(path):
            raise NoThumbnail("the point's source is not an absolute path")
        page = payload.get("page") if kind == "pdf_page" else None
        if kind == "pdf_page" and (not isinstance(page, int) or page < 1):
            raise NoThumbnail("the point's payload has no page number")
        fd, st = _open_regular(name)
        with os.fdopen(fd, "rb") as f:
            key = (path, expected, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, page, size)
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            data = f.read(st.st_size + 1)  # a file that grew meanwhile fails the hash
        if hashlib.sha256(data).hexdigest() != expected:
            raise NoThumbnail("the source file's sha256 differs from the one stored at ingest")
        picture = self._pdf_page(data, page, size) if page is not None else self._image(data)
        picture.thumbnail((size, size))
        out = io.BytesIO()
        picture.save(out, format="PNG")
        png = out.getvalue()
        with self._lock:
            self._cache[key] = png
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return png

    def _image(self, data: bytes) -> Any:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > self._max_pixels:
                    raise NoThumbnail(f"the image has over {self._max_pixels} pixels")
                im.draft("RGB", (512, 512))  # JPEG: decode at a reduced scale
                return im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            raise NoThumbnail("the source file is not an image PIL can read") from None

    def _pdf_page(self, data: bytes, page: int, size: int) -> Any:
        try:
            pdfium = require("pypdfium2", "for PDF page thumbnails")
        except MissingDependencyError as e:
            logger.warning("PDF page thumbnail not rendered: %s", e)
            raise NoThumbnail(str(e)) from None
        with self._pdfium:
            try:
                doc = pdfium.PdfDocument(data)
            except Exception:  # PdfiumError for a file that is not a PDF
                raise NoThumbnail("the source file is not a PDF pdfium can open") from None
            try:
                if page > len(doc):
                    raise NoThumbnail(f"the PDF has no page {page}")
                pdf_page = doc[page - 1]
                try:
                    width, height = pdf_page.get_size()  # points (1/72 inch)
                    scale = size / max(width, height, 1.0)
                    image = pdf_page.render(scale=scale).to_pil()
                finally:
                    pdf_page.close()
            except NoThumbnail:
                raise
            except Exception:
                raise NoThumbnail(f"pdfium cannot render page {page}") from None
            finally:
                doc.close()
        return image if image.mode == "RGB" else image.convert("RGB")


def _open_regular(name: str | bytes) -> tuple[int, os.stat_result]:
    """An open descriptor of a regular file under the size limit, and its stat.

    Opened non-blocking and checked on the descriptor itself: a FIFO or device put at the
    path is refused without blocking, and no file can be swapped in between check and read.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        raise NoThumbnail("the source file is not readable") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
        os.close(fd)
        raise NoThumbnail("the source is not a regular file under the size limit")
    return fd, st

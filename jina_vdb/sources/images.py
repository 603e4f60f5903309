"""Image files for ingestion: decoded by the embedder, with a decompression-bomb message that
says how to raise the limit from the command line as well as from Python."""

from __future__ import annotations

import re
from typing import Any

#: Pillow's message names the pixel count: "Image size (N pixels) exceeds limit of M pixels".
_PIXELS = re.compile(r"\((\d+) pixels\)")


class ImageTooLargeError(ValueError):
    """An image over PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``)."""


def load_image_checked(source: Any, **options: Any) -> Any:
    """``embedder.inputs.load_image(source, **options)``, with a bomb error that names
    ``--max-image-pixels``."""
    from PIL import Image

    from embedder.errors import ImageInputError
    from embedder.inputs import load_image

    try:
        return load_image(source, **options)
    except ImageInputError as e:
        cause = e.__cause__
        if not isinstance(cause, Image.DecompressionBombError | Image.DecompressionBombWarning):
            raise
        found = _PIXELS.search(str(cause))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        limit = Image.MAX_IMAGE_PIXELS or 0
        raise ImageTooLargeError(
            f"image has {size}, over the decompression-bomb limit of {limit:,} pixels; "
            "if you trust it, raise the limit with --max-image-pixels N "
            "(in Python: PIL.Image.MAX_IMAGE_PIXELS)"
        ) from e


def set_max_image_pixels(limit: int | None) -> None:
    """Set PIL's decompression-bomb limit for this process (the CLI's ``--max-image-pixels``)."""
    from PIL import Image

    if limit is not None and (isinstance(limit, bool) or limit <= 0):
        raise ValueError(f"--max-image-pixels must be a positive number of pixels, got {limit!r}")
    Image.MAX_IMAGE_PIXELS = limit

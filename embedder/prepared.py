"""Image preprocessing that can run anywhere: in the encoder, or in a worker process ahead of it.

The resize policy (Qwen2-VL's ``smart_resize``), the normalisation and the patchify are one
function of (the checkpoint's ``ImageSpec``, the pixel budget, the RGB image), so the encoder
and a pool of worker processes give bit-identical ``pixel_values``. An
:class:`ImagePreparer` is small and picklable (no tokenizer, no weights): hand it to a
``ProcessPoolExecutor`` and pass the :class:`PreparedImage` s it returns to
``JinaV4Embedder.encode_image`` like any other image.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .config import ImageSpec
from .errors import ImageInputError, OptionError
from .inputs import ImageSource, load_image, load_images


def image_processor_class() -> type:
    """The PIL/numpy image processor (the reference's default "slow" one)."""
    # transformers 5.x names it Qwen2VLImageProcessorPil, older versions Qwen2VLImageProcessor.
    import transformers

    cls = getattr(transformers, "Qwen2VLImageProcessorPil", None)
    return cls if cls is not None else transformers.Qwen2VLImageProcessor


def smart_resize(
    height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """(height, width) the image processor resizes an image to (transformers' own rule).

    Raises:
        ValueError: an aspect ratio the processor refuses (over 200).
    """
    rule = importlib.import_module(image_processor_class().__module__).smart_resize
    h, w = rule(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return int(h), int(w)


@functools.cache
def image_processor(spec: ImageSpec) -> Any:
    """The transformers image processor for these settings (one per process and spec)."""
    cls = image_processor_class()
    return cls(
        min_pixels=spec.min_pixels,
        max_pixels=spec.max_pixels,
        patch_size=spec.patch_size,
        temporal_patch_size=spec.temporal_patch_size,
        merge_size=spec.merge_size,
        image_mean=list(spec.image_mean),
        image_std=list(spec.image_std),
    )


def image_grid(
    spec: ImageSpec, image: Image.Image, max_pixels: int, index: int | None = None
) -> tuple[int, int]:
    """(rows, cols) of vision patches after the processor's resize.

    Raises:
        ImageInputError: the processor refuses the size (e.g. an aspect ratio over 200).
    """
    try:
        h, w = smart_resize(
            image.height,
            image.width,
            factor=spec.factor,
            min_pixels=spec.min_pixels,
            max_pixels=max_pixels,
        )
    except ValueError as e:
        raise ImageInputError(f"{image.width}x{image.height} image: {e}", index=index) from e
    return h // spec.patch_size, w // spec.patch_size


def preprocess(
    spec: ImageSpec, image: Image.Image, max_pixels: int
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Resize, rescale, normalise and patchify one RGB image.

    Returns:
        ``pixel_values`` (t*h*w patches, C*T*P*P) float32 and the grid (t, h, w).
    """
    size = {"shortest_edge": spec.min_pixels, "longest_edge": max_pixels}
    out = image_processor(spec)(images=[image], size=size, return_tensors="np")
    t, h, w = (int(v) for v in out["image_grid_thw"][0])
    return np.asarray(out["pixel_values"], dtype=np.float32), (t, h, w)


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """An image as the vision tower takes it, for one pixel budget.

    Attributes:
        pixel_values: (t*h*w, C*T*P*P) float32 patches.
        grid_thw: the patch grid (t, h, w).
        max_pixels: the pixel budget it was resized for; ``encode_image`` refuses it at
            another budget.
    """

    pixel_values: np.ndarray
    grid_thw: tuple[int, int, int]
    max_pixels: int

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of vision patches, as ``image_grid`` gives for the source image."""
        return self.grid_thw[1], self.grid_thw[2]

    @property
    def nbytes(self) -> int:
        return int(self.pixel_values.nbytes)


@dataclass(frozen=True)
class ImagePreparer:
    """Picklable: loads an image source and preprocesses it as ``encode_image`` would.

    Build it with ``JinaV4Embedder.image_preparer(max_pixels)``.
    """

    spec: ImageSpec
    max_pixels: int

    def __call__(self, source: ImageSource | Image.Image) -> PreparedImage:
        """The same steps as ``encode_image``: load (a PIL image is checked and kept), the
        grid check, then :func:`preprocess`.

        Raises:
            ImageInputError: the image cannot be loaded or has a size the model refuses.
        """
        image = load_image(source, max_pixels=self.max_pixels)  # type: ignore[arg-type]
        image_grid(self.spec, image, self.max_pixels)
        pixels, grid = preprocess(self.spec, image, self.max_pixels)
        return PreparedImage(pixels, grid, self.max_pixels)


def load_batch(
    sources: object,
    *,
    max_pixels: int,
    timeout: float,
    background: tuple[int, int, int] | None,
) -> list[Image.Image | PreparedImage]:
    """``inputs.load_images``, with :class:`PreparedImage` s kept as they are.

    Raises:
        OptionError: an image prepared for another pixel budget, or a ``background`` with
            prepared images (they are composited already).
        ImageInputError: as ``load_images`` (the message names the item's index).
    """
    if not (
        isinstance(sources, list | tuple) and any(isinstance(s, PreparedImage) for s in sources)
    ):
        return list(
            load_images(sources, timeout=timeout, background=background, max_pixels=max_pixels)
        )
    if background is not None:
        raise OptionError("background cannot apply to prepared images: prepare them with it")
    out: list[Image.Image | PreparedImage] = []
    for index, source in enumerate(sources):
        if not isinstance(source, PreparedImage):
            out.append(load_image(source, index=index, timeout=timeout, max_pixels=max_pixels))
        elif source.max_pixels != max_pixels:
            raise OptionError(
                f"item {index}: prepared for max_pixels={source.max_pixels}, this call uses "
                f"max_pixels={max_pixels}; prepare it with the same budget"
            )
        else:
            out.append(source)
    return out

"""What a checkpoint is, without its weights: tokenizer, head dims, tasks, identity, image sizes.

    description = describe_checkpoint("jinaai/jina-embeddings-v4")
    description.matryoshka_dims, description.identity, description.tokenizer
    fit = description.image_fit()   # picklable: shrink images where they are decoded

A process that plans work for encoders elsewhere (the Ray driver: chunking, the collection's
vector sizes, the model record, Milvus's per-record token bound) needs these facts but never
the weights: loading the real checkpoint on a CPU only for them costs ~7.5 GB of memory
(bfloat16) and tens of seconds. ``describe_checkpoint`` reads config.json,
preprocessor_config.json, the tokenizer files and, for the identity fingerprint, 3 MiB
samples of the weight files as bytes (``embedder.identity``); no tensor is built.

``ImageFit`` resizes an image to the size the processor would resize it to, with the same
decode-time reduction and the same resampling, so the processor's own resize becomes a
no-op: encoding the fitted image gives bit-identical vectors. Shrinking where an image is
decoded (a reading process) means the budget-sized image, not a 150-DPI render, travels to
the encoder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from PIL import Image

from .config import ImageSpec, ModelSpec
from .identity import ModelIdentity, checkpoint_identity
from .inputs import load_image
from .loading import check_layout, load_tokenizer, read_config, read_image_spec, resolve_checkpoint
from .options import PromptName, Task
from .prepared import image_processor_class, smart_resize
from .processing import Processor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageFit:
    """Shrinks an image to the encoder's target size for it (picklable; no model needed).

    Attributes:
        spec: the checkpoint's preprocessor settings.
        max_pixels: the pixel budget the encoder is called with.
    """

    spec: ImageSpec
    max_pixels: int

    def __call__(self, image: Image.Image) -> Image.Image:
        """``image`` as the processor would resize it, when that is smaller; else as decoded.

        Raises:
            ImageInputError: the image cannot be converted to RGB (as ``encode_image``).
        """
        # encode_image's own steps first: the decode-time reduction and the RGB conversion.
        rgb = load_image(image, max_pixels=self.max_pixels)
        try:
            height, width = self._target(rgb.height, rgb.width)
            # The rule is not always idempotent (a side clamped to one patch can leave the
            # area over budget): fit only where the processor keeps the fitted size as is.
            settled = self._target(height, width) == (height, width)
        except ValueError:  # e.g. an aspect ratio over 200: the encoder reports it, named
            return rgb
        if not settled or height * width >= rgb.height * rgb.width:
            return rgb  # left to the encoder (an enlargement saves nothing in transit)
        # The processor resizes a same-size image to a copy of itself: a no-op after this.
        return rgb.resize((width, height), resample=cast(Any, image_processor_class()).resample)

    def _target(self, height: int, width: int) -> tuple[int, int]:
        return smart_resize(
            height,
            width,
            factor=self.spec.factor,
            min_pixels=self.spec.min_pixels,
            max_pixels=self.max_pixels,
        )


class ModelDescription:
    """A checkpoint's facts without its weights (see the module docstring).

    The same names as ``JinaV4Embedder`` reports them: ``tokenizer``, ``matryoshka_dims``,
    ``spec``, ``tasks``, ``identity``, ``image_token_count``, ``prompt_token_count``.
    Build it with :func:`describe_checkpoint`.
    """

    def __init__(self, name: str, folder: Path, spec: ModelSpec, processor: Processor) -> None:
        self._name, self._folder = name, folder
        self._spec, self._processor = spec, processor
        self._identity: ModelIdentity | None = None

    @property
    def tokenizer(self) -> Any:
        return self._processor.tokenizer

    @property
    def matryoshka_dims(self) -> tuple[int, ...]:
        return self._spec.matryoshka_dims

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def tasks(self) -> tuple[Task, ...]:
        return self._spec.tasks

    @property
    def image_spec(self) -> ImageSpec:
        return self._processor.image_spec

    @property
    def identity(self) -> ModelIdentity:
        if self._identity is None:
            self._identity = checkpoint_identity(self._name, self._folder)
        return self._identity

    def image_token_count(self, max_pixels: int | None = None) -> int:
        """The most per-token vectors one image yields at ``max_pixels`` (template included)."""
        return self._processor.image_token_count(max_pixels)

    def prompt_token_count(
        self, task: str | Task, prompt_name: str | PromptName = PromptName.PASSAGE
    ) -> int:
        """Tokens the prompt prefix adds to a text of this task and side."""
        return self._processor.prompt_token_count(task, prompt_name)

    def image_fit(self, max_pixels: int | None = None) -> ImageFit:
        """The resize ``encode_image(..., max_pixels=max_pixels)`` applies, as a picklable call.

        Raises:
            OptionError: a ``max_pixels`` the encoder would refuse.
        """
        return ImageFit(self.image_spec, self._processor.check_max_pixels(max_pixels))


def describe_checkpoint(name_or_path: str | Path) -> ModelDescription:
    """Describe a checkpoint (a folder or a hub id) without loading its weights.

    Raises:
        CheckpointError: a file is missing or a config is invalid (as ``from_pretrained``).
    """
    folder = resolve_checkpoint(name_or_path)
    check_layout(folder)
    config, spec = read_config(folder)
    image_spec = read_image_spec(folder)
    image_spec.check_vision_config(config.vision_config)
    processor = Processor(load_tokenizer(folder), image_spec, config)
    logger.info("described %s without its weights", name_or_path)
    return ModelDescription(str(name_or_path), folder, spec, processor)

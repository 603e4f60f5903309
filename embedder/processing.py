"""Prompts, tokenisation, the image template and image preprocessing -> padded model inputs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import Qwen2_5_VLConfig

from . import prepared
from .config import ImageSpec
from .errors import CheckpointError, OptionError
from .model import ModelInputs
from .options import PromptName, Task, prompt_prefix
from .prepared import PreparedImage

logger = logging.getLogger(__name__)

IMAGE_PAD = "<|image_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
# The reference's per-image prompt; IMAGE_PAD expands to one token per merged patch.
IMAGE_TEMPLATE = (
    f"<|im_start|>user\n{VISION_START}{IMAGE_PAD}{VISION_END}Describe the image.<|im_end|>\n"
)
_PREPROCESS_THREADS = 8


class Processor:
    """Turns texts and images into :class:`~embedder.model.ModelInputs`.

    Args:
        tokenizer: The checkpoint's (fast) Qwen2 tokenizer.
        image_spec: Settings from preprocessor_config.json.
        config: The backbone config; its special token ids must match the tokenizer's.
    """

    def __init__(self, tokenizer: Any, image_spec: ImageSpec, config: Qwen2_5_VLConfig) -> None:
        self.tokenizer = tokenizer
        self.image_spec = image_spec
        self._fast = getattr(tokenizer, "backend_tokenizer", None)
        if self._fast is None:
            raise CheckpointError("a fast tokenizer (tokenizer.json) is required")
        self._check_token_ids(config)
        self.image_token_id = config.image_token_id
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else config.text_config.eos_token_id)
        before, after = IMAGE_TEMPLATE.split(IMAGE_PAD)
        self._prefix_ids = self._encode([before])[0]  # ends with <|vision_start|>
        self._suffix_ids = self._encode([after])[0]  # starts with <|vision_end|>
        if (self._prefix_ids[-1:], self._suffix_ids[:1]) != (
            [config.vision_start_token_id],
            [config.vision_end_token_id],
        ):
            raise CheckpointError("the tokenizer does not keep the vision tokens whole")
        self.image_processor = prepared.image_processor(image_spec)

    def _check_token_ids(self, config: Qwen2_5_VLConfig) -> None:
        expected = {
            IMAGE_PAD: config.image_token_id,
            VISION_START: config.vision_start_token_id,
            VISION_END: config.vision_end_token_id,
        }
        got = {tok: self.tokenizer.convert_tokens_to_ids(tok) for tok in expected}
        bad = {t: (expected[t], got[t]) for t in expected if got[t] != expected[t]}
        if bad:
            raise CheckpointError(
                "config.json token ids do not match the tokenizer: "
                + ", ".join(f"{t} config {a} vs tokenizer {b}" for t, (a, b) in bad.items())
            )

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._fast.encode_batch(list(texts), add_special_tokens=False)]

    # ------------------------------------------------------------------ text

    def tokenize_texts(
        self, texts: Sequence[str], prefixes: Sequence[str], max_length: int
    ) -> tuple[list[list[int]], list[int]]:
        """Tokenise ``prefix + text`` (no chat template, no BOS), right-truncated.

        Returns:
            The token ids per text, and the indices of the texts that were truncated.
        """
        ids = self._encode([p + t for p, t in zip(prefixes, texts, strict=True)])
        truncated = [i for i, seq in enumerate(ids) if len(seq) > max_length]
        for i in truncated:
            ids[i] = ids[i][:max_length]
        return ids, truncated

    def collate_text(self, seqs: Sequence[Sequence[int]]) -> ModelInputs:
        """Right-pad token id lists into one batch; every real token is pooled."""
        ids, mask = self._pad(seqs)
        return ModelInputs(input_ids=ids, attention_mask=mask, pool_mask=mask.bool())

    def _pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)  # (B, L)
        mask = np.zeros((len(seqs), width), dtype=np.int64)  # (B, L)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return torch.from_numpy(ids), torch.from_numpy(mask)

    # ------------------------------------------------------------------ images

    def check_max_pixels(self, max_pixels: int | None) -> int:
        """The per-call pixel cap: the argument, else preprocessor_config.json's."""
        if max_pixels is None:
            return self.image_spec.max_pixels
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int):
            raise OptionError(f"max_pixels must be an int, got {max_pixels!r}")
        if max_pixels < self.image_spec.min_pixels:
            raise OptionError(
                f"max_pixels={max_pixels} is below the processor's min_pixels="
                f"{self.image_spec.min_pixels}"
            )
        return max_pixels

    def image_grid(
        self, image: Image.Image | PreparedImage, max_pixels: int, index: int
    ) -> tuple[int, int]:
        """(rows, cols) of vision patches after the processor's resize."""
        if isinstance(image, PreparedImage):
            return image.grid
        return prepared.image_grid(self.image_spec, image, max_pixels, index)

    def image_token_count(self, max_pixels: int | None) -> int:
        """The most per-token vectors one image yields at ``max_pixels`` (template included)."""
        return self.max_image_sequence_length(self.check_max_pixels(max_pixels))

    def prompt_token_count(self, task: str | Task, prompt_name: str | PromptName) -> int:
        """Tokens the prompt prefix adds to a text of this task and side."""
        t = Task.parse(task, what="task")
        name = PromptName.parse(prompt_name, what="prompt_name")
        return self.prefix_length(prompt_prefix(t, name))

    def image_sequence_length(self, grid: tuple[int, int]) -> int:
        """Tokens of the whole templated sequence for an image of this patch grid."""
        n_image = grid[0] * grid[1] // self.image_spec.merge_size**2
        return len(self._prefix_ids) + n_image + len(self._suffix_ids)

    def max_image_sequence_length(self, max_pixels: int) -> int:
        """Tokens of the templated sequence of the largest image allowed by ``max_pixels``.

        The resize keeps ``height * width <= max_pixels`` in multiples of ``factor``, and one
        image token covers ``factor ** 2`` pixels.
        """
        n_image = max_pixels // self.image_spec.factor**2
        return len(self._prefix_ids) + n_image + len(self._suffix_ids)

    def prefix_length(self, prefix: str) -> int:
        """Tokens of a prompt prefix on its own (e.g. ``"Passage: "``)."""
        return len(self._encode([prefix])[0])

    def image_ids(self, n_image_tokens: int) -> list[int]:
        """The template's token ids with the image placeholder expanded."""
        return [*self._prefix_ids, *[self.image_token_id] * n_image_tokens, *self._suffix_ids]

    def collate_images(
        self, images: Sequence[Image.Image | PreparedImage], max_pixels: int
    ) -> ModelInputs:
        """Resize, normalise and patchify images (unless prepared already, e.g. by worker
        processes); build the templated, padded token batch.

        The dense vector pools ``<|vision_start|>`` ... ``<|vision_end|>`` inclusive.
        """
        todo = [im for im in images if not isinstance(im, PreparedImage)]
        done: list[tuple[np.ndarray, tuple[int, int, int]]] = []
        if todo:
            with ThreadPoolExecutor(min(_PREPROCESS_THREADS, len(todo))) as pool:
                done = list(pool.map(lambda im: self._preprocess_one(im, max_pixels), todo))
        fresh = iter(done)
        parts = [
            (im.pixel_values, im.grid_thw) if isinstance(im, PreparedImage) else next(fresh)
            for im in images
        ]
        pixel_values = torch.from_numpy(np.concatenate([p for p, _ in parts]))  # (N, C*T*P*P)
        grid_thw = torch.tensor([g for _, g in parts], dtype=torch.long)  # (n, 3)
        merge2 = self.image_spec.merge_size**2
        seqs = [self.image_ids(int(t * h * w) // merge2) for t, h, w in grid_thw.tolist()]
        ids, mask = self._pad(seqs)
        pool_mask = torch.zeros_like(mask, dtype=torch.bool)  # (B, L)
        start = len(self._prefix_ids) - 1  # the <|vision_start|> token
        for row, seq in enumerate(seqs):
            end = len(seq) - len(self._suffix_ids)  # the <|vision_end|> token
            pool_mask[row, start : end + 1] = True
        return ModelInputs(
            input_ids=ids,
            attention_mask=mask,
            pool_mask=pool_mask,
            pixel_values=pixel_values,
            image_grid_thw=grid_thw,
        )

    def _preprocess_one(
        self, image: Image.Image, max_pixels: int
    ) -> tuple[np.ndarray, tuple[int, int, int]]:
        return prepared.preprocess(self.image_spec, image, max_pixels)

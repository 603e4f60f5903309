"""Image batches are planned by token budget: an image costs its templated sequence (its
visual tokens + the template), a batch holds at most ``batch_tokens`` padded tokens, so the
vision tower sees at most that many merged visual tokens per forward."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image


def _forward_batches(embedder: Any) -> tuple[list[tuple[int, int, int]], Any]:
    """(rows, padded length, visual tokens) of every forward, via a pre-hook on the model."""
    seen: list[tuple[int, int, int]] = []
    merge2 = embedder._processor.image_spec.merge_size**2

    def hook(_module: Any, args: tuple, kwargs: dict) -> None:
        batch = args[0] if args else kwargs["batch"]
        grid = batch.image_grid_thw
        visual = 0 if grid is None else int(grid.prod(dim=1).sum()) // merge2
        seen.append((*batch.input_ids.shape, visual))

    return seen, embedder._model.register_forward_pre_hook(hook, with_kwargs=True)


def test_images_batch_by_visual_token_budget(tiny_embedder) -> None:
    rng = np.random.default_rng(0)
    sizes = [(56, 56), (448, 336), (112, 224), (280, 280), (56, 112), (336, 448), (224, 224)]
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    costs = [
        tiny_embedder._processor.image_sequence_length(
            tiny_embedder._processor.image_grid(
                im, tiny_embedder._processor.image_spec.max_pixels, i
            )
        )
        for i, im in enumerate(images)
    ]
    budget = max(costs) + min(costs)  # the largest image cannot share a batch with a big one
    seen, handle = _forward_batches(tiny_embedder)
    try:
        batched = tiny_embedder.encode_image(images, task="retrieval", batch_tokens=budget)
    finally:
        handle.remove()
    assert sum(rows for rows, _, _ in seen) == len(images) and len(seen) > 1
    for rows, length, visual in seen:
        assert rows == 1 or rows * length <= budget, (rows, length, budget)
        assert rows == 1 or visual <= budget
    assert [length for _, length, _ in seen] == sorted((n for _, n, _ in seen), reverse=True)
    # batching changes nothing: each image alone gives the same vectors
    for i, image in enumerate(images):
        alone = tiny_embedder.encode_image([image], task="retrieval")
        np.testing.assert_allclose(batched.dense[i], alone.dense[0], atol=1e-5)
        assert batched.token_counts[i] == alone.token_counts[0]

"""describe_checkpoint: a loaded embedder's facts without its weights; ImageFit: same vectors."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from embedder import CheckpointError, JinaV4Embedder, PromptName, Task, describe_checkpoint

#: A small budget (16 image tokens) so that ordinary test images are shrunk.
BUDGET = 12_544


def test_a_description_reports_what_the_loaded_embedder_reports(
    tiny_checkpoint: Path, tiny_embedder: Any
) -> None:
    described = describe_checkpoint(tiny_checkpoint)

    assert described.spec == tiny_embedder.spec
    assert described.matryoshka_dims == tiny_embedder.matryoshka_dims
    assert described.tasks == tiny_embedder.tasks
    assert described.identity == tiny_embedder.identity
    assert described.tokenizer.get_vocab() == tiny_embedder.tokenizer.get_vocab()
    for pixels in (None, BUDGET):
        assert described.image_token_count(pixels) == tiny_embedder.image_token_count(pixels)
    for task in Task:
        for side in PromptName:
            assert described.prompt_token_count(task, side) == tiny_embedder.prompt_token_count(
                task, side
            )


def test_a_description_never_reads_the_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "zeroed"
    shutil.copytree(tiny_checkpoint, folder)
    weights = sorted(folder.rglob("*.safetensors"))
    assert len(weights) >= 3  # two backbone shards and the adapters
    for path in weights:  # same sizes, no safetensors header left: unloadable
        path.write_bytes(bytes(path.stat().st_size))
    with pytest.raises(Exception):  # noqa: B017,PT011 - any load error proves they are unreadable
        JinaV4Embedder.from_pretrained(folder, device="cpu")

    described = describe_checkpoint(folder)

    assert described.matryoshka_dims == describe_checkpoint(tiny_checkpoint).matryoshka_dims
    assert len(described.identity.fingerprint) == 16


def test_a_description_needs_the_checkpoint_files(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "partial"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="preprocessor_config.json"):
        describe_checkpoint(folder)


def _image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    bands = len(mode)
    pixels = rng.integers(0, 256, (height, width, bands), dtype=np.uint8)
    return Image.fromarray(pixels, mode=mode)


@pytest.mark.parametrize(
    ("size", "mode", "shrunk"),
    [
        ((340, 440), "RGB", True),  # a 40-DPI letter page
        ((1275, 1650), "RGB", True),  # a 150-DPI one: over 4x the budget, reduced at load first
        ((333, 101), "RGBA", True),  # alpha dropped as the encoder drops it
        ((100, 100), "RGB", False),  # within the budget
        ((30, 40), "RGB", False),  # under min_pixels: the encoder enlarges it
        ((2000, 30), "RGB", False),  # the resize rule is not idempotent here: left whole
    ],
)
def test_a_fitted_image_encodes_bit_identically_to_the_original(
    tiny_checkpoint: Path,
    tiny_embedder: Any,
    size: tuple[int, int],
    mode: str,
    shrunk: bool,
) -> None:
    fit = pickle.loads(pickle.dumps(describe_checkpoint(tiny_checkpoint).image_fit(BUDGET)))
    image = _image(*size, mode=mode)

    fitted = fit(image)

    assert fitted.mode == "RGB"
    if shrunk:
        assert fitted.width * fitted.height <= BUDGET
    else:
        assert fitted.size == image.size
    want = tiny_embedder.encode_image([image], task="retrieval", max_pixels=BUDGET)
    got = tiny_embedder.encode_image([fitted], task="retrieval", max_pixels=BUDGET)
    np.testing.assert_array_equal(got.dense, want.dense)
    np.testing.assert_array_equal(got.multivectors[0], want.multivectors[0])


def test_image_fit_refuses_a_budget_the_encoder_refuses(tiny_checkpoint: Path) -> None:
    from embedder import OptionError

    with pytest.raises(OptionError, match="min_pixels"):
        describe_checkpoint(tiny_checkpoint).image_fit(100)

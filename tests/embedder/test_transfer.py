"""embedder.transfer: the one-copy device-to-host path gives the same bytes as the plain one;
preprocessed images (embedder.prepared) give the same vectors as PIL images."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from embedder.errors import OptionError
from embedder.model import EmbedderOutput
from embedder.transfer import pin_inputs, to_host


def _output(seed: int = 0) -> EmbedderOutput:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(3, 7, dtype=torch.bool)  # (B, L)
    for row, n in enumerate((7, 2, 5)):
        mask[row, :n] = True
    dense = torch.nn.functional.normalize(torch.randn(3, 64, generator=gen), dim=-1)
    multi = torch.nn.functional.normalize(torch.randn(3, 7, 128, generator=gen), dim=-1)
    return EmbedderOutput(dense=dense, multi=multi, mask=mask)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("dim", [64, 16])
def test_one_copy_gives_the_same_bytes(dtype: torch.dtype, dim: int) -> None:
    out = _output()
    dense_a, multi_a = to_host(out, dim, dtype, one_copy=False)
    dense_b, multi_b = to_host(out, dim, dtype, one_copy=True)
    assert dense_b.dtype == np.float32 and dense_b.shape == (3, dim)
    np.testing.assert_array_equal(dense_a, dense_b)
    assert multi_a is not None and multi_b is not None
    assert [m.shape for m in multi_b] == [(7, 128), (2, 128), (5, 128)]
    for a, b in zip(multi_a, multi_b, strict=True):
        assert a.dtype == b.dtype == torch.empty(0, dtype=dtype).numpy().dtype
        np.testing.assert_array_equal(a, b)


def test_without_multivectors_only_dense_comes_back() -> None:
    out = _output()
    out.multi = None
    dense, multi = to_host(out, 64, torch.float32, one_copy=True)
    assert multi is None and dense.shape == (3, 64)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        for w, h in [(200, 120), (64, 300), (500, 400)]
    ]


def test_prepared_images_encode_bit_identically(tiny_embedder) -> None:
    images = _images()
    preparer = pickle.loads(pickle.dumps(tiny_embedder.image_preparer()))  # as a worker gets it
    prepared = [preparer(im) for im in images]
    direct = tiny_embedder.encode_image(images, task="retrieval")
    via = tiny_embedder.encode_image(prepared, task="retrieval")
    mixed = tiny_embedder.encode_image([prepared[0], images[1], prepared[2]], task="retrieval")
    for got in (via, mixed):
        np.testing.assert_array_equal(got.dense, direct.dense)
        for a, b in zip(got.multivectors, direct.multivectors, strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(got.token_counts, direct.token_counts)


def test_prepared_image_at_another_budget_is_refused(tiny_embedder) -> None:
    prepared = tiny_embedder.image_preparer(max_pixels=50_000)(_images()[0])
    with pytest.raises(OptionError, match=r"item 0: prepared for max_pixels=50000"):
        tiny_embedder.encode_image([prepared], task="retrieval")
    with pytest.raises(OptionError, match="background"):
        tiny_embedder.encode_image(
            [prepared], task="retrieval", max_pixels=50_000, background=(255, 255, 255)
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (pinned memory)")
def test_gpu_pinned_inputs_and_one_copy() -> None:
    from embedder.model import ModelInputs

    ids = torch.ones(2, 5, dtype=torch.long)
    pinned = pin_inputs(ModelInputs(ids, ids, ids.bool(), torch.ones(8, 1176), None))
    assert pinned.input_ids.is_pinned() and pinned.pixel_values.is_pinned()
    out = _output()
    on_gpu = EmbedderOutput(out.dense.cuda(), out.multi.cuda(), out.mask.cuda())
    dense, multi = to_host(on_gpu, 16, torch.float16, one_copy=True)
    ref_dense, ref_multi = to_host(out, 16, torch.float16, one_copy=False)
    np.testing.assert_allclose(dense, ref_dense, atol=1e-6)
    for a, b in zip(multi, ref_multi, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)

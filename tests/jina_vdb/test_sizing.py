"""The per-record token bound Milvus' struct layout is created with, asked of the loaded model."""

from __future__ import annotations

import numpy as np
from PIL import Image

from connectors.milvus.struct_layout import DEFAULT_MAX_TOKENS, SERVER_ARRAY_CAP
from embedder.options import DEFAULT_MAX_LENGTH, DEFAULT_MAX_PIXELS
from jina_vdb.sizing import max_tokens_per_record, milvus_max_tokens
from jina_vdb.sources.chunking import chunk_text
from jina_vdb.sources.samples import TEXTS


def test_image_bound_is_the_sequence_of_the_largest_image(tiny_embedder) -> None:
    pixels = 224 * 224  # 16 x 16 patches of 14 -> 64 image tokens after the 2 x 2 merge
    image = Image.fromarray(np.full((224, 224, 3), 200, dtype=np.uint8))
    batch = tiny_embedder.encode_image([image], task="retrieval", max_pixels=pixels)
    assert batch.multivectors[0].shape[0] == tiny_embedder.image_token_count(pixels)
    wide = Image.fromarray(np.full((300, 900, 3), 50, dtype=np.uint8))  # downscaled to the cap
    batch = tiny_embedder.encode_image([wide], task="retrieval", max_pixels=pixels)
    assert batch.multivectors[0].shape[0] <= tiny_embedder.image_token_count(pixels)


def test_default_capacity_covers_a_page_at_the_default_pixel_budget(tiny_embedder) -> None:
    assert tiny_embedder.image_token_count() == tiny_embedder.image_token_count(DEFAULT_MAX_PIXELS)
    assert 768 < tiny_embedder.image_token_count() <= DEFAULT_MAX_TOKENS


def test_every_chunk_fits_the_text_bound(tiny_embedder) -> None:
    text = " ".join(TEXTS.values()) * 6
    for size in (16, 64):
        chunks = [
            c.text for c in chunk_text(text, tiny_embedder.tokenizer, chunk_tokens=size, overlap=4)
        ]
        small = 56 * 56  # the smallest page: the text bound is the larger one
        bound = max_tokens_per_record(
            tiny_embedder, chunk_tokens=size, max_pixels=small, max_length=DEFAULT_MAX_LENGTH
        )
        assert bound > tiny_embedder.image_token_count(small)
        for task in ("retrieval", "text-matching"):
            batch = tiny_embedder.encode_text(chunks, task=task, prompt_name="passage")
            assert max(m.shape[0] for m in batch.multivectors) <= bound


def test_milvus_bound_is_the_larger_of_chunk_and_page_capped_at_the_server_limit(
    tiny_embedder,
) -> None:
    page = tiny_embedder.image_token_count()
    prompt = tiny_embedder.prompt_token_count("retrieval", "passage")
    common = {"max_pixels": None, "max_length": DEFAULT_MAX_LENGTH}
    assert milvus_max_tokens(tiny_embedder, chunk_tokens=8, **common) == page
    big = milvus_max_tokens(tiny_embedder, chunk_tokens=2048, **common)
    assert 2048 + prompt < big < 2048 + 32
    assert milvus_max_tokens(tiny_embedder, chunk_tokens=8192, **common) == SERVER_ARRAY_CAP
    capped = {"max_pixels": None, "max_length": 1000}  # the encoder cuts texts at max_length
    assert milvus_max_tokens(tiny_embedder, chunk_tokens=2048, **capped) == max(page, 1000)

"""An out-of-memory during a forward halves the batch budget and loses nothing.

The error is injected (the model raises torch.OutOfMemoryError for batches above a size,
as a small GPU would); everything else is the real tiny model.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from embedder import EmbedderError

TEXTS = [f"passage {i}: " + "vector databases store embeddings. " * (1 + i % 5) for i in range(12)]


@pytest.fixture
def small_memory(tiny_embedder, monkeypatch):
    """The tiny model on a 'device' that fits at most ``limit[0]`` items per forward."""
    model = tiny_embedder._model
    limit = [3]
    seen: list[int] = []
    original = type(model).forward

    def forward(self, inputs, *args, **kwargs):
        rows = inputs.input_ids.shape[0]
        seen.append(rows)  # every forward tried, failed or not
        if rows > limit[0]:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return original(self, inputs, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", forward)
    monkeypatch.setattr(
        tiny_embedder, "_backoff", type(tiny_embedder._backoff)(torch.device("cpu"))
    )
    return limit, seen


def test_oom_splits_the_batch_and_keeps_every_item(tiny_embedder, small_memory, caplog):
    reference = tiny_embedder.encode_text(
        TEXTS, task="retrieval", prompt_name="passage", batch_tokens=1
    )  # one item per forward: fits
    limit, seen = small_memory
    seen.clear()
    with caplog.at_level(logging.WARNING, logger="embedder.backoff"):
        got = tiny_embedder.encode_text(
            TEXTS, task="retrieval", prompt_name="passage", batch_tokens=100_000
        )
    assert seen[0] == len(TEXTS)  # the first plan put everything in one batch: it failed
    fitted = [rows for rows in seen if rows <= limit[0]]
    assert sum(fitted) == len(TEXTS)  # each item ran once in a batch that fitted
    assert len(seen) - len(fitted) <= 4  # halving: a few failed tries, not one per item
    np.testing.assert_allclose(got.dense, reference.dense, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got.token_counts, reference.token_counts)
    for a, b in zip(got.multivectors, reference.multivectors, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "batch budget lowered" in warnings[0].getMessage()


def test_the_lowered_budget_is_kept_for_later_calls(tiny_embedder, small_memory, caplog):
    limit, seen = small_memory
    tiny_embedder.encode_text(TEXTS, task="retrieval", prompt_name="passage", batch_tokens=100_000)
    seen.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="embedder.backoff"):
        tiny_embedder.encode_text(
            TEXTS, task="retrieval", prompt_name="passage", batch_tokens=100_000
        )
    assert seen and max(seen) <= limit[0]  # planned within the cap: no failed forward
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]  # warned once only


def test_an_item_that_never_fits_is_an_error_naming_it(tiny_embedder, small_memory):
    limit, _ = small_memory
    limit[0] = 0  # not even one item fits
    with pytest.raises(EmbedderError, match=r"item \d+ \(\d+ tokens\) does not fit in cpu"):
        tiny_embedder.encode_text(TEXTS[:2], task="retrieval", prompt_name="passage")

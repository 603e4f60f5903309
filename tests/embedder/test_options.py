"""Bad options and over-long texts: clear errors naming the value, one warning for truncation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from embedder import JinaV4Embedder, OptionError, TextInputError
from embedder.options import PromptName, Task, prompt_prefix


def test_prompt_rules() -> None:
    assert prompt_prefix(Task.RETRIEVAL, PromptName.QUERY) == "Query: "
    assert prompt_prefix(Task.RETRIEVAL, PromptName.PASSAGE) == "Passage: "
    assert prompt_prefix(Task.CODE, PromptName.PASSAGE) == "Passage: "
    assert prompt_prefix(Task.TEXT_MATCHING, PromptName.PASSAGE) == "Query: "


@pytest.mark.parametrize("task", ["search", "Retrieval", "", 3])
def test_unknown_task_lists_the_valid_ones(tiny_embedder, task) -> None:
    with pytest.raises(OptionError, match="retrieval.*text-matching.*code") as err:
        tiny_embedder.encode_text(["hi"], task=task)
    assert repr(task) in str(err.value)


def test_task_is_required_and_lists_must_match(tiny_embedder) -> None:
    with pytest.raises(OptionError, match="task is required"):
        tiny_embedder.encode_text(["hi"], task=None)
    with pytest.raises(OptionError, match="2 tasks for 3 items"):
        tiny_embedder.encode_text(["a", "b", "c"], task=["code", "code"])
    with pytest.raises(OptionError, match="'nope'"):
        tiny_embedder.encode_text(["a", "b"], task=["code", "nope"])


def test_unknown_prompt_name(tiny_embedder) -> None:
    with pytest.raises(OptionError, match="prompt_name 'document'.*'query', 'passage'"):
        tiny_embedder.encode_text(["hi"], task="retrieval", prompt_name="document")


@pytest.mark.parametrize("dim", [10, 128, 0, True, "16"])
def test_truncate_dim_must_be_a_matryoshka_dim(tiny_embedder, dim) -> None:
    with pytest.raises(OptionError, match=r"truncate_dim=.*\(16, 32, 64\)"):
        tiny_embedder.encode_text(["hi"], task="retrieval", truncate_dim=dim)
    with pytest.raises(OptionError, match="truncate_dim"):
        tiny_embedder.encode_image([Image.new("RGB", (30, 30))], task="code", truncate_dim=dim)


def test_other_bad_options(tiny_embedder) -> None:
    with pytest.raises(OptionError, match="multivector_dtype 'int8'"):
        tiny_embedder.encode_text(["hi"], task="code", multivector_dtype="int8")
    with pytest.raises(OptionError, match="max_length"):
        tiny_embedder.encode_text(["hi"], task="code", max_length=0)
    with pytest.raises(OptionError, match="batch_tokens"):
        tiny_embedder.encode_text(["hi"], task="code", batch_tokens=-1)
    with pytest.raises(OptionError, match="max_pixels=100 is below"):
        tiny_embedder.encode_image([Image.new("RGB", (30, 30))], task="code", max_pixels=100)
    with pytest.raises(TypeError, match="unexpected keyword"):
        tiny_embedder.encode_text(["hi"], task="code", normalize=True)


def test_bad_texts_name_the_item(tiny_embedder) -> None:
    with pytest.raises(TextInputError, match="item 1"):
        tiny_embedder.encode_text(["ok", "   "], task="code")
    with pytest.raises(TextInputError):
        tiny_embedder.encode_text([], task="code")


def test_device_and_dtype_choices_are_checked(tiny_checkpoint) -> None:
    with pytest.raises(OptionError, match="dtype='int8'"):
        JinaV4Embedder.from_pretrained(tiny_checkpoint, device="cpu", dtype="int8")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(OptionError, match="CUDA is not available"):
            JinaV4Embedder.from_pretrained(tiny_checkpoint, device="cuda")


def test_device_and_dtype_defaults_are_logged(tiny_checkpoint, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="embedder"):
        emb = JinaV4Embedder.from_pretrained(tiny_checkpoint)
    text = caplog.text
    assert "embedder device: cpu" in text and "embedder dtype: float32" in text
    assert str(emb.device) == "cpu" and str(emb.dtype) == "torch.float32"


def test_over_max_length_is_truncated_with_one_warning(tiny_embedder, caplog) -> None:
    long_a = "Paris is the capital of France. " * 20
    long_b = "The quick brown fox jumps over the lazy dog. " * 20
    texts = [long_a, "short text", long_b]
    with caplog.at_level(logging.WARNING, logger="embedder"):
        out = tiny_embedder.encode_text(texts, task="retrieval", max_length=24)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (
        "2 of 3 texts" in warnings[0].getMessage() and "max_length=24" in warnings[0].getMessage()
    )
    assert out.token_counts[0] == out.token_counts[2] == 24
    assert out.multivectors[0].shape == (24, 128)
    # Right truncation: the kept tokens are the first 24, so a text that *starts* the
    # same way and is cut at the same point gives the same embedding.
    longer = tiny_embedder.encode_text([long_a + " and more"], task="retrieval", max_length=24)
    np.testing.assert_allclose(longer.dense[0], out.dense[0], atol=1e-6)
    full = tiny_embedder.encode_text([long_a], task="retrieval")
    assert full.token_counts[0] > 24 and not np.allclose(full.dense[0], out.dense[0], atol=1e-3)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="embedder"):
        tiny_embedder.encode_text(texts, task="retrieval")
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]

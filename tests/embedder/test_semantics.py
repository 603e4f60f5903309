"""Outputs equal a straightforward computation with transformers' own Qwen2.5-VL classes.

The reference below loads the tiny checkpoint by hand into ``Qwen2_5_VLModel``, adds
each task's LoRA as ``W + B @ A``, runs one input at a time with no padding, and pools
the final normed hidden states: the text mean over every token, the image mean over
``<|vision_start|>`` .. ``<|vision_end|>``. Nothing of the embedder's forward is reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel, Qwen2VLImageProcessorPil

from embedder import EmbeddingBatch, Task

JINA_KEYS = {"task_names", "matryoshka_dims", "truncate_dim", "multi_vector_projector_dim",
             "single_vector_pool_strategy"}  # fmt: skip
MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]  # fmt: skip
TEXTS = [
    "What is the capital of France?",
    "Paris is the capital and largest city of France, on the Seine. " * 3,
    "def embed(texts): return model.encode_text(texts)",
]
TEMPLATE = ("<|im_start|>user\n<|vision_start|>{pads}<|vision_end|>"
            "Describe the image.<|im_end|>\n")  # fmt: skip


class Reference:
    """Qwen2_5_VLModel + projector with one task's LoRA merged, loaded by hand."""

    def __init__(self, folder: Path, task: str, tokenizer) -> None:
        raw = json.loads((folder / "config.json").read_text())
        self.config = Qwen2_5_VLConfig.from_dict(
            {k: v for k, v in raw.items() if k not in JINA_KEYS}
        )
        self.model = Qwen2_5_VLModel(self.config).float().eval()
        hidden = self.config.text_config.hidden_size
        self.proj = torch.nn.Linear(hidden, raw["multi_vector_projector_dim"])
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        backbone, proj = {}, {}
        for shard in sorted(set(index["weight_map"].values())):
            for key, value in load_file(folder / shard).items():
                if key.startswith("multi_vector_projector."):
                    proj[key.split(".", 1)[1]] = value.float()
                elif key.startswith("model."):
                    backbone["language_model." + key[len("model.") :]] = value.float()
                else:
                    backbone[key] = value.float()
        self.model.load_state_dict(backbone, strict=True)
        self.proj.load_state_dict(proj, strict=True)
        lora = load_file(folder / "adapters" / "adapter_model.safetensors")
        acfg = json.loads((folder / "adapters" / "adapter_config.json").read_text())
        scale = acfg["lora_alpha"] / acfg["r"]
        with torch.no_grad():
            for i in range(self.config.text_config.num_hidden_layers):
                for mod in MODULES:
                    prefix = f"base_model.model.model.language_model.layers.{i}.{mod}"
                    linear = self.model.get_submodule(f"language_model.layers.{i}.{mod}")
                    self._add_lora(linear, lora, prefix, task, scale)
            self._add_lora(self.proj, lora, "base_model.model.multi_vector_projector", task, scale)
        self.tokenizer = tokenizer

    @staticmethod
    def _add_lora(linear, lora, prefix, task, scale) -> None:
        a = lora[f"{prefix}.lora_A.{task}.weight"].float()
        b = lora[f"{prefix}.lora_B.{task}.weight"].float()
        linear.weight += scale * (b @ a)

    @torch.no_grad()
    def _heads(self, hidden: torch.Tensor, span: slice) -> tuple[np.ndarray, np.ndarray]:
        dense = F.normalize(hidden[span].mean(dim=0), dim=-1)
        multi = F.normalize(self.proj(hidden), dim=-1)
        return dense.numpy(), multi.numpy()

    @torch.no_grad()
    def text(self, text: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        ids = self.tokenizer(prefix + text, add_special_tokens=False, return_tensors="pt")[
            "input_ids"
        ]
        out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        return self._heads(out.last_hidden_state[0], slice(None))

    @torch.no_grad()
    def image(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        proc = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=602112)
        feats = proc(images=[image], return_tensors="pt")
        n = int(feats["image_grid_thw"].prod()) // 4
        text = TEMPLATE.format(pads="<|image_pad|>" * n)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = self.model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=feats["pixel_values"],
            image_grid_thw=feats["image_grid_thw"],
            mm_token_type_ids=(ids == self.config.image_token_id).int(),
            use_cache=False,
        )
        start = int((ids[0] == self.config.vision_start_token_id).nonzero()[0])
        end = int((ids[0] == self.config.vision_end_token_id).nonzero()[0])
        return self._heads(out.last_hidden_state[0], slice(start, end + 1))


@pytest.fixture(scope="module")
def references(tiny_checkpoint: Path, tiny_embedder) -> dict[str, Reference]:
    return {t.value: Reference(tiny_checkpoint, t.value, tiny_embedder.tokenizer) for t in Task}


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


IMAGES = {
    "small": lambda: noise_image(40, 30, 1),  # below min_pixels: upscaled
    "wide": lambda: noise_image(300, 130, 2),  # several attention windows
    "tall": lambda: noise_image(90, 250, 3),
}


@pytest.mark.parametrize("task", [t.value for t in Task])
@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_text_matches_reference(tiny_embedder, references, task: str, prompt_name: str) -> None:
    got = tiny_embedder.encode_text(TEXTS, task=task, prompt_name=prompt_name)
    prefix = "Query: " if prompt_name == "query" or task == "text-matching" else "Passage: "
    for i, text in enumerate(TEXTS):
        dense, multi = references[task].text(text, prefix)
        np.testing.assert_allclose(got.dense[i], dense, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.multivectors[i], multi, atol=1e-5, rtol=0)
        assert got.token_counts[i] == multi.shape[0]


@pytest.mark.parametrize("task", ["retrieval", "code"])
def test_image_matches_reference(tiny_embedder, references, task: str) -> None:
    images = [make() for make in IMAGES.values()]
    got = tiny_embedder.encode_image(images, task=task)
    for i, image in enumerate(images):
        dense, multi = references[task].image(image)
        np.testing.assert_allclose(got.dense[i], dense, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.multivectors[i], multi, atol=1e-5, rtol=0)


def test_image_pooling_is_the_vision_span_only(tiny_embedder) -> None:
    got = tiny_embedder.encode_image([IMAGES["wide"]()], task="retrieval")
    # The template adds tokens outside the span: all of them are in the multi-vectors.
    span_tokens = (300 // 28 * 28 // 28) * (130 // 28 * 28 // 28) + 2
    assert got.token_counts[0] > span_tokens
    assert got.multivectors[0].shape == (got.token_counts[0], 128)


def test_every_task_changes_the_output(tiny_embedder) -> None:
    image = IMAGES["tall"]()
    for encode in (
        lambda t: tiny_embedder.encode_text(TEXTS, task=t),
        lambda t: tiny_embedder.encode_image([image], task=t),
    ):
        outs = {t.value: encode(t) for t in Task}
        for a, b in [
            ("retrieval", "text-matching"),
            ("retrieval", "code"),
            ("text-matching", "code"),
        ]:
            cos = np.sum(outs[a].dense * outs[b].dense, axis=1)
            assert (cos < 0.999).all(), (a, b, cos)
            assert not np.allclose(outs[a].multivectors[0], outs[b].multivectors[0], atol=1e-3)


def test_query_and_passage_prompts(tiny_embedder) -> None:
    q = tiny_embedder.encode_text(TEXTS, task="retrieval", prompt_name="query")
    p = tiny_embedder.encode_text(TEXTS, task="retrieval", prompt_name="passage")
    assert (np.sum(q.dense * p.dense, axis=1) < 0.9999).all()
    tok = tiny_embedder.tokenizer
    for i, text in enumerate(TEXTS):
        assert p.token_counts[i] == len(
            tok("Passage: " + text, add_special_tokens=False)["input_ids"]
        )
    # text-matching is symmetric: "passage" gets the "Query: " prefix too (documented choice).
    tq = tiny_embedder.encode_text(TEXTS, task="text-matching", prompt_name="query")
    tp = tiny_embedder.encode_text(TEXTS, task="text-matching", prompt_name="passage")
    np.testing.assert_array_equal(tq.dense, tp.dense)


def test_matryoshka_truncation_renormalises(tiny_embedder) -> None:
    full = tiny_embedder.encode_text(TEXTS, task="code")
    assert full.dense.shape == (3, 64) and full.dim == 64
    for dim in (16, 32):
        cut = tiny_embedder.encode_text(TEXTS, task="code", truncate_dim=dim)
        assert cut.dense.shape == (3, dim)
        np.testing.assert_allclose(np.linalg.norm(cut.dense, axis=1), 1.0, atol=1e-6)
        expected = full.dense[:, :dim] / np.linalg.norm(full.dense[:, :dim], axis=1, keepdims=True)
        np.testing.assert_allclose(cut.dense, expected, atol=1e-6)
        for a, b in zip(cut.multivectors, full.multivectors, strict=True):
            np.testing.assert_array_equal(a, b)  # truncation is for the dense vector only
    same = tiny_embedder.encode_text(TEXTS, task="code", truncate_dim=64)
    np.testing.assert_array_equal(same.dense, full.dense)


def test_multivector_off_skips_them_and_keeps_dense(tiny_embedder) -> None:
    on = tiny_embedder.encode_text(TEXTS, task="retrieval")
    off = tiny_embedder.encode_text(TEXTS, task="retrieval", multivector=False)
    assert off.multivectors is None and off.multivector_dim is None
    np.testing.assert_array_equal(on.dense, off.dense)
    np.testing.assert_array_equal(on.token_counts, off.token_counts)


def test_output_types_and_float16(tiny_embedder) -> None:
    out = tiny_embedder.encode_text(TEXTS, task="retrieval")
    assert isinstance(out, EmbeddingBatch) and len(out) == 3
    assert out.dense.dtype == np.float32 and out.multivector_dim == 128
    assert all(m.dtype == np.float32 for m in out.multivectors)
    for m in out.multivectors:
        np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-5)
    half = tiny_embedder.encode_text(TEXTS, task="retrieval", multivector_dtype="float16")
    assert all(m.dtype == np.float16 for m in half.multivectors)
    for a, b in zip(half.multivectors, out.multivectors, strict=True):
        np.testing.assert_allclose(a.astype(np.float32), b, atol=1e-3)
    np.testing.assert_array_equal(half.dense, out.dense)


def test_a_random_model_is_the_same_model_in_bfloat16() -> None:
    """random_embedder's seed fixes the weights whatever the dtype (torch 2.11 on CPU draws
    other bfloat16 values than float32 ones from one generator), so a bfloat16 build is the
    float32 model rounded: the same embeddings, up to bfloat16's precision."""
    from embedder.testing import random_embedder

    page = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8))
    out = []
    for dtype in ("float32", "bfloat16"):
        emb = random_embedder("tiny", device="cpu", dtype=dtype, seed=5, packing="padded")
        texts = emb.encode_text(TEXTS, task="code")
        images = emb.encode_image([page], task="code", max_pixels=60_000)
        out.append(np.concatenate([texts.dense, images.dense]))  # (4, 64), unit rows
    cosines = (out[0] * out[1]).sum(axis=1)
    assert float(cosines.min()) > 0.999, cosines


def test_transparent_image_matches_the_reference_convert_rgb(tiny_embedder, references) -> None:
    # The reference feeds PIL's convert("RGB") (alpha dropped) to the model, not a composite.
    values = bytes((i * 37 + c * 91) % 256 for i in range(160 * 120) for c in range(4))
    rgba = Image.frombytes("RGBA", (160, 120), values)
    got = tiny_embedder.encode_image([rgba], task="retrieval")
    dense, multi = references["retrieval"].image(rgba.convert("RGB"))
    np.testing.assert_allclose(got.dense[0], dense, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.multivectors[0], multi, atol=1e-5, rtol=0)
    white = tiny_embedder.encode_image([rgba], task="retrieval", background=(255, 255, 255))
    assert not np.allclose(white.dense[0], dense, atol=1e-3)  # compositing: opt-in only

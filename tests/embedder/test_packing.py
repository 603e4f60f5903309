"""Packed rows (one row per batch, varlen attention) against the padded reference path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from embedder import JinaV4Embedder, OptionError, Packing, Task
from embedder.attention import DECODER_ATTENTION, packed_causal_attention, varlen_available
from embedder.batching import plan_batches
from embedder.model import mrope_position_ids
from embedder.packing import pack, resolve_packing

# Very different lengths in one call: a word, a sentence, a few hundred tokens, ~800.
TEXTS = [
    "Paris",
    "SELECT id, score FROM documents WHERE lang = 'en';",
    "The quick brown fox jumps over the lazy dog. " * 40,
    "def embed(texts):\n    return model.encode_text(texts)\n" * 9,
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000; dates 2025-06-24. " * 25,
    "vector",
]


@pytest.fixture(scope="module")
def packed_embedder(tiny_checkpoint) -> JinaV4Embedder:
    """The tiny checkpoint forced onto the packed path (CPU: per-sequence causal SDPA)."""
    return JinaV4Embedder.from_pretrained(
        tiny_checkpoint, device="cpu", dtype="float32", packing="packed"
    )


def _pages() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    sizes = [(56, 56), (300, 120), (90, 400), (224, 224)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def _assert_close(a, b, floor: float) -> None:
    assert np.array_equal(a.token_counts, b.token_counts)
    assert a.dense.shape == b.dense.shape and a.dense.dtype == b.dense.dtype
    assert float((a.dense * b.dense).sum(axis=1).min()) >= floor
    assert a.multivectors is not None and b.multivectors is not None
    for x, y in zip(a.multivectors, b.multivectors, strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        per_token = (x.astype(np.float32) * y.astype(np.float32)).sum(axis=1)
        assert float(per_token.min()) >= floor


@pytest.mark.parametrize(
    ("task", "prompt_name"),
    [
        ("retrieval", "query"),
        ("retrieval", "passage"),
        ("code", "passage"),
        ("text-matching", "query"),
    ],
)
def test_packed_text_matches_padded(tiny_embedder, packed_embedder, task, prompt_name) -> None:
    assert not tiny_embedder.packed and packed_embedder.packed
    # A small budget splits the call into several packed batches of mixed lengths.
    kwargs = dict(task=task, prompt_name=prompt_name, batch_tokens=1024)
    padded = tiny_embedder.encode_text(TEXTS, **kwargs)
    packed = packed_embedder.encode_text(TEXTS, **kwargs)
    assert packed.token_counts.max() > 50 * packed.token_counts.min()
    _assert_close(padded, packed, 0.9999)


def test_packed_text_options_and_mixed_tasks(tiny_embedder, packed_embedder) -> None:
    tasks = ["code", "retrieval", "code", "text-matching", "retrieval", "code"]
    kwargs = dict(task=tasks, truncate_dim=32, multivector_dtype="float16")
    _assert_close(
        tiny_embedder.encode_text(TEXTS, **kwargs),
        packed_embedder.encode_text(TEXTS, **kwargs),
        0.999,
    )
    dense_only = packed_embedder.encode_text(TEXTS, task="code", multivector=False)
    assert dense_only.multivectors is None
    want = tiny_embedder.encode_text(TEXTS, task="code", multivector=False).dense
    assert float((dense_only.dense * want).sum(axis=1).min()) >= 0.9999


def test_packed_images_match_padded(tiny_embedder, packed_embedder) -> None:
    kwargs = dict(task="retrieval", max_pixels=100_000)
    padded = tiny_embedder.encode_image(_pages(), **kwargs)
    packed = packed_embedder.encode_image(_pages(), **kwargs)
    _assert_close(padded, packed, 0.9999)


def test_pack_layout(tiny_embedder) -> None:
    proc, config = tiny_embedder._processor, tiny_embedder._model.config
    seqs = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    packed = pack(proc.collate_text(seqs), config)
    assert packed.input_ids.tolist() == [[5, 6, 7, 8, 9, 10, 11, 12, 13]]
    assert packed.cu_seqlens.tolist() == [0, 3, 4, 9] and packed.max_length == 5
    assert packed.cu_seqlens.dtype == torch.int32
    want = [0, 1, 2, 0, 0, 1, 2, 3, 4]  # restarting per sequence, t = h = w
    assert packed.position_ids.shape == (3, 1, 9)
    assert all(row == want for row in packed.position_ids[:, 0].tolist())
    assert packed.segment.tolist() == [0, 0, 0, 1, 2, 2, 2, 2, 2]
    assert packed.scatter_index.tolist() == [0, 1, 2, 5, 10, 11, 12, 13, 14]  # b * 5 + t
    assert packed.pool_counts.tolist() == [3.0, 1.0, 5.0]
    # Images: the padded path's 3-D M-RoPE positions, gathered at the real tokens.
    batch = proc.collate_images(_pages()[:3], 100_000)
    packed = pack(batch, config)
    mask = batch.attention_mask.bool()
    full = mrope_position_ids(batch.input_ids, batch.attention_mask, batch.image_grid_thw, config)
    assert torch.equal(packed.position_ids[:, 0], full[:, mask])
    assert torch.equal(packed.pool_mask, batch.pool_mask[mask])
    assert packed.pool_counts.tolist() == batch.pool_mask.sum(dim=1).float().tolist()


def test_packed_attention_is_causal_per_sequence() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths, heads, kv_heads, dim = [7, 1, 30, 7, 16, 150], 4, 2, 8  # buckets 16, 32, 160
    total = sum(lengths)
    q = torch.randn(1, heads, total, dim, generator=gen)
    k, v = (torch.randn(1, kv_heads, total, dim, generator=gen) for _ in range(2))
    cu = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int32)
    got, _ = packed_causal_attention(None, q, k, v, None, scaling=0.3, cu_seq_lens_q=cu)
    assert got.shape == (1, total, heads, dim)
    kr, vr = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (k, v))  # GQA by hand
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        want = F.scaled_dot_product_attention(
            q[..., a:b, :], kr[..., a:b, :], vr[..., a:b, :], scale=0.3, is_causal=True
        )
        torch.testing.assert_close(got[:, a:b], want.transpose(1, 2), rtol=0, atol=1e-6)


def test_cpu_default_is_the_padded_path_bit_for_bit(tiny_checkpoint, tiny_embedder) -> None:
    explicit = JinaV4Embedder.from_pretrained(
        tiny_checkpoint, device="cpu", dtype="float32", packing="padded"
    )
    assert not tiny_embedder.packed and not explicit.packed
    lm = tiny_embedder._model.model.language_model
    assert lm.layers[0].self_attn.config._attn_implementation == "sdpa"  # untouched
    a = tiny_embedder.encode_text(TEXTS, task="code", prompt_name="passage")
    b = explicit.encode_text(TEXTS, task="code", prompt_name="passage")
    assert np.array_equal(a.dense, b.dense)
    assert all(np.array_equal(x, y) for x, y in zip(a.multivectors, b.multivectors, strict=True))


def test_packing_model_runs_padded_batches_exactly_as_sdpa(tiny_embedder, packed_embedder) -> None:
    """A padded batch on a packing-enabled decoder goes to transformers' sdpa unchanged."""
    lm = packed_embedder._model.model.language_model
    assert lm.layers[0].self_attn.config._attn_implementation == DECODER_ATTENTION
    proc = tiny_embedder._processor
    ids, _ = proc.tokenize_texts(TEXTS, ["Passage: "] * len(TEXTS), 4096)
    batch = proc.collate_text(ids)
    outs = []
    for emb in (tiny_embedder, packed_embedder):
        emb._lora.activate(Task.RETRIEVAL)
        outs.append(emb._model(batch))
    assert torch.equal(outs[0].dense, outs[1].dense)
    assert torch.equal(outs[0].multi, outs[1].multi)


def test_packing_option_is_checked(tiny_checkpoint) -> None:
    with pytest.raises(OptionError, match="'auto', 'packed', 'padded'"):
        JinaV4Embedder.from_pretrained(tiny_checkpoint, device="cpu", packing="unpadded")
    with pytest.raises(OptionError, match="attn_implementation='sdpa', got 'eager'"):
        JinaV4Embedder.from_pretrained(
            tiny_checkpoint, device="cpu", attn_implementation="eager", packing="packed"
        )
    eager = JinaV4Embedder.from_pretrained(
        tiny_checkpoint, device="cpu", attn_implementation="eager"
    )
    assert not eager.packed  # auto never packs for another implementation


def test_auto_packs_on_cuda_half_precision_only() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_packing(Packing.AUTO, cuda, torch.bfloat16, "sdpa") is varlen_available()
    assert resolve_packing(Packing.AUTO, cuda, torch.float32, "sdpa") is False
    assert resolve_packing(Packing.AUTO, cpu, torch.float32, "sdpa") is False
    assert resolve_packing(Packing.PACKED, cpu, torch.float32, "sdpa") is True
    assert resolve_packing(Packing.PADDED, cuda, torch.bfloat16, "sdpa") is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch varlen kernel)")
def test_gpu_packed_matches_padded_in_bf16() -> None:
    from embedder.testing import random_embedder

    assert varlen_available(), f"torch {torch.__version__} lacks torch.nn.attention.varlen"
    auto = random_embedder("tiny", device="cuda", dtype="bfloat16", seed=1)
    padded = random_embedder("tiny", device="cuda", dtype="bfloat16", seed=1, packing="padded")
    assert auto.packed and not padded.packed
    for task in ("retrieval", "code"):
        kwargs = dict(task=task, prompt_name="passage", batch_tokens=2048)
        _assert_close(padded.encode_text(TEXTS, **kwargs), auto.encode_text(TEXTS, **kwargs), 0.999)
    kwargs = dict(task="retrieval", max_pixels=100_000)
    _assert_close(
        padded.encode_image(_pages(), **kwargs), auto.encode_image(_pages(), **kwargs), 0.999
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch varlen kernel)")
def test_gpu_varlen_kernel_matches_sdpa_at_real_head_shapes() -> None:
    """16 query heads, 2 key/value heads, head_dim 128 (the real decoder), in bf16."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    lengths, total = [5, 700, 1, 64, 300], 1070
    q = torch.randn(1, 16, total, 128, generator=gen, device="cuda", dtype=torch.bfloat16)
    k, v = (
        torch.randn(1, 2, total, 128, generator=gen, device="cuda", dtype=torch.bfloat16)
        for _ in range(2)
    )
    cu = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int32, device="cuda")
    got, _ = packed_causal_attention(
        None, q, k, v, None, scaling=128**-0.5, cu_seq_lens_q=cu, max_length_q=max(lengths)
    )
    ref, _ = packed_causal_attention(
        None, q.cpu().float(), k.cpu().float(), v.cpu().float(), None, scaling=128**-0.5,
        cu_seq_lens_q=cu.cpu(),
    )  # fmt: skip
    cos = F.cosine_similarity(got.float().cpu().flatten(2), ref.flatten(2), dim=-1)
    assert float(cos.min()) >= 0.999


def test_packed_batches_are_budgeted_by_real_tokens() -> None:
    costs = [100, 10, 10, 10, 10, 10, 60, 5]
    padded = plan_batches(costs, budget=120)
    packed = plan_batches(costs, budget=120, packed=True)
    assert [b.indices for b in padded] == [(0,), (6, 1), (2, 3, 4, 5, 7)]
    assert [b.indices for b in packed] == [(0,), (6, 1, 2, 3, 4, 5, 7)]  # 60 + 5 x 10 + 5
    assert [b.padded_tokens for b in packed] == [100, 115]
    assert plan_batches([300, 5], budget=120, packed=True)[0].indices == (0,)  # alone


def test_packed_out_of_memory_backs_off_and_keeps_every_item(
    tiny_embedder, packed_embedder, monkeypatch
) -> None:
    import embedder.encoder as encoder_module

    real = encoder_module.forward_packed
    rows: list[int] = []

    def small_memory(model, batch, **kwargs):
        rows.append(batch.cu_seqlens.numel() - 1)  # sequences in this packed row
        if rows[-1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return real(model, batch, **kwargs)

    monkeypatch.setattr(encoder_module, "forward_packed", small_memory)
    monkeypatch.setattr(
        packed_embedder, "_backoff", type(packed_embedder._backoff)(torch.device("cpu"))
    )
    got = packed_embedder.encode_text(TEXTS, task="code", batch_tokens=100_000)
    assert rows[0] == len(TEXTS) and sum(r for r in rows if r <= 2) == len(TEXTS)
    _assert_close(tiny_embedder.encode_text(TEXTS, task="code"), got, 0.9999)

"""The compiled decoder (embedder.compiled) against the eager model, on the tiny checkpoint.

CI compiles with ``aot_eager``: dynamo traces the whole decoder stack (fullgraph) and AOT
autograd decomposes it, so tracing, dynamic shapes, buckets and recompile counting are
all real, but no C++/Triton code is generated (inductor takes ~1-2 min per graph on a
loaded 2-core CPU; its test is marked slow).

Tolerance. Everything is float32. The compiled stack differs from transformers' eager
forward only in how the mask reaches SDPA (an explicit boolean mask for every row vs
``is_causal`` for unpadded batches) and, with inductor, in fused reductions (RMSNorm,
softmax) summing in another order. Each is a few float32 roundings (eps 1.2e-7) per
layer on unit-scale activations; outputs are L2-normalised, so 1e-5 absolute is ~100x
the differences seen (1e-7) yet far below what a wrong mask or position gives (> 1e-2).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from embedder.compiled import LENGTH_STEP, CompiledDecoder, bucket, query_bucket
from embedder.errors import OptionError
from embedder.options import CompileBackend, CompileOptions
from embedder.testing import random_embedder

ATOL = 1e-5
#: float32 on CUDA: Triton's fused reductions vs cuBLAS / ATen kernels; still 100x below
#: what a wrong mask or position gives.
GPU_ATOL = 1e-4


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    # Compiled code is cached per code object across instances: start each test clean so
    # its counts are its own.
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _tiny():
    return random_embedder("tiny", device="cpu", dtype="float32", seed=3)


def _texts() -> list[str]:
    return [("lorem ipsum dolor " * k).strip() for k in (1, 2, 4, 7, 11, 19, 3, 30)]


def _assert_same(a, b, atol: float = ATOL) -> None:
    np.testing.assert_allclose(a.dense, b.dense, atol=atol, rtol=0)
    assert len(a.multivectors) == len(b.multivectors)
    for x, y in zip(a.multivectors, b.multivectors, strict=True):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, atol=atol, rtol=0)


def test_buckets_bound_padding_and_count() -> None:
    sizes = range(1, 5000)
    lengths = [bucket(n, min_step=LENGTH_STEP) for n in sizes]
    assert all(b >= n and b % LENGTH_STEP == 0 for n, b in zip(sizes, lengths, strict=True))
    assert max((b - n) / n for n, b in zip(sizes, lengths, strict=True) if n >= 128) <= 0.125
    assert lengths == sorted(lengths)
    assert [bucket(n) for n in range(1, 17)] == list(range(1, 17))  # small batches exact
    assert len({bucket(n) for n in range(1025, 2049)}) == 8  # 8 per octave
    graphs = {query_bucket(n, 512) for n in range(1, 513)}
    assert sorted(graphs) == [16, 32, 48, 64, 96, 128, 192, 256, 384, 512]
    with pytest.raises(ValueError, match="513 tokens"):
        query_bucket(513, 512)


def test_options_are_validated() -> None:
    assert CompileOptions(backend="aot_eager").backend is CompileBackend.AOT_EAGER
    with pytest.raises(OptionError, match="unknown backend 'tvm'"):
        CompileOptions(backend="tvm")
    with pytest.raises(OptionError, match="max_compiles must be a positive int, got 0"):
        CompileOptions(max_compiles=0)
    with pytest.raises(OptionError, match="graph_max_length"):
        CompileOptions(graph_max_length=True)


def test_cuda_graphs_on_cpu_are_refused() -> None:
    emb = _tiny()
    with pytest.raises(OptionError, match="cuda_graphs=True needs a CUDA device.*'cpu'"):
        emb.enable_compile(CompileOptions(backend="aot_eager", cuda_graphs=True))
    assert emb.compile_stats is None  # nothing half-enabled
    eager_attention = random_embedder("tiny", device="cpu", attn_implementation="eager")
    with pytest.raises(OptionError, match="needs attn_implementation='sdpa'.*'eager'"):
        eager_attention.enable_compile(CompileOptions(backend="eager"))


def test_compiled_matches_eager_for_text_and_images() -> None:
    eager, compiled = _tiny(), _tiny()
    compiled.enable_compile(CompileOptions(backend="aot_eager"))
    texts = _texts()
    for kwargs in (dict(batch_tokens=128), dict(batch_tokens=10_000), dict(batch_tokens=1)):
        want = eager.encode_text(texts, task="retrieval", prompt_name="passage", **kwargs)
        got = compiled.encode_text(texts, task="retrieval", prompt_name="passage", **kwargs)
        _assert_same(got, want)
    images = [Image.new("RGB", (56 * k, 84), (40 * k, 90, 200)) for k in (1, 2, 3)]
    _assert_same(
        compiled.encode_image(images, task="code"), eager.encode_image(images, task="code")
    )
    stats = compiled.compile_stats
    assert stats is not None and stats.eager_calls == 0
    assert stats.graphs_compiled <= 2  # batch 1 and a dynamic batch, whatever the lengths
    compiled.disable_compile()
    assert compiled.compile_stats is None
    _assert_same(compiled.encode_text(texts, task="code"), eager.encode_text(texts, task="code"))


def test_varying_shapes_do_not_recompile_beyond_buckets() -> None:
    emb = _tiny()
    emb.enable_compile(CompileOptions(backend="aot_eager"))
    decoder = emb._model.compiled_decoder
    lm = emb._model.model.language_model
    hidden = emb.spec.hidden_size
    gen = torch.Generator().manual_seed(0)
    shapes = [(1, 5), (1, 40), (1, 300), (3, 7), (5, 33), (2, 130), (9, 17), (16, 64), (4, 2)]
    buckets = {(bucket(b), bucket(n, min_step=LENGTH_STEP)) for b, n in shapes}
    with torch.inference_mode():
        for b, n in shapes:
            embeds = torch.randn(b, n, hidden, generator=gen)
            lengths = torch.randint(1, n + 1, (b,), generator=gen)
            attn = (torch.arange(n)[None, :] < lengths[:, None]).long()  # (b, n) right padding
            pos = (attn.cumsum(-1) - 1).clamp(min=0).unsqueeze(0).expand(3, -1, -1)
            got = decoder(embeds, attn, pos)
            want = lm(inputs_embeds=embeds, attention_mask=attn, position_ids=pos).last_hidden_state
            real = attn.bool()
            torch.testing.assert_close(got[real], want[real], atol=ATOL, rtol=0)
    assert len(buckets) == len(shapes)  # every shape is a new bucket...
    assert decoder.stats.graphs_compiled == 2  # ...and batch 1 + any batch are compiled once


def test_compile_limit_runs_eagerly_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    eager, compiled = _tiny(), _tiny()
    compiled.enable_compile(CompileOptions(backend="eager", max_compiles=1))
    texts = _texts()
    with caplog.at_level(logging.WARNING, logger="embedder.compiled"):
        one = compiled.encode_text(texts[:1], task="code")  # batch 1: graph 1
        many = compiled.encode_text(texts, task="code", batch_tokens=10_000)  # would recompile
        again = compiled.encode_text(texts, task="code", batch_tokens=10_000)
    _assert_same(one, eager.encode_text(texts[:1], task="code"))
    want = eager.encode_text(texts, task="code", batch_tokens=10_000)
    _assert_same(many, want)
    _assert_same(again, want)
    warnings = [r for r in caplog.records if "limit of 1 compiled graphs" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING  # once per shape
    stats = compiled.compile_stats
    assert stats is not None and stats.graphs_compiled == 1 and stats.eager_calls == 2


def test_packed_rows_attend_within_their_segment() -> None:
    emb = _tiny()
    decoder = CompiledDecoder(
        emb._model.model.language_model, torch.device("cpu"), CompileOptions(backend="eager")
    )
    lm = emb._model.model.language_model
    gen = torch.Generator().manual_seed(1)
    hidden = emb.spec.hidden_size
    a, b = torch.randn(1, 9, hidden, generator=gen), torch.randn(1, 5, hidden, generator=gen)
    segments = torch.tensor([[0] * 9 + [1] * 5])  # two sequences in one row
    pos = torch.cat([torch.arange(9), torch.arange(5)]).view(1, 1, -1).expand(3, 1, -1)
    with torch.inference_mode():
        packed = decoder.run_segments(torch.cat([a, b], dim=1), segments, pos)
        for i, (x, sl) in enumerate(((a, slice(0, 9)), (b, slice(9, 14)))):
            n = x.shape[1]
            alone = lm(
                inputs_embeds=x,
                attention_mask=torch.ones(1, n, dtype=torch.long),
                position_ids=torch.arange(n).view(1, 1, -1).expand(3, 1, -1),
            ).last_hidden_state
            torch.testing.assert_close(packed[:, sl], alone, atol=ATOL, rtol=0, msg=f"seq {i}")


def test_packed_rows_compile_and_match_the_padded_path() -> None:
    eager = _tiny()  # padded on the CPU: the reference
    compiled = random_embedder("tiny", device="cpu", dtype="float32", seed=3, packing="packed")
    compiled.enable_compile(CompileOptions(backend="aot_eager"))
    texts = _texts()
    for kwargs in (dict(batch_tokens=10_000), dict(batch_tokens=60)):
        want = eager.encode_text(texts, task="retrieval", **kwargs)
        _assert_same(compiled.encode_text(texts, task="retrieval", **kwargs), want)
    one = compiled.encode_text(texts[:1], task="retrieval")  # one sequence: a batch of one
    _assert_same(one, eager.encode_text(texts[:1], task="retrieval"))
    stats = compiled.compile_stats
    assert stats is not None and stats.eager_calls == 0 and stats.graphs_compiled <= 2


@pytest.mark.slow
def test_inductor_matches_eager() -> None:
    eager, compiled = _tiny(), _tiny()
    compiled.enable_compile(CompileOptions(backend="inductor"))
    texts = _texts()
    want = eager.encode_text(texts, task="text-matching", batch_tokens=10_000)
    _assert_same(compiled.encode_text(texts, task="text-matching", batch_tokens=10_000), want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_single_queries_replay_cuda_graphs_and_match_eager() -> None:
    eager = random_embedder("tiny", device="cuda", dtype="float32", seed=3)
    compiled = random_embedder("tiny", device="cuda", dtype="float32", seed=3)
    # aot_eager: the graph logic without Triton codegen time (the GPU session's pytest step
    # is capped); inductor on the GPU is measured by bench/compiled_decoder.py (max diff).
    compiled.enable_compile(CompileOptions(backend="aot_eager", graph_max_length=64))
    queries = ["a", "short query", "a somewhat longer query " * 3, "x " * 40, "y z " * 100]
    graphed = 0
    for task in ("retrieval", "code", "retrieval"):  # LoRA switches between replays
        for q in queries:
            want = eager.encode_text([q], task=task)
            _assert_same(compiled.encode_text([q], task=task), want, atol=GPU_ATOL)
            graphed += int(want.token_counts[0] <= 64)
    stats = compiled.compile_stats
    assert stats is not None and 0 < graphed < 3 * len(queries)
    assert 1 <= stats.cuda_graphs_captured <= 4  # 16, 32, 48, 64: one graph per bucket
    assert stats.cuda_graph_replays == graphed  # longer than 64: compiled, no graph
    many = compiled.encode_text(queries, task="code")
    _assert_same(many, eager.encode_text(queries, task="code"), atol=GPU_ATOL)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the varlen kernel needs a CUDA GPU")
def test_packed_bf16_rows_compile_with_varlen_attention() -> None:
    def build():
        return random_embedder("tiny", device="cuda", dtype="bfloat16", seed=3, packing="packed")

    eager, compiled = build(), build()
    compiled.enable_compile(CompileOptions(backend="aot_eager"))  # as above
    texts = _texts()
    for budget in (10_000, 60, 200):
        want = eager.encode_text(texts, task="retrieval", batch_tokens=budget)
        got = compiled.encode_text(texts, task="retrieval", batch_tokens=budget)
        # bf16: the bar for packed vs padded on the GPU, cosine >= 0.999
        assert np.min(np.sum(got.dense * want.dense, axis=1)) >= 0.999
        for x, y in zip(got.multivectors, want.multivectors, strict=True):
            assert np.min(np.sum(x * y, axis=1)) >= 0.999
    stats = compiled.compile_stats
    assert stats is not None and stats.eager_calls == 0 and stats.graphs_compiled <= 4

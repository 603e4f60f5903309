"""Embedder throughput with random weights of the exact jina-embeddings-v4 shapes (not a test).

Builds the model in memory on the device (no download, no checkpoint on disk) and runs,
in one process, two ways of embedding the same corpus:

* **reference-style** (``reference_style.py``): what the reference implementation does
  per call: batches of 8 in input order, unmerged rank-32 LoRA, all hidden states and
  full-vocabulary logits, dense and multi-vector from two passes. Run first, while the
  live weights still hold the base weights;
* **project**: the public ``encode_text`` / ``encode_image`` API (tokenisation, batching
  and transfers included).

The corpus: passages of mixed lengths (log-normal, median ~184 tokens, one at the max
~2.6k; the reference gets the first ``--reference-passages`` of them), short queries as
one call and as single-query calls (latency), random-noise document pages resized to each
pixel budget. Every figure is printed, set against the other path as a ratio, and written
as JSON lines (``--json``; keys such as ``project_tok_per_s``, ``reference_tok_per_s``,
``tok_per_s_ratio``, ``single_query_p50_ms``, ``project_pages_per_s``, ``project_mfu``).
MFU is estimated from the model's shapes (``benchkit.FlopModel``: 5.55 GFLOP per text
token, ~8.3 TFLOP per 602,112-px page) against a bf16 matmul measured on the device.

GPU (~2.5 min on one H200 at the defaults)::

    python bench/embed_throughput.py --json throughput.jsonl

CPU dry run (tiny model, seconds)::

    python bench/embed_throughput.py --model tiny --device cpu --smoke
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as kit  # noqa: E402
import reference_style  # noqa: E402
from benchkit import ratio  # noqa: E402
from throughput_project import DEFAULT_PIXELS, Bench, page_key, run_project  # noqa: E402

VARIANTS = ("padded", "packed", "vision-grouped", "compiled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model", "--preset", dest="preset", choices=["full", "mid", "tiny"], default="full"
    )
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--attn", default="sdpa", help="transformers attention implementation")
    p.add_argument(
        "--packing",
        choices=["auto", "packed", "padded"],
        default="auto",
        help="project path: one packed row per batch or padded rows (auto: packed on CUDA)",
    )
    p.add_argument("--passages", type=int, default=1024)
    p.add_argument("--median-tokens", type=int, default=184)
    p.add_argument("--max-tokens", type=int, default=2652)
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--latency-queries", type=int, default=32)
    p.add_argument("--pages", type=int, default=64, help="pages at the first pixel budget")
    p.add_argument("--pages-large", type=int, default=24, help="pages at each larger budget")
    p.add_argument("--page-size", default="1240x1754", help="WxH of the random pages (A4 @150dpi)")
    p.add_argument("--pixel-budgets", default="602112,1806336", help="max_pixels values")
    p.add_argument("--batch-tokens", type=int, default=None, help="default: the encoder's")
    p.add_argument("--text-budgets", default="", help="extra batch_tokens for passages: 32768,...")
    p.add_argument("--no-multivector", action="store_true", help="project path: dense only")
    p.add_argument("--no-reference", action="store_true", help="skip the reference-style path")
    p.add_argument("--reference-passages", type=int, default=256)
    p.add_argument("--reference-queries", type=int, default=128)
    p.add_argument("--reference-pages", type=int, default=16)
    p.add_argument("--reference-pages-large", type=int, default=8)
    p.add_argument("--compile", action="store_true", help="project path: compiled decoder")
    p.add_argument("--compile-backend", default=None, help="default inductor (smoke: aot_eager)")
    p.add_argument(
        "--variants",
        default="",
        help=f"after the primary run, the project stages again with one option "
        f"changed, in this order: any of {','.join(VARIANTS)} (compiled: last)",
    )
    p.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak for MFU")
    p.add_argument("--json", default=None, help="append JSON lines here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: a dry run of every stage")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.smoke:
        args.passages, args.queries, args.latency_queries = 48, 24, 4
        args.pages, args.pages_large, args.page_size = 3, 2, "620x877"
        args.reference_passages, args.reference_queries = 16, 8
        args.reference_pages, args.reference_pages_large = 2, 1
        args.max_tokens = min(args.max_tokens, 512)
        args.compile_backend = args.compile_backend or "aot_eager"  # no C++/Triton codegen
    bad = [v for v in args.variants.split(",") if v and v not in VARIANTS]
    if bad:
        p.error(f"--variants: unknown {bad}; choose from {', '.join(VARIANTS)}")
    return args


# ---------------------------------------------------------------------- reference-style


def run_reference(b: Bench) -> dict[str, Any]:
    """Every reference-style stage; returns the outputs kept for the cross-check."""
    from embedder import PromptName

    emb, args, rep = b.emb, b.args, b.rep
    kit.reset_peak(b.device)
    kit.timed(b.device, lambda: reference_style.encode_texts(emb, b.passages[:8]))  # warm-up
    texts = b.passages[: args.reference_passages]
    (dense, multi, tokens), secs = kit.timed(
        b.device, lambda: reference_style.encode_texts(emb, texts, prompt_name=PromptName.PASSAGE)
    )
    tflops, mfu = b.mfu(b.flops.text(tokens), secs)
    rep.row(
        "reference passages",
        f"{tokens / secs:,.0f} tok/s",
        f"{len(texts)} passages, {tokens} tokens, {secs:.2f} s, 2 passes, ~{tflops:.1f} TFLOP/s",
    )
    rep.emit(
        "reference passages",
        reference_tok_per_s=tokens / secs,
        reference_passages_per_s=len(texts) / secs,
        reference_tflops=tflops,
        reference_mfu=mfu,
        _tokens=tokens,
        _seconds=secs,
    )
    queries = b.queries[: args.reference_queries]
    _, secs = kit.timed(b.device, lambda: reference_style.encode_texts(emb, queries))
    rep.row("reference queries (batched)", f"{len(queries) / secs:,.0f} q/s", f"{secs:.3f} s")
    rep.emit("reference queries", reference_queries_per_s=len(queries) / secs)
    times = [
        kit.timed(b.device, lambda q=q: reference_style.encode_texts(emb, [q]))[1]
        for q in b.queries[: args.latency_queries]
    ]
    p50, p95 = np.percentile(times, [50, 95]) * 1000
    rep.row("reference single query", f"{p50:.1f} ms p50", f"p95 {p95:.1f} ms, 2 passes")
    rep.emit(
        "reference single query",
        reference_single_query_p50_ms=p50,
        reference_single_query_p95_ms=p95,
    )
    for i, (budget, pages) in enumerate(b.pages.items()):
        n = args.reference_pages if i == 0 else args.reference_pages_large
        _, secs = kit.timed(
            b.device, lambda p=pages[:n], m=budget: reference_style.encode_images(emb, p, m)
        )
        rep.row(f"reference pages @{budget}", f"{n / secs:.2f} pages/s", f"{n} pages, {secs:.2f} s")
        rep.emit(f"reference pages @{budget}", **{page_key("reference", budget): n / secs})
    peak, reserved = kit.peak_gib(b.device)
    if peak is not None:
        rep.row("reference peak GPU memory", f"{peak:.1f} GiB", f"reserved {reserved:.1f} GiB")
    rep.emit("reference peak memory", reference_peak_gib=peak, reference_reserved_gib=reserved)
    return {"dense": dense, "multi": multi}


# ---------------------------------------------------------------------- main


def cross_check(b: Bench, ref: dict[str, Any], project: Any) -> None:
    """Reference-style vs project outputs on the same passages (cosine, min over items)."""
    n = len(ref["dense"])
    dense = float((ref["dense"] * project.dense[:n]).sum(axis=1).min())
    pairs = zip(ref["multi"], project.multivectors[:n], strict=True)
    multi = min(float((r * p).sum(axis=1).min()) for r, p in pairs)
    b.rep.row("reference vs project cosine", f"{dense:.5f} dense", f"{multi:.5f} per token (min)")
    b.rep.emit(
        "cross-check",
        reference_vs_project_dense_cos_min=dense,
        reference_vs_project_token_cos_min=multi,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    import transformers

    from embedder.testing import random_embedder

    rep = kit.Report("embed_throughput", args.json)
    start = time.perf_counter()
    emb = random_embedder(
        args.preset,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        attn_implementation=args.attn,
        packing=args.packing,
    )
    if args.compile:
        set_compiled(emb, args, True)
    kit.sync(emb.device)
    gpu = torch.cuda.get_device_name(emb.device) if emb.device.type == "cuda" else "cpu"
    n_params = sum(p.numel() for p in emb._model.parameters())
    rep.row(
        "build",
        f"{time.perf_counter() - start:.1f} s",
        f"{args.preset}: {n_params / 1e9:.2f}B params on {gpu}, {emb.dtype}, attn {args.attn}, "
        f"{'packed' if emb.packed else 'padded'} batches",
    )
    measured = kit.measured_bf16_tflops(emb.device)
    sheet = kit.datasheet_bf16_tflops(emb.device)
    peak = args.peak_tflops or measured
    flops = kit.FlopModel(emb._model)
    rep.row(
        "bf16 peak for MFU",
        f"{peak or 0:.0f} TFLOP/s",
        f"measured 8192^3 matmul {measured or 0:.0f}, datasheet {sheet or 0:.0f}; "
        f"{flops.per_text_token / 1e9:.2f} GFLOP/text token",
    )
    rep.emit(
        "setup",
        device=gpu,
        dtype=str(emb.dtype),
        preset=args.preset,
        attn=args.attn,
        packed=emb.packed,
        torch=torch.__version__,
        transformers=transformers.__version__,
        bf16_peak_tflops_measured=measured,
        bf16_peak_tflops_datasheet=sheet,
        mfu_peak_tflops=peak,
        gflop_per_text_token=flops.per_text_token / 1e9,
        smoke=args.smoke,
        project_compiled=args.compile,
    )
    rng = np.random.default_rng(args.seed)
    lengths = kit.passage_lengths(args.passages, args.median_tokens, args.max_tokens, rng)
    passages = kit.make_texts(emb.tokenizer, lengths, rng)
    queries = kit.make_texts(emb.tokenizer, rng.integers(6, 24, size=args.queries).tolist(), rng)
    budgets = [int(v) for v in args.pixel_budgets.split(",") if v]
    pages = {
        m: kit.random_pages(args.pages if i == 0 else args.pages_large, args.page_size, rng)
        for i, m in enumerate(budgets)
    }
    b = Bench(emb, args, rep, flops, peak, passages, queries, pages)
    kw: dict[str, Any] = {"multivector": not args.no_multivector}
    if args.batch_tokens:
        kw["batch_tokens"] = args.batch_tokens
    ref = None if args.no_reference else run_reference(b)
    project = run_project(b, kw)
    if ref is not None and project.multivectors is not None:
        cross_check(b, ref, project)
    for variant in [v for v in VARIANTS if v in args.variants.split(",")]:
        run_variant(b, kw, variant)
    rep.finish(**ratios_against_reference(rep, budgets))


def set_compiled(emb: Any, args: argparse.Namespace, on: bool) -> None:
    from embedder.options import CompileOptions

    if on:
        emb.enable_compile(CompileOptions(backend=args.compile_backend or "inductor"))
    else:
        emb.disable_compile()


def run_variant(b: Bench, kw: dict[str, Any], variant: str) -> None:
    """The project stages with one option changed on the same model, then restored.

    ``vision-grouped``: the vision tower's windows by grouped SDPA, not torch's varlen kernel.
    """
    from embedder.attention import VISION_ATTENTION
    from embedder.model import set_vision_varlen
    from embedder.packing import enable_packing

    emb, args = b.emb, b.args
    if variant == "vision-grouped":
        if emb._model.model.visual.config._attn_implementation != VISION_ATTENTION:
            b.rep.row(f"project[{variant}]", "skipped", f"vision attention is {args.attn}")
            return
        set_vision_varlen(emb._model, False)
        try:
            run_project(b, kw, variant)
        finally:
            set_vision_varlen(emb._model, True)
        return
    was_packed, was_compiled = emb.packed, emb._model.compiled_decoder is not None
    if (
        variant == "compiled"
        and was_compiled
        or variant in ("packed", "padded")
        and ((variant == "packed") == was_packed)
    ):
        b.rep.row(f"project[{variant}]", "skipped", "the primary run is already that")
        return
    if variant == "compiled":
        set_compiled(emb, args, True)
    else:
        if variant == "packed":
            enable_packing(emb._model)  # padded batches keep working with it
        emb._packed = variant == "packed"
    try:
        run_project(b, kw, variant)
    finally:
        emb._packed = was_packed
        if variant == "compiled":
            set_compiled(emb, args, was_compiled)


def ratios_against_reference(rep: kit.Report, budgets: list[int]) -> dict[str, float | None]:
    """Each project figure over its reference-style twin (> 1: the project is better)."""
    s = rep.summary
    pairs = {  # key -> (numerator key, denominator key, what it says)
        "tok_per_s_ratio": ("project_tok_per_s", "reference_tok_per_s", "tokens/s"),
        "queries_per_s_ratio": ("project_queries_per_s", "reference_queries_per_s", "queries/s"),
        "single_query_p50_ratio": (
            "reference_single_query_p50_ms",
            "single_query_p50_ms",
            "single-query p50 speed-up",
        ),
        "peak_memory_ratio": ("project_peak_gib", "reference_peak_gib", "peak memory, project/ref"),
    }
    for budget in budgets:
        suffix = "" if budget == DEFAULT_PIXELS else f"_{budget}"
        pairs[f"pages_per_s_ratio{suffix}"] = (
            page_key("project", budget),
            page_key("reference", budget),
            f"pages/s @{budget}",
        )
    ratios = {key: ratio(s.get(num), s.get(den)) for key, (num, den, _) in pairs.items()}
    for key, (_, _, what) in pairs.items():
        if ratios[key] is not None:
            rep.row(f"ratio: {what}", f"{ratios[key]:.2f}x", "project vs reference-style")
    return ratios


if __name__ == "__main__":
    main()

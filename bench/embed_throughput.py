"""Embedder throughput with random weights of the exact jina-embeddings-v4 shapes (not a test).

Builds the model in memory on the device (no download, no checkpoint on disk) and runs
the public ``encode_text`` / ``encode_image`` API, tokenisation, batching and transfers
included:

* passages: mixed lengths (log-normal, median ~184 tokens, one at the max ~2.6k),
* short queries, as one call and as single-query calls (latency),
* document pages: random-noise "pages" resized to ``max_pixels``.

GPU (what the numbers are for)::

    python bench/embed_throughput.py                  # full shapes, CUDA, bf16

CPU smoke check (tiny model, seconds)::

    python bench/embed_throughput.py --preset tiny --device cpu --passages 32 --queries 16 --pages 4

Results print as each stage finishes, then as one table.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

# Spec: ~5.55 GFLOP per text token for the 3B backbone (forward only).
FLOP_PER_TOKEN = {"full": 5.55e9}
ROWS: list[tuple[str, str, str]] = []


def report(stage: str, value: str, detail: str) -> None:
    ROWS.append((stage, value, detail))
    print(f"[bench] {stage:<28} {value:>16}  {detail}", flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=["full", "tiny"], default="full")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--attn", default="sdpa", help="transformers attention implementation")
    p.add_argument("--passages", type=int, default=1024)
    p.add_argument("--median-tokens", type=int, default=184)
    p.add_argument("--max-tokens", type=int, default=2652)
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--latency-queries", type=int, default=32)
    p.add_argument("--pages", type=int, default=64)
    p.add_argument("--page-size", default="1240x1754", help="WxH of the random pages (A4 @150dpi)")
    p.add_argument("--max-pixels", type=int, default=602112)
    p.add_argument("--batch-tokens", type=int, default=None, help="default: the encoder's")
    p.add_argument(
        "--text-budgets",
        default="",
        help="extra batch_tokens values for passages, e.g. 32768,131072",
    )
    p.add_argument("--no-multivector", action="store_true", help="dense only")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def make_texts(tokenizer, lengths: list[int], rng: np.random.Generator) -> list[str]:
    """Random word salad cut to the wanted token counts (re-tokenising may move a few)."""
    from embedder.testing import _CORPUS

    words = _CORPUS.split()
    texts = []
    for n in lengths:
        salad = " ".join(rng.choice(words, size=n + 8))
        ids = tokenizer(salad, add_special_tokens=False)["input_ids"][:n]
        texts.append(tokenizer.decode(ids).strip() or "x")
    return texts


def passage_lengths(n: int, median: int, longest: int, rng: np.random.Generator) -> list[int]:
    lengths = np.exp(rng.normal(math.log(median), 0.75, size=n)).astype(int)
    lengths = np.clip(lengths, 8, longest)
    lengths[0] = longest
    return lengths.tolist()


def sync(emb) -> None:
    if emb.device.type == "cuda":
        import torch

        torch.cuda.synchronize(emb.device)


def timed(emb, fn):
    sync(emb)
    start = time.perf_counter()
    out = fn()
    sync(emb)
    return out, time.perf_counter() - start


def run_text(emb, args, rng, kw) -> None:
    lengths = passage_lengths(args.passages, args.median_tokens, args.max_tokens, rng)
    passages = make_texts(emb.tokenizer, lengths, rng)
    budgets = [kw.get("batch_tokens")] + [int(b) for b in args.text_budgets.split(",") if b]
    for budget in budgets:
        run_kw = {**kw, "batch_tokens": budget} if budget else kw
        _run_passages(
            emb, args, passages, run_kw, f"text passages{f' @{budget}' if budget else ''}"
        )


def _run_passages(emb, args, passages, kw, label) -> None:
    out, secs = timed(
        emb, lambda: emb.encode_text(passages, task="retrieval", prompt_name="passage", **kw)
    )
    tokens = int(out.token_counts.sum())
    counts = out.token_counts
    detail = (
        f"{len(passages)} passages, {tokens} tokens (median {int(np.median(counts))}, "
        f"max {counts.max()}), {secs:.2f} s, {len(passages) / secs:.1f} passages/s"
    )
    flops = FLOP_PER_TOKEN.get(args.preset)
    if flops:
        detail += f", ~{tokens * flops / secs / 1e12:.0f} TFLOP/s"
    report(label, f"{tokens / secs:,.0f} tok/s", detail)
    if not np.isfinite(out.dense).all():
        report("WARNING", "non-finite", "dense vectors hold NaN/inf (random weights overflowed)")


def run_queries(emb, args, rng, kw) -> None:
    queries = make_texts(emb.tokenizer, rng.integers(6, 24, size=args.queries).tolist(), rng)
    out, secs = timed(emb, lambda: emb.encode_text(queries, task="retrieval", **kw))
    detail = f"{len(queries)} queries, {int(out.token_counts.sum())} tokens, {secs:.3f} s"
    report("queries (one call)", f"{len(queries) / secs:,.0f} q/s", detail)
    times = []
    for q in queries[: args.latency_queries]:
        _, secs = timed(emb, lambda q=q: emb.encode_text([q], task="retrieval", **kw))
        times.append(secs)
    p50, p95 = np.percentile(times, [50, 95]) * 1000
    report(
        "query latency (single)", f"{p50:.1f} ms p50", f"p95 {p95:.1f} ms over {len(times)} calls"
    )
    # The model's forward alone on the same kind of input: the rest is encoder overhead.
    ids = emb._processor.tokenize_texts(queries[:1], ["Query: "], 64)[0]
    batch = emb._processor.collate_text(ids).to(emb.device)
    fwd = [timed(emb, lambda: emb._model(batch, multivector=True))[1] for _ in range(len(times))]
    report("query forward only", f"{np.median(fwd) * 1000:.1f} ms p50", f"{len(ids[0])} tokens")


def run_pages(emb, args, rng, kw) -> None:
    from PIL import Image

    width, height = (int(v) for v in args.page_size.split("x"))
    pages = [
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for _ in range(args.pages)
    ]
    out, secs = timed(
        emb, lambda: emb.encode_image(pages, task="retrieval", max_pixels=args.max_pixels, **kw)
    )
    detail = (f"{len(pages)} pages {width}x{height} -> {int(out.token_counts[0])} tokens each, "
              f"{secs:.2f} s")  # fmt: skip
    report("document pages", f"{len(pages) / secs:.2f} pages/s", detail)


def main() -> None:
    args = parse_args()
    import torch

    from embedder.testing import random_embedder

    start = time.perf_counter()
    emb = random_embedder(args.preset, device=args.device, dtype=args.dtype, seed=args.seed,
                          attn_implementation=args.attn)  # fmt: skip
    sync(emb)
    gpu = torch.cuda.get_device_name(emb.device) if emb.device.type == "cuda" else "cpu"
    n_params = sum(p.numel() for p in emb._model.parameters())
    detail = f"{args.preset}: {n_params / 1e9:.2f}B params on {gpu}, {emb.dtype}, attn {args.attn}"
    report("build", f"{time.perf_counter() - start:.1f} s", detail)
    kw = {"multivector": not args.no_multivector}
    if args.batch_tokens:
        kw["batch_tokens"] = args.batch_tokens
    rng = np.random.default_rng(args.seed)
    warm_texts = make_texts(
        emb.tokenizer, passage_lengths(128, args.median_tokens, args.max_tokens, rng), rng
    )
    _, secs = timed(emb, lambda: emb.encode_text(warm_texts, task="retrieval", **kw))
    _, secs2 = timed(emb, lambda: emb.encode_image([_blank(300, 200)], task="code", **kw))
    report("warm-up", f"{secs + secs2:.1f} s", "kernels, allocator, LoRA merges")
    for stage in (run_text, run_queries, run_pages):
        stage(emb, args, rng, kw)
    if emb.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(emb.device) / 2**30
        report("peak GPU memory", f"{peak:.1f} GiB", "torch.cuda.max_memory_allocated")
    print("\n| stage | result | detail |\n|---|---:|---|")
    for stage, value, detail in ROWS:
        print(f"| {stage} | {value} | {detail} |")


def _blank(width: int, height: int):
    from PIL import Image

    return Image.new("RGB", (width, height), (255, 255, 255))


if __name__ == "__main__":
    main()

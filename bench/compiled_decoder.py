"""Compiled vs eager decoder: compile time, passage throughput, single-query latency (not a test).

    python bench/compiled_decoder.py --preset tiny                      # CPU, seconds
    nice -n 10 python bench/compiled_decoder.py --preset mid            # CPU, a few minutes
    python bench/compiled_decoder.py --preset full --device cuda --json out.jsonl   # GPU

Two embedders with the same random weights (``embedder.testing.random_embedder``): one
eager, one with ``enable_compile(CompileOptions(backend=...))``. Every figure is
measured on both and given as a ratio, plus the largest absolute difference of their
outputs (dense and per-token vectors, both L2-normalised). The first compiled pass over
the corpus includes compiling (``compile_s`` = that pass minus an eager pass); the
timed passes come after, best of ``--repeats``. Single queries: batches of one, p50/p95
over ``--latency-queries`` queries of 6-40 tokens (CUDA graphs on CUDA).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import Report, make_texts, passage_lengths, ratio, timed  # noqa: E402


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", help="embedder.testing preset: tiny, mid, full")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--backend", default="inductor", help="inductor, aot_eager or eager")
    p.add_argument("--packing", default="auto", help="auto, packed or padded")
    p.add_argument("--passages", type=int, default=64)
    p.add_argument("--median-tokens", type=int, default=184)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--batch-tokens", type=int, default=None, help="default: the encoder's")
    p.add_argument("--latency-queries", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None, help="append JSON lines here")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def _max_diff(a: Any, b: Any) -> float:
    dense = float(np.abs(a.dense - b.dense).max())
    pairs = zip(a.multivectors, b.multivectors, strict=True)
    multi = max(float(np.abs(x - y).max()) for x, y in pairs)
    return max(dense, multi)


def _latencies(emb: Any, queries: list[str]) -> list[float]:
    out = []
    for q in queries:
        _, seconds = timed(emb.device, lambda q=q: emb.encode_text([q], task="retrieval"))
        out.append(seconds * 1e3)
    return out


def main() -> None:
    args = _args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("embedder.compiled").setLevel(logging.INFO)
    from embedder.options import CompileOptions
    from embedder.testing import random_embedder

    def build() -> Any:
        return random_embedder(
            args.preset, device=args.device, dtype=args.dtype, seed=args.seed, packing=args.packing
        )

    eager, compiled = build(), build()
    compiled.enable_compile(CompileOptions(backend=args.backend))
    rng = np.random.default_rng(args.seed)
    lengths = passage_lengths(args.passages, args.median_tokens, args.max_tokens, rng)
    passages = make_texts(eager.tokenizer, lengths, rng)
    queries = make_texts(eager.tokenizer, rng.integers(6, 41, args.latency_queries).tolist(), rng)
    report = Report("compiled_decoder", args.json)
    kw = {"task": "retrieval", "prompt_name": "passage", "batch_tokens": args.batch_tokens}
    device = eager.device

    def run(emb: Any) -> Any:
        return emb.encode_text(passages, **kw)

    want, eager_first = timed(device, lambda: run(eager))
    got, compiled_first = timed(device, lambda: run(compiled))
    tokens = int(want.token_counts.sum())
    eager_s = min(
        [eager_first] + [timed(device, lambda: run(eager))[1] for _ in range(args.repeats)]
    )
    comp_s = min(timed(device, lambda: run(compiled))[1] for _ in range(args.repeats))
    diff = _max_diff(got, want)
    compile_s = compiled_first - eager_s
    report.row("compile (first pass - eager pass)", f"{compile_s:.1f} s", args.backend)
    report.row("passages eager", f"{tokens / eager_s:,.0f} tok/s", f"{tokens:,} tokens")
    report.row("passages compiled", f"{tokens / comp_s:,.0f} tok/s", f"x{eager_s / comp_s:.2f}")
    report.row("max |compiled - eager|", f"{diff:.2e}", "dense and per-token, normalised")
    report.emit(
        "passages",
        compile_s=compile_s,
        eager_tok_per_s=tokens / eager_s,
        compiled_tok_per_s=tokens / comp_s,
        speedup=ratio(eager_s, comp_s),
        max_abs_diff=f"{diff:.2e}",  # a string: the report rounds floats to 4 decimals
        _tokens=tokens,
    )
    for emb in (eager, compiled):  # warm-up: compiles / captures the query buckets
        _latencies(emb, queries)
    lat_e, lat_c = _latencies(eager, queries), _latencies(compiled, queries)
    p50_e, p50_c = statistics.median(lat_e), statistics.median(lat_c)
    p95_e, p95_c = (float(np.percentile(x, 95)) for x in (lat_e, lat_c))
    report.row("single query eager p50 / p95", f"{p50_e:.1f} / {p95_e:.1f} ms")
    report.row("single query compiled p50 / p95", f"{p50_c:.1f} / {p95_c:.1f} ms")
    report.emit(
        "single_query",
        eager_p50_ms=p50_e,
        eager_p95_ms=p95_e,
        compiled_p50_ms=p50_c,
        compiled_p95_ms=p95_c,
    )
    stats = compiled.compile_stats
    report.finish(
        preset=args.preset,
        device=str(device),
        dtype=str(eager.dtype),
        backend=args.backend,
        packed=eager.packed,
        graphs_compiled=stats.graphs_compiled,
        eager_calls=stats.eager_calls,
        cuda_graphs_captured=stats.cuda_graphs_captured,
    )


if __name__ == "__main__":
    main()

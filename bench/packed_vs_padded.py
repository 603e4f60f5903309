"""Packed vs padded batches: passage and query throughput, and how far the outputs differ.

    python bench/packed_vs_padded.py --preset tiny                       # CPU, ~1 min
    nice -n 10 python bench/packed_vs_padded.py --preset mid             # CPU, minutes
    python bench/packed_vs_padded.py --preset full --device cuda --json out.jsonl   # GPU

Two embedders with the same random weights (``embedder.testing.random_embedder``), one
with ``packing="padded"``, one with ``packing="packed"`` (on a CPU: per-sequence causal
SDPA; on CUDA: torch's varlen kernel). Passages: log-normal lengths (median
``--median-tokens``, one at ``--max-tokens``), one call; queries: 6-40 tokens, one call.
Best of ``--repeats`` after a warm-up pass; the lowest cosine between the two paths'
dense and per-token vectors is reported too (not a test: tests/embedder/test_packing.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit as kit  # noqa: E402


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kit.add_model_args(p)
    p.add_argument("--passages", type=int, default=300)
    p.add_argument("--median-tokens", type=int, default=184)
    p.add_argument("--max-tokens", type=int, default=2652)
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--batch-tokens", type=int, default=None, help="default: the encoder's")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None, help="append JSON lines here")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def _min_cosine(a: Any, b: Any) -> tuple[float, float]:
    dense = float((a.dense * b.dense).sum(axis=1).min())
    tokens = min(
        float((x * y).sum(axis=1).min())
        for x, y in zip(a.multivectors, b.multivectors, strict=True)
    )
    return dense, tokens


def main() -> None:
    args = _args()
    from embedder.testing import random_embedder

    def build(packing: str) -> Any:
        return random_embedder(
            args.preset, device=args.device, dtype=args.dtype, seed=args.seed, packing=packing
        )

    padded, packed = build("padded"), build("packed")
    rng = np.random.default_rng(args.seed)
    lengths = kit.passage_lengths(args.passages, args.median_tokens, args.max_tokens, rng)
    corpora = {
        "passages": kit.make_texts(padded.tokenizer, lengths, rng),
        "queries": kit.make_texts(
            padded.tokenizer, rng.integers(6, 41, args.queries).tolist(), rng
        ),
    }
    report = kit.Report("packed_vs_padded", args.json)
    device = padded.device
    for name, texts in corpora.items():
        kw = {"task": "retrieval", "prompt_name": "passage", "batch_tokens": args.batch_tokens}
        best: dict[str, float] = {}
        outs: dict[str, Any] = {}
        for mode, emb in (("padded", padded), ("packed", packed)):
            emb.encode_text(texts[:16], **kw)  # warm-up
            runs = [
                kit.timed(device, lambda e=emb, t=texts, k=kw: e.encode_text(t, **k))
                for _ in range(max(1, args.repeats))
            ]
            outs[mode] = runs[0][0]
            best[mode] = min(secs for _, secs in runs)
        tokens = int(outs["padded"].token_counts.sum())
        dense_cos, token_cos = _min_cosine(outs["padded"], outs["packed"])
        for mode in ("padded", "packed"):
            report.row(f"{name} {mode}", f"{tokens / best[mode]:,.0f} tok/s", f"{best[mode]:.2f} s")
        report.row(f"{name} packed / padded", f"x{best['padded'] / best['packed']:.2f}")
        report.row(f"{name} min cosine", f"{dense_cos:.6f}", f"dense; per token {token_cos:.6f}")
        report.emit(
            name,
            **{
                f"{name}_padded_tok_per_s": tokens / best["padded"],
                f"{name}_packed_tok_per_s": tokens / best["packed"],
                f"{name}_speedup": kit.ratio(best["padded"], best["packed"]),
                f"{name}_min_dense_cos": dense_cos,
                f"{name}_min_token_cos": token_cos,
            },
            _tokens=tokens,
            _items=len(texts),
        )
    report.finish(preset=args.preset, device=str(device), dtype=str(padded.dtype))


if __name__ == "__main__":
    main()

"""The project-path stages of ``embed_throughput.py``, for the primary run and each variant.

A variant (``--variants padded,packed,compiled``) re-runs these stages on the same model with
one option changed (packing, the compiled decoder); its JSON keys carry the variant's name
as a suffix (``project_tok_per_s_padded``, ``single_query_p50_ms_compiled``...).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import benchkit as kit
import numpy as np

DEFAULT_PIXELS = 602112
#: Variants that change the vision tower only: their text figures would repeat the primary's.
PAGES_ONLY = ("vision-grouped",)


@dataclass
class Bench:
    """What every stage needs."""

    emb: Any
    args: argparse.Namespace
    rep: kit.Report
    flops: kit.FlopModel
    peak_tflops: float | None
    passages: list[str]
    queries: list[str]
    pages: dict[int, list[Any]]  # pixel budget -> pages

    @property
    def device(self) -> Any:
        return self.emb.device

    def mfu(self, flop: float, secs: float) -> tuple[float, float | None]:
        tflops = flop / secs / 1e12
        return tflops, None if not self.peak_tflops else tflops / self.peak_tflops


def page_key(prefix: str, budget: int) -> str:
    return f"{prefix}_pages_per_s" + ("" if budget == DEFAULT_PIXELS else f"_{budget}")


# ---------------------------------------------------------------------- project


def run_project(b: Bench, kw: dict[str, Any], variant: str = "") -> Any:
    """Every project stage; ``variant`` names an option run (keys get ``_variant``).

    The primary run (no variant) measures every pixel budget and text budget; a variant
    measures the passages, queries and the first pixel budget (a vision-only variant: the
    pages alone).
    """
    emb, args, rep = b.emb, b.args, b.rep
    tag = f"project[{variant}]" if variant else "project"

    def key(name: str) -> str:
        return f"{name}_{variant}" if variant else name

    kit.reset_peak(b.device)
    warm = b.passages[:128]
    _, secs = kit.timed(b.device, lambda: emb.encode_text(warm, task="retrieval", **kw))
    _, secs2 = kit.timed(b.device, lambda: emb.encode_image([_blank(300, 200)], task="retrieval"))
    rep.row(f"{tag} warm-up", f"{secs + secs2:.1f} s", "kernels, compiles, allocator, LoRA merge")
    rep.emit(f"{tag} warm-up", **{key("warmup_s"): secs + secs2})
    budgets = [kw.get("batch_tokens")]
    if not variant:
        budgets += [int(v) for v in args.text_budgets.split(",") if v]
    if variant in PAGES_ONLY:
        budgets = []
    first = None
    for budget in budgets:
        run_kw = {**kw, "batch_tokens": budget} if budget else kw
        out = project_passages(b, run_kw, budget, tag, key if first is None else None)
        first = first if first is not None else out
    if variant not in PAGES_ONLY:
        project_queries(b, kw, tag, key)
    for i, (budget, pages) in enumerate(b.pages.items()):
        if variant and i:
            break
        n = args.pages if i == 0 else args.pages_large
        out, secs = kit.timed(
            b.device,
            lambda p=pages[:n], m=budget: emb.encode_image(p, task="retrieval", max_pixels=m, **kw),
        )
        rows, cols = emb._processor.image_grid(pages[0], budget, 0)
        seq = int(out.token_counts[0])
        page_flop = b.flops.page(rows * cols, seq)
        tflops, mfu = b.mfu(n * page_flop, secs)
        detail = f"{n} pages -> {seq} tokens each, {secs:.2f} s, ~{tflops:.0f} TFLOP/s"
        rep.row(f"{tag} pages @{budget}", f"{n / secs:.2f} pages/s", detail)
        suffix = "" if budget == DEFAULT_PIXELS else f"_{budget}"
        rep.emit(
            f"{tag} pages @{budget}",
            **{
                key(page_key("project", budget)): n / secs,
                key(f"project_pages_mfu{suffix}"): mfu,
                f"page_tflop{suffix}": page_flop / 1e12,
            },
        )
    peak, reserved = kit.peak_gib(b.device)
    if peak is not None:
        rep.row(f"{tag} peak GPU memory", f"{peak:.1f} GiB", f"reserved {reserved:.1f} GiB")
    rep.emit(
        f"{tag} peak memory",
        **{key("project_peak_gib"): peak, key("project_reserved_gib"): reserved},
    )
    return first


def project_passages(
    b: Bench, kw: dict[str, Any], budget: int | None, tag: str, key: Any | None
) -> Any:
    """Passages/s at one text budget; ``key`` None: an extra budget (keys ``_at_BUDGET``)."""
    out, secs = kit.timed(
        b.device,
        lambda: b.emb.encode_text(b.passages, task="retrieval", prompt_name="passage", **kw),
    )
    tokens = int(out.token_counts.sum())
    tflops, mfu = b.mfu(b.flops.text(tokens), secs)
    label = f"{tag} passages" + (f" @{budget}" if budget else "")
    counts = out.token_counts
    b.rep.row(
        label,
        f"{tokens / secs:,.0f} tok/s",
        f"{len(b.passages)} passages, {tokens} tokens (median {int(np.median(counts))}, "
        f"max {counts.max()}), {secs:.2f} s, ~{tflops:.1f} TFLOP/s",
    )
    keys = {
        "project_tok_per_s": tokens / secs,
        "project_passages_per_s": len(b.passages) / secs,
        "project_tflops": tflops,
        "project_mfu": mfu,
    }
    named = {key(k) if key else f"{k}_at_{budget}": v for k, v in keys.items()}
    b.rep.emit(label, **named, _tokens=tokens, _seconds=secs, _batch_tokens=budget)
    if not np.isfinite(out.dense).all():
        b.rep.row("WARNING", "non-finite", "dense vectors hold NaN/inf (random weights overflowed)")
    return out


def project_queries(b: Bench, kw: dict[str, Any], tag: str, key: Any) -> None:
    emb, rep = b.emb, b.rep
    out, secs = kit.timed(b.device, lambda: emb.encode_text(b.queries, task="retrieval", **kw))
    detail = f"{len(b.queries)} queries, {int(out.token_counts.sum())} tokens, {secs:.3f} s"
    rep.row(f"{tag} queries (one call)", f"{len(b.queries) / secs:,.0f} q/s", detail)
    rep.emit(f"{tag} queries", **{key("project_queries_per_s"): len(b.queries) / secs})
    singles = b.queries[: b.args.latency_queries]

    def one(q: str) -> float:
        return kit.timed(b.device, lambda: emb.encode_text([q], task="retrieval", **kw))[1]

    for q in singles:  # warm: one CUDA graph per length bucket is captured on first use
        one(q)
    times = [one(q) for q in singles]
    p50, p95 = np.percentile(times, [50, 95]) * 1000
    rep.row(f"{tag} single query", f"{p50:.1f} ms p50", f"p95 {p95:.1f} ms, {len(times)} calls")
    # The model's padded forward alone on the same kind of input: the rest is encoder overhead.
    ids = emb._processor.tokenize_texts(singles[:1], ["Query: "], 64)[0]
    batch = emb._processor.collate_text(ids).to(emb.device)
    fwd = [kit.timed(b.device, lambda: emb._model(batch, multivector=True))[1] for _ in times]
    fwd_ms = float(np.median(fwd)) * 1000
    rep.row(f"{tag} query forward only", f"{fwd_ms:.1f} ms p50", f"{len(ids[0])} tokens")
    rep.emit(
        f"{tag} single query",
        **{
            key("single_query_p50_ms"): p50,
            key("single_query_p95_ms"): p95,
            key("query_forward_p50_ms"): fwd_ms,
        },
    )


def _blank(width: int, height: int) -> Any:
    from PIL import Image

    return Image.new("RGB", (width, height), (255, 255, 255))

"""Issue 17's GPU figures: peak memory per workload, the budget that fits a 12 GB card,
task-switch cost and alternating-task throughput (not a test).

Builds ``random_embedder("full")`` (exact shapes, random weights) and measures, in order:

1. resident weights on the device (every tensor the embedder holds there) after loading;
2. peak memory of the query workload (``embed_throughput.py``'s: short queries as one
   call, then single queries) and of the passage workload (its passage corpus) at the
   default batch budget (``torch.cuda.max_memory_allocated`` / ``_reserved``);
3. task-switch cost (ms): the first merge (from the live weights) and later switches
   (base weights re-read from their files, merged on the device);
4. peak memory against the batch budget (a sweep), the largest budget whose peak fits a
   ``--card-gib`` card (the CUDA context, outside torch's allocator, counted in), and a
   check run at that budget with torch's allocator capped at what such a card leaves
   (``torch.cuda.set_per_process_memory_fraction``): it must not back off (no OOM);
5. throughput of an alternating retrieval/code workload against a single-task one, with
   passage-sized calls and with query-sized calls.

GPU (~1.5 min on one H200)::

    python bench/gpu_memory.py --json memory.jsonl

CPU dry run (tiny model; the memory figures are GPU-only and reported as null)::

    python bench/gpu_memory.py --model tiny --device cpu --smoke
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

GIB = 2**30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model", "--preset", dest="preset", choices=["full", "mid", "tiny"], default="full"
    )
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--passages", type=int, default=1024, help="the passage workload")
    p.add_argument("--queries", type=int, default=256, help="the query workload (one call)")
    p.add_argument("--latency-queries", type=int, default=32, help="then single-query calls")
    p.add_argument("--switch-calls", type=int, default=6, help="calls per alternating workload")
    p.add_argument("--call-passages", type=int, default=256, help="passages per call")
    p.add_argument("--call-queries", type=int, default=32, help="queries per call")
    p.add_argument("--sweep", default="16384,32768,65536", help="batch budgets to measure")
    p.add_argument("--sweep-passages", type=int, default=512)
    p.add_argument("--card-gib", type=float, default=12.0, help="the card to fit (GiB)")
    p.add_argument("--json", default=None, help="append JSON lines here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: a dry run of every stage")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.smoke:
        args.passages, args.queries, args.latency_queries = 48, 24, 4
        args.switch_calls, args.call_passages, args.call_queries = 2, 8, 4
        args.sweep, args.sweep_passages = "1024,2048", 32
    return args


def encode(emb: Any, texts: list[str], task: str, **kw: Any) -> Any:
    return emb.encode_text(texts, task=task, prompt_name="passage", show_progress=False, **kw)


def peak_of(emb: Any, fn: Any) -> tuple[float, float | None, float | None]:
    """Seconds, peak allocated and peak reserved GiB of ``fn()``."""
    kit.reset_peak(emb.device)
    _, secs = kit.timed(emb.device, fn)
    return (secs, *kit.peak_gib(emb.device))


def workload_peaks(
    emb: Any, rep: kit.Report, passages: list[str], queries: list[str], singles: int
) -> None:
    def query_workload() -> None:
        emb.encode_text(queries, task="retrieval", show_progress=False)
        for q in queries[:singles]:
            emb.encode_text([q], task="retrieval", show_progress=False)

    context = context_gib(emb)  # CUDA context, cuBLAS workspace: outside torch's allocator

    def device_total(reserved: float | None) -> float | None:
        return None if reserved is None or context is None else reserved + context

    secs, peak, reserved = peak_of(emb, query_workload)
    detail = f"reserved {_gib(reserved)}, on the device {_gib(device_total(reserved))}"
    rep.row("query workload peak", _gib(peak), f"{detail}, {secs:.1f} s")
    rep.emit(
        "query workload",
        query_peak_gib=peak,
        query_reserved_gib=reserved,
        query_device_gib=device_total(reserved),
    )
    secs, peak, reserved = peak_of(emb, lambda: encode(emb, passages, "retrieval"))
    budget = emb._backoff.budget(_default_budget(emb))
    detail = f"reserved {_gib(reserved)}, on the device {_gib(device_total(reserved))}"
    rep.row("passage workload peak", _gib(peak), f"{detail}, budget {budget}")
    rep.emit(
        "passage workload",
        passage_peak_gib=peak,
        passage_reserved_gib=reserved,
        passage_device_gib=device_total(reserved),
        passage_batch_tokens=budget,
        _seconds=secs,
    )


def context_gib(emb: Any) -> float | None:
    """Device memory this process holds outside torch's caching allocator (GiB; CUDA only)."""
    if emb.device.type != "cuda":
        return None
    import torch

    free, total = torch.cuda.mem_get_info(emb.device)
    return (total - free - torch.cuda.memory_reserved(emb.device)) / GIB


def task_switches(emb: Any, rep: kit.Report) -> None:
    from embedder import Task

    times = []
    for task in (Task.CODE, Task.RETRIEVAL, Task.CODE, Task.RETRIEVAL):
        _, secs = kit.timed(emb.device, lambda t=task: emb._lora.activate(t))
        times.append(secs * 1e3)
    rep.row(
        "task switch", f"{np.median(times):.0f} ms median", ", ".join(f"{t:.0f}" for t in times)
    )
    rep.emit("task switch", task_switch_ms=float(np.median(times)), task_switch_ms_all=times)


def alternating(emb: Any, rep: kit.Report, texts: list[str], calls: int, label: str) -> None:
    """Texts/s of ``calls`` calls alternating retrieval/code against all-retrieval calls."""
    encode(emb, texts, "retrieval")  # retrieval live, kernels warm for this size
    single_s = kit.timed(
        emb.device, lambda: [encode(emb, texts, "retrieval") for _ in range(calls)]
    )[1]
    tasks = ["code", "retrieval"] * (calls // 2)
    alt_s = kit.timed(emb.device, lambda: [encode(emb, texts, t) for t in tasks])[1]
    n = len(texts)
    single, alt = n * calls / single_s, n * len(tasks) / alt_s
    rep.row(
        f"alternating / single ({label})",
        f"{alt / single:.3f}",
        f"{calls} calls x {n} texts: {single:,.0f} vs {alt:,.0f} texts/s",
    )
    rep.emit(
        f"alternating {label}",
        **{
            f"alternating_{label}_ratio": alt / single,
            f"single_task_{label}_texts_per_s": single,
            f"alternating_{label}_texts_per_s": alt,
        },
    )


def budget_fit(emb: Any, rep: kit.Report, passages: list[str], args: argparse.Namespace) -> None:
    """Peak vs batch budget; the largest budget whose peak fits ``--card-gib``, checked."""
    import torch

    from embedder.backoff import MemoryBackoff

    if emb.device.type != "cuda":
        rep.row("budget for a 12 GB card", "n/a", "needs CUDA")
        rep.emit("budget fit", largest_budget_fitting_card=None, card_gib=args.card_gib)
        return
    total = torch.cuda.mem_get_info(emb.device)[1]
    outside = context_gib(emb) or 0.0  # context, cuBLAS workspace
    room = args.card_gib - outside  # what torch's allocator may use on such a card
    sweep = [int(v) for v in args.sweep.split(",") if v]
    peaks = []
    for budget in sweep:
        _, _, reserved = peak_of(
            emb, lambda b=budget: encode(emb, passages, "retrieval", batch_tokens=b)
        )
        peaks.append(reserved)
        rep.row(f"passages @{budget} peak reserved", _gib(reserved))
    slope, base = np.polyfit(sweep, peaks, 1)  # GiB per token, GiB at budget 0
    predicted = int((room - base) / slope) // 1024 * 1024 if slope > 0 else max(sweep)
    # A budget above the corpus's tokens is never filled: the check could not fail.
    corpus = sum(len(ids) for ids in emb.tokenizer(passages)["input_ids"]) // 1024 * 1024
    limited = predicted > corpus
    predicted = min(predicted, corpus)
    rep.emit(
        "budget sweep",
        sweep_budgets=sweep,
        sweep_reserved_gib=peaks,
        context_gib=outside,
        gib_per_1k_tokens=slope * 1024,
        weights_and_base_gib=base,
    )
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(room * GIB / total, emb.device)
    fits, budget = False, max(1024, predicted)
    for _ in range(3):  # the prediction, then 7/8 of it, twice
        emb._backoff = MemoryBackoff(emb.device)  # a fresh budget: no earlier OOM counts
        _, _, reserved = peak_of(
            emb, lambda b=budget: encode(emb, passages, "retrieval", batch_tokens=b)
        )
        fits = emb._backoff.budget(budget) == budget
        rep.row(
            f"capped at {room:.2f} GiB: @{budget}",
            "fits" if fits else "backed off",
            f"peak reserved {_gib(reserved)}" + (" (the corpus's tokens: at least)" * limited),
        )
        if fits:
            break
        budget = budget * 7 // 8 // 1024 * 1024
    torch.cuda.set_per_process_memory_fraction(1.0, emb.device)
    rep.emit(
        "budget fit",
        largest_budget_fitting_card=budget if fits else None,
        predicted_budget_fitting_card=predicted,
        budget_limited_by_corpus=limited,
        card_gib=args.card_gib,
        allocator_cap_gib=room,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from embedder.footprint import tensor_bytes_by_device
    from embedder.testing import random_embedder

    rep = kit.Report("gpu_memory", args.json)
    start = time.perf_counter()
    emb = random_embedder(args.preset, device=args.device, dtype=args.dtype, seed=args.seed)
    kit.sync(emb.device)
    held = tensor_bytes_by_device(emb).get(str(emb.device), 0) / GIB
    params = sum(p.numel() * p.element_size() for p in emb._model.parameters()) / GIB
    gpu = torch.cuda.get_device_name(emb.device) if emb.device.type == "cuda" else "cpu"
    rep.row("build", f"{time.perf_counter() - start:.1f} s", f"{gpu}, {emb.dtype}")
    rep.row("resident weights", f"{held:.2f} GiB", f"{held / params:.3f}x the parameters")
    rep.emit(
        "setup",
        device=gpu,
        dtype=str(emb.dtype),
        preset=args.preset,
        packed=emb.packed,
        resident_weights_gib=held,
        parameter_gib=params,
        smoke=args.smoke,
    )
    rng = np.random.default_rng(args.seed)
    lengths = kit.passage_lengths(args.passages, 184, 2652 if not args.smoke else 512, rng)
    passages = kit.make_texts(emb.tokenizer, lengths, rng)
    queries = kit.make_texts(emb.tokenizer, rng.integers(6, 24, size=args.queries).tolist(), rng)
    _, first = kit.timed(emb.device, lambda: encode(emb, passages[:1], "retrieval"))
    rep.row("first encode (merge from live weights)", f"{first * 1e3:.0f} ms")
    rep.emit("first merge", first_encode_ms=first * 1e3)
    workload_peaks(emb, rep, passages, queries, args.latency_queries)
    task_switches(emb, rep)  # leaves retrieval live, as the budget sweep expects
    budget_fit(emb, rep, passages[: args.sweep_passages], args)
    alternating(emb, rep, passages[1 : 1 + args.call_passages], args.switch_calls, "passages")
    alternating(emb, rep, queries[: args.call_queries], args.switch_calls, "queries")
    rep.finish()


def _default_budget(emb: Any) -> int:
    from embedder.options import DEFAULT_BATCH_TOKENS

    return DEFAULT_BATCH_TOKENS.get(emb.device.type, DEFAULT_BATCH_TOKENS["cpu"])


def _gib(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} GiB"


if __name__ == "__main__":
    main()

"""Resident weights, peak RSS and task-switch cost at the real shapes (issue 17; not a test).

Builds ``random_embedder("full")`` (jina-embeddings-v4's exact shapes, random weights)
and reports:

* resident weight bytes: every tensor the embedder holds on its device (found by
  walking its references: parameters, buffers, LoRA factors, anything kept for task
  switches), against the model's parameter bytes;
* peak RSS after loading + one encode, and at the end (Linux ``VmHWM``);
* task-switch cost: the first merge (from the live weights) and later switches;
* an alternating retrieval/code workload's throughput against a single-task one.

CPU (what the README figures are; needs ~9 GiB free, ~14 GiB with the old design)::

    python bench/weights_memory.py --device cpu --dtype bfloat16

Smoke check (tiny model, seconds)::

    python bench/weights_memory.py --preset tiny --device cpu --dtype float32

Only the ``embedder`` API that predates issue 17 is used, plus ``embedder/footprint.py``,
so the same script measures an older checkout (copy footprint.py into it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

GIB = 2**30  # the figures (7.0 for 3.755 B bf16 parameters) are GiB
ROWS: list[tuple[str, str]] = []


def report(what: str, value: str) -> None:
    ROWS.append((what, value))
    print(f"[bench] {what:<44} {value}", flush=True)


def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), RssAnon, RssFile in bytes (Linux)."""
    out: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in {"VmRSS", "VmHWM", "RssAnon", "RssFile"}:
                out[key] = int(rest.split()[0]) * 1024
    return out


def report_rss(label: str) -> None:
    s = {k: v / GIB for k, v in proc_status().items()}
    report(
        f"RSS {label}",
        f"{s['VmRSS']:.2f} GiB (anon {s['RssAnon']:.2f}, file {s['RssFile']:.2f}); "
        f"peak {s['VmHWM']:.2f} GiB",
    )


def report_resident(emb, label: str) -> None:
    from embedder.footprint import tensor_bytes_by_device

    held = tensor_bytes_by_device(emb).get(str(emb.device), 0)
    params = sum(p.numel() * p.element_size() for p in emb._model.parameters())
    factors = tensor_bytes_by_device(emb._lora._factors).get(str(emb.device), 0)
    report(
        f"resident weights {label}",
        f"{held / GIB:.3f} GiB = {held / params:.3f}x the parameters ({params / GIB:.3f} GiB; "
        f"LoRA factors {factors / GIB:.3f} GiB)",
    )


def sync(emb) -> None:
    import torch

    if emb.device.type == "cuda":
        torch.cuda.synchronize(emb.device)


def timed_switch(emb, task) -> float:
    sync(emb)
    start = time.perf_counter()
    emb._lora.activate(task)
    sync(emb)
    return (time.perf_counter() - start) * 1e3


def workload(emb, texts: list[str], tasks: list[str]) -> float:
    """Texts per second over one call per entry of ``tasks``."""
    sync(emb)
    start = time.perf_counter()
    for task in tasks:
        emb.encode_text(texts, task=task, prompt_name="query")
    sync(emb)
    return len(texts) * len(tasks) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=["full", "tiny"], default="full")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--texts", type=int, default=4, help="texts per call")
    p.add_argument("--calls", type=int, default=4, help="calls per workload")
    p.add_argument("--verbose", action="store_true", help="DEBUG logs (merge timings)")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)

    from embedder import Task
    from embedder.testing import random_embedder

    report_rss("at start")
    start = time.perf_counter()
    emb = random_embedder(args.preset, device=args.device, dtype=args.dtype)
    report("load (random weights, built in memory)", f"{time.perf_counter() - start:.1f} s")
    report_resident(emb, "after load")
    report_rss("after load")
    texts = [
        f"query {i}: how do vector databases index multi-vector documents?"
        for i in range(args.texts)
    ]
    start = time.perf_counter()
    emb.encode_text(texts, task="retrieval", prompt_name="query")
    report("first encode (merges retrieval)", f"{time.perf_counter() - start:.1f} s")
    report_resident(emb, "after one encode")
    report_rss("after load + one encode")

    # Retrieval is live: the single-task workload pays no switch.
    single = workload(emb, texts, ["retrieval"] * args.calls)
    report(f"single task: {args.calls} calls x {args.texts} texts", f"{single:.3f} texts/s")
    switches = [timed_switch(emb, t) for t in (Task.CODE, Task.RETRIEVAL, Task.CODE)]
    report("task switch (ms, 3 switches)", ", ".join(f"{ms:.0f}" for ms in switches))
    report_resident(emb, "after switches")
    # Code is live: every call of the alternating workload switches.
    alternating = workload(emb, texts, ["retrieval", "code"] * (args.calls // 2))
    report("alternating retrieval/code: same calls", f"{alternating:.3f} texts/s")
    report("alternating / single", f"{alternating / single:.3f}")
    report_rss("at the end")
    print("\n| measure | value |\n|---|---|")
    for what, value in ROWS:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()

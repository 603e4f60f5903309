"""Merge a GPU session's JSON lines into summary.json and print the README's GPU table.

    python bench/gpu_summary.py OUT_FOLDER

Reads ``throughput.jsonl``, ``memory.jsonl``, ``ingest.jsonl`` and ``steps.jsonl`` from the
folder ``bench/gpu_session.sh`` wrote. Each benchmark's last ``summary`` line is used; a
benchmark stopped by its time cap has none, and then its stage lines are merged instead
(what it measured before the cap). Figures not measured print as "owed".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# (label, target, key in the merged figures, unit format, reference key or None)
ROWS: list[tuple[str, str, str, str, str | None]] = [
    ("passage tokens/s", ">= 90k", "project_tok_per_s", "{:,.0f}", "reference_tok_per_s"),
    ("passage MFU (text)", "", "project_mfu", "{:.1%}", "reference_mfu"),
    ("pages/s at 602,112 px", ">= 40", "project_pages_per_s", "{:.1f}", "reference_pages_per_s"),
    ("pages/s at 1,806,336 px", ">= 12", "project_pages_per_s_1806336", "{:.1f}",
     "reference_pages_per_s_1806336"),
    ("page MFU at 602,112 px", "", "project_pages_mfu", "{:.1%}", None),
    ("short queries/s (batched)", ">= 2,000", "project_queries_per_s", "{:,.0f}",
     "reference_queries_per_s"),
    ("single query p50 ms", "<= 15", "single_query_p50_ms", "{:.1f}",
     "reference_single_query_p50_ms"),
    ("single query p95 ms", "", "single_query_p95_ms", "{:.1f}", "reference_single_query_p95_ms"),
    ("peak GPU memory, throughput run (GiB)", "", "project_peak_gib", "{:.1f}",
     "reference_peak_gib"),
    ("passage tokens/s, padded (packing off)", "", "project_tok_per_s_padded", "{:,.0f}",
     "reference_tok_per_s"),
    ("passage tokens/s, compiled decoder", "", "project_tok_per_s_compiled", "{:,.0f}",
     "reference_tok_per_s"),
    ("pages/s at 602,112 px, padded", "", "project_pages_per_s_padded", "{:.1f}",
     "reference_pages_per_s"),
    ("pages/s at 602,112 px, vision windows by grouped SDPA (varlen off)", "",
     "project_pages_per_s_vision-grouped", "{:.1f}", "reference_pages_per_s"),
    ("pages/s at 602,112 px, compiled", "", "project_pages_per_s_compiled", "{:.1f}",
     "reference_pages_per_s"),
    ("short queries/s, compiled", "", "project_queries_per_s_compiled", "{:,.0f}",
     "reference_queries_per_s"),
    ("single query p50 ms, padded", "", "single_query_p50_ms_padded", "{:.1f}",
     "reference_single_query_p50_ms"),
    ("single query p50 ms, compiled + CUDA graphs", "<= 15", "single_query_p50_ms_compiled",
     "{:.1f}", "reference_single_query_p50_ms"),
    ("compile warm-up (s)", "", "warmup_s_compiled", "{:.0f}", None),
    ("reference vs project dense cosine (min)", ">= 0.999", "reference_vs_project_dense_cos_min",
     "{:.4f}", None),
    ("full ingest / embed-only", ">= 90%", "ingest_vs_embed_only", "{:.0%}", None),
    ("full ingest / embed-only, writer process + workers off", "", "ingest_off_vs_embed_only",
     "{:.0%}", None),
    ("query workload peak (GiB)", "<= 10 GB", "query_peak_gib", "{:.2f}", None),
    ("query workload, on the device (reserved + context, GiB)", "<= 10 GB", "query_device_gib",
     "{:.2f}", None),
    ("passage workload peak, default budget (GiB)", "<= 16 GB", "passage_peak_gib", "{:.2f}",
     None),
    ("passage workload, on the device (GiB)", "<= 16 GB", "passage_device_gib", "{:.2f}", None),
    ("largest batch budget fitting 12 GB (tokens)", "", "largest_budget_fitting_card", "{:,}",
     None),
    ("task switch (ms, median)", "", "task_switch_ms", "{:,.0f}", None),
    ("alternating / single task, passage calls", ">= 0.9", "alternating_passages_ratio",
     "{:.2f}", None),
    ("alternating / single task, query calls", "", "alternating_queries_ratio", "{:.2f}", None),
    ("bf16 matmul measured (TFLOP/s)", "", "bf16_peak_tflops_measured", "{:.0f}", None),
]  # fmt: skip


def read_bench(path: Path) -> dict[str, Any]:
    """The last summary line, or every stage line merged when there is none."""
    if not path.exists():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    summaries = [line for line in lines if line.get("stage") == "summary"]
    if summaries:
        return summaries[-1]
    merged: dict[str, Any] = {"incomplete": True}
    for line in lines:
        merged.update(line)
    return merged


def fmt(value: Any, pattern: str) -> str:
    return "owed" if value is None else pattern.format(value)


def main(folder: str) -> None:
    out = Path(folder)
    parts = {name: read_bench(out / f"{name}.jsonl") for name in ("throughput", "memory", "ingest")}
    steps_path = out / "steps.jsonl"
    steps = (
        [json.loads(s) for s in steps_path.read_text().splitlines()] if steps_path.exists() else []
    )
    figures: dict[str, Any] = {}
    for part in parts.values():
        figures.update({k: v for k, v in part.items() if k not in ("bench", "stage")})
    (out / "summary.json").write_text(json.dumps({**parts, "steps": steps}, indent=1) + "\n")
    device = parts["throughput"].get("device") or parts["memory"].get("device") or "?"
    print(f"\nGPU figures ({device}, {parts['throughput'].get('dtype', '?')}):\n")
    print("ratio: how many times better the project is (x faster, or x less time / memory)\n")
    print("| figure | target | project | reference-style | ratio |\n|---|---|---:|---:|---:|")
    for label, target, key, pattern, ref_key in ROWS:
        value, ref = figures.get(key), figures.get(ref_key) if ref_key else None
        lower_is_better = "_ms" in key or "_gib" in key  # then the ratio is ref / project
        ratio = (
            ""
            if not value or not ref
            else f"{(ref / value if lower_is_better else value / ref):.2f}x"
        )
        ref_text = "" if ref_key is None else fmt(ref, pattern)
        print(f"| {label} | {target} | {fmt(value, pattern)} | {ref_text} | {ratio} |")
    for s in steps:
        if s.get("rc"):
            print(f"step {s['step']}: rc {s['rc']} after {s['seconds']} s (cap {s['cap']})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/gpu_summary.py OUT_FOLDER")
    main(sys.argv[1])

"""The GPU session's pieces run end to end on CPU: gpu_memory.py's dry run writes the issue 17
figures that exist without a GPU, and gpu_summary.py merges them, marking the rest owed;
gpu_preflight.py (the session's first step) passes here and stops a session without CUDA."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_memory_dry_run_and_summary(tmp_path: Path) -> None:
    bench = ROOT / "bench"
    cmd = [sys.executable, str(bench / "gpu_memory.py"), "--model", "tiny", "--device", "cpu",
           "--smoke", "--json", str(tmp_path / "memory.jsonl")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp_path / "steps.jsonl").write_text('{"step": "memory", "rc": 0, "seconds": 9, "cap": 100}\n')
    proc = subprocess.run(
        [sys.executable, str(bench / "gpu_summary.py"), str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    memory = summary["memory"]
    assert memory["task_switch_ms"] > 0
    assert memory["alternating_passages_ratio"] > 0
    assert memory["query_peak_gib"] is None  # GPU-only figures: null on CPU
    assert memory["largest_budget_fitting_card"] is None
    assert summary["throughput"] == {} and summary["steps"][0]["step"] == "memory"
    table = {line.split(" | ")[0]: line for line in proc.stdout.splitlines()}
    assert "owed" in table["| largest batch budget fitting 12 GB (tokens)"]
    assert "owed" in table["| passage tokens/s"]
    assert "owed" not in table["| task switch (ms, median)"]


def _preflight(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    env_txt = tmp_path / "env.txt"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_preflight.py"), *args, "--env", str(env_txt)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return proc, env_txt.read_text() if env_txt.exists() else ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA verdict")
def test_preflight_without_cuda_is_fatal_when_cuda_is_required(tmp_path: Path) -> None:
    """On the GPU machine a torch that sees no device stops the session before any step."""
    proc, report = _preflight(tmp_path, "--require-cuda")
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "torch sees no CUDA device" in report and "verdict: fatal" in report
    assert f"python {platform.python_version()}" in report  # the versions come first


@pytest.mark.slow
def test_preflight_passes_on_this_machine(tmp_path: Path) -> None:
    """Imports, torch's CUDA API names, the varlen adapter on meta tensors, the tiny model."""
    proc, report = _preflight(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAIL" not in report and "verdict: ok" in report
    assert "tiny model on " in report and "torch API: ok" in report

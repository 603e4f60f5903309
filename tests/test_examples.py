"""Every script in examples/ runs offline with the tiny model (as subprocesses, two at a time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
#: A line each example must print (besides exiting 0).
EXPECTED = {
    "qdrant_quickstart.py": "added 13, skipped 0",
    "milvus_quickstart.py": "added 13, skipped 0",
    "image_pdf_search.py": "image -> most similar records:",
    "matryoshka_funnel.py": "funnel ",
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES) == sorted(EXPECTED)


def test_examples_run_offline_with_the_tiny_model(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    failures = []
    for pair in (EXAMPLES[i : i + 2] for i in range(0, len(EXAMPLES), 2)):  # 2 CPU cores
        procs = {
            p.name: subprocess.Popen(
                [sys.executable, str(p), "--model", "tiny", "--workdir", str(tmp_path / p.stem)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in pair
        }
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            if proc.returncode != 0 or EXPECTED[name] not in out:
                failures.append(f"{name} (rc={proc.returncode}):\n{out[-1500:]}\n{err[-3000:]}")
    assert not failures, "\n\n".join(failures)

"""Memory that does not grow with the collection (issue 15), as real subprocesses.

``info`` must not load vectors: on a collection whose token vectors are held in RAM (so that
loading the shard reads all of them), the CLI's peak RSS stays under a bound far below the
collection's size, while opening the store does exceed it (the control: the bound can fail).
An ingest killed while it optimizes reopens (announcing the WAL replay) and resumes exactly.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ingest_helpers import REPO, assert_store_holds, subprocess_env, write_text_corpus

from connectors import CollectionSpec, Record
from connectors.qdrant import QdrantStore
from connectors.stores import open_store
from jina_vdb.sources import SourceOptions, iter_items

pytestmark = pytest.mark.slow

DOCS, TOKENS = 2000, 300  # ~150 MB of float16 token vectors, ~190 MB on disk
INFO_BOUND_MB = 120  # the interpreter, typer and the clients: ~45 MB measured


#: Reports the process's peak RSS (VmHWM: resident pages, file-backed included) at exit.
#: Not ru_maxrss: Linux carries the forking parent's (pytest's) peak across exec.
_REPORT_PEAK = (
    "import atexit, sys; atexit.register(lambda: sys.stderr.write('VmHWM ' + "
    "[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1] + '\\n')); "
)


def _peak_rss_mb(code: str, *args: str) -> int:
    """Run ``code`` (after the peak reporter) in a fresh interpreter; its peak RSS in MB."""
    run = subprocess.run(
        [sys.executable, "-c", _REPORT_PEAK + code, *args],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("VmHWM ")]
    return int(line.split()[1]) // 1024


def test_info_does_not_load_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    spec = CollectionSpec(dim=256, prefetch_dims=(32,), multivector_on_disk=False)
    with QdrantStore.create("big", path=tmp_path, spec=spec) as store:
        for lo in range(0, DOCS, 100):
            store.upsert(
                Record(
                    id=i,
                    dense=rng.standard_normal(256, dtype=np.float32),
                    multivector=rng.standard_normal((TOKENS, 128), dtype=np.float32),
                )
                for i in range(lo, lo + 100)
            )
    token_mb = DOCS * TOKENS * 128 * 2 // 2**20
    cli = "import sys; sys.argv[0] = 'jina-vdb'; from jina_vdb.cli.app import main; main()"
    info_mb = _peak_rss_mb(cli, "info", "--store", f"qdrant:{tmp_path}", "--collection", "big")
    opened_mb = _peak_rss_mb(
        "from connectors.qdrant import QdrantStore; "
        f"QdrantStore.open('big', path={str(tmp_path)!r}).close()"
    )
    assert info_mb < INFO_BOUND_MB < token_mb, (info_mb, token_mb)
    assert opened_mb > token_mb, f"loading the shard should read the token vectors: {opened_mb}"


#: Runs the CLI with small segments, so that optimize runs several times during the ingest.
#: With JINA_VDB_TEST_HOLD_OPTIMIZE=N, the N-th optimize says so on stderr once the engine's
#: optimize has run and then waits, before the flush and reload that follow it: the test's
#: kill lands in that window however loaded the machine is (a kill sent on seeing the log
#: line alone raced the child past the flush).
_SMALL_SEGMENTS = (
    "import os, sys, time; from connectors.qdrant.edge import EdgeQdrantStore as E; "
    "E.optimize_bytes = int(sys.argv.pop(1)); sys.argv[0] = 'jina-vdb'; "
    "hold = int(os.environ.get('JINA_VDB_TEST_HOLD_OPTIMIZE', '0')); real = E.optimize; "
    "calls = []\n"
    "def optimize(self):\n"
    "    real(self); calls.append(1)\n"
    "    if len(calls) == hold:\n"
    "        print('HOLDING after optimize', file=sys.stderr, flush=True); time.sleep(600)\n"
    "E.optimize = optimize\n"
    "from jina_vdb.cli.app import main; main()"
)


def _ingest_cmd(corpus: Path, url: str, checkpoint: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        _SMALL_SEGMENTS,
        str(256 * 1024),
        "ingest",
        str(corpus),
        "--store",
        url,
        "--model",
        str(checkpoint),
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--quiet",
        "--verbose",
    ]


def test_ingest_killed_mid_optimize_reopens_and_resumes_exactly(
    tmp_path: Path, tiny_checkpoint: Path, tiny_embedder
) -> None:
    corpus = tmp_path / "corpus"
    write_text_corpus(corpus, 16, words=200)
    expected = list(
        iter_items([corpus], tokenizer=tiny_embedder.tokenizer, options=SourceOptions())
    )
    url = f"qdrant:{tmp_path / 'q'}"
    cmd = _ingest_cmd(corpus, url, tiny_checkpoint)
    # From the second optimize on: the store already holds an optimized segment.
    env = {**subprocess_env(), "JINA_VDB_TEST_HOLD_OPTIMIZE": "2"}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    seen: list[str] = []
    for raw in proc.stderr:
        seen.append(raw.decode(errors="replace"))
        if "HOLDING after optimize" in seen[-1]:
            proc.send_signal(signal.SIGKILL)
            break
    seen += [raw.decode(errors="replace") for raw in proc.stderr]
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    # The kill lands in the maintenance window the optimize opens: after the engine's
    # optimize, before the flush and shard reload that follow it.
    started = max(i for i, line in enumerate(seen) if "optimize 'docs' (" in line)
    assert not any("flush 'docs' done" in line for line in seen[started:]), "killed after it"
    assert not any("not closed cleanly" in line for line in seen), "a reload is not a crash"
    with open_store(url, "docs") as store:
        stored = store.count()
    assert 0 < stored < len(expected)
    done = subprocess.run(
        cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.splitlines()
    added, skipped = (
        int(summary[0].split(word)[0].split()[-1]) for word in (", skipped", " (unchanged")
    )
    assert (added, skipped) == (len(expected) - stored, stored), summary
    # The timings show the pauses: each optimize is followed by a flush and reload here.
    assert summary[1].startswith("  timings:") and " flush " in summary[1], summary
    with open_store(url, "docs") as store:
        assert_store_holds(store, expected, tiny_embedder)

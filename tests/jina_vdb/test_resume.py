"""Kill -9 mid-ingest, run again: nothing lost, nothing duplicated (real subprocesses)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ingest_helpers import (
    REPO,
    assert_store_holds,
    cli_command,
    subprocess_env,
    write_text_corpus,
)

from connectors.stores import open_store
from jina_vdb.sources import SourceOptions, iter_items
from jina_vdb.sources.samples import minimal_pdf, write_sample_corpus

pytestmark = pytest.mark.slow


def _corpus(root: Path) -> Path:
    write_text_corpus(root / "texts", 24, words=40)
    write_sample_corpus(root / "samples")
    (root / "samples" / "pdf" / "long.pdf").write_bytes(
        minimal_pdf([[f"Page {i} of a longer report."] for i in range(4)])
    )
    return root


def _ingest_cmd(corpus: Path, url: str, checkpoint: Path) -> list[str]:
    return cli_command(
        "ingest",
        str(corpus),
        "--store",
        url,
        "--collection",
        "docs",
        "--model",
        str(checkpoint),
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--image-batch-size",
        "2",
        "--dpi",
        "40",
        "--quiet",
        "--verbose",
    )


def _run_and_kill(cmd: list[str], *, after_writes: int, delay: float) -> None:
    """Start an ingest, SIGKILL it ``delay`` seconds after its ``after_writes``-th upsert."""
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    writes = 0
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            writes += "upserted" in line
            if writes >= after_writes:
                break
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()
    assert writes >= after_writes, "the ingest ended before it wrote anything"
    assert proc.returncode == -signal.SIGKILL, (
        f"the ingest finished (rc={proc.returncode}) before it was killed"
    )


def test_kill_and_resume(
    store_url: str, tmp_path: Path, tiny_checkpoint: Path, tiny_embedder
) -> None:
    corpus = _corpus(tmp_path / "corpus")
    expected = list(
        iter_items([corpus], tokenizer=tiny_embedder.tokenizer, options=SourceOptions(pdf_dpi=40))
    )
    cmd = _ingest_cmd(corpus, store_url, tiny_checkpoint)
    rng = random.Random(0)
    counts = []
    # qdrant-edge: two kills, the 2nd into a partly filled store; Milvus Lite (slow start): one.
    for after_writes in (2, 5) if store_url.startswith("qdrant") else (3,):
        _run_and_kill(cmd, after_writes=after_writes, delay=rng.uniform(0.0, 0.05))
        with open_store(store_url, "docs") as store:
            counts.append(store.count())
    assert 0 < counts[0] <= counts[-1] < len(expected), (
        f"not killed mid-run: {counts} of {len(expected)}"
    )
    done = subprocess.run(
        cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.splitlines()[0]
    added, skipped = (
        int(summary.split(word)[0].split()[-1]) for word in (", skipped", " (unchanged")
    )
    assert (added, skipped) == (len(expected) - counts[-1], counts[-1]), (summary, counts)
    with open_store(store_url, "docs") as store:
        assert_store_holds(store, expected, tiny_embedder)

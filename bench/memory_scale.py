"""Memory and wall time of ingest, info, cold search and crash recovery, per backend (not a test).

    python bench/memory_scale.py --docs 2000                       # every backend
    python bench/memory_scale.py --docs 10000 --backends qdrant-edge qdrant-edge-ram
    python bench/memory_scale.py --docs 2000 --repo /path/to/older/checkout   # "before"
    python bench/memory_scale.py --docs 100000 --backends qdrant-edge --warm-modes dense hybrid
    python bench/memory_scale.py --existing /tmp/kept --backends qdrant-edge   # no ingest

Synthetic collections: ``--docs`` documents x ``--tokens`` random 128-d token vectors and a
2048-d dense vector (its 128-d Matryoshka prefix is stored too). Every step runs in a fresh
process, so each number is what a user's command costs:

- ingest: create, upsert in batches of 64, close (the final optimize included);
- info: ``connectors.stores.collection_info`` (what ``jina-vdb info`` runs), and "info (open)",
  opening the store and calling ``info()`` (what it ran before issue 15);
- cold search, per mode: open the store and run one query, after the collection's files were
  evicted from the page cache (``posix_fadvise(DONTNEED)``; no root needed, clean pages only);
- warm latency: median of 20 queries per mode in one process after a warm-up query;
- kill -9: upsert ``--crash-docs`` more documents without closing, SIGKILL, then time the
  reopen (the WAL replay) in a fresh process.

Memory, polled by this (parent) process: peak RSS is the child's own VmHWM (exact); anon and
file are the largest RssAnon / RssFile seen in ``/proc/<pid>/status`` (every 20 ms), Pss the
largest ``Pss`` of ``/proc/<pid>/smaps_rollup`` (every 100 ms: the kernel walks the page
tables to compute it); a peak shorter than the interval can be missed. RSS counts the
file-backed pages a process has mapped (memory-mapped vectors read or written), and counts a
page mapped twice twice (qdrant-edge's optimizer maps the segment it rewrites twice); Pss
counts every page once (shared pages divided among the processes mapping them). Anonymous
memory (heap) is what the kernel cannot drop; clean file-backed pages it drops under
pressure, dirty ones after writing them back. "steady" is the median over the ingest of
each figure; "ratio" is peak / steady.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("dense", "hybrid", "funnel", "multivector")

#: name -> (store URL under a folder, extra CollectionSpec fields)
BACKENDS: dict[str, tuple[str, dict[str, object]]] = {
    "qdrant-edge": ("qdrant:{folder}/q", {}),  # the defaults: tokens on disk, dense in RAM
    "qdrant-edge-ram": ("qdrant:{folder}/q", {"multivector_on_disk": False}),
    "milvus-lite": ("milvus:{folder}/m.db", {}),
}

# The child programs. They import the checkout given by --repo (PYTHONPATH), so an older
# checkout without collection_info or the placement fields measures the "before" state.
_COMMON = """
import os, signal, sys, time
import numpy as np
from connectors import CollectionSpec, Query, Record
from connectors.stores import open_store
url, n, tokens, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), eval(sys.argv[4])
def records(lo, hi, seed):
    rng = np.random.default_rng(seed)
    for i in range(lo, hi):
        yield Record(id=i, dense=rng.standard_normal(2048, dtype=np.float32),
                     multivector=rng.standard_normal((tokens, 128), dtype=np.float32))
def write(store, lo, hi):
    for a in range(lo, hi, 64):
        store.upsert(records(a, min(hi, a + 64), a))
def query(seed):
    rng = np.random.default_rng(seed)
    return Query(dense=rng.standard_normal(2048, dtype=np.float32),
                 multivector=rng.standard_normal((24, 128), dtype=np.float32))
"""
_CHILD = {
    "ingest": """
spec = CollectionSpec(**extra)
with open_store(url, "bench", spec=spec) as store:
    write(store, 0, n)
""",
    "info": """
try:
    from connectors.stores import collection_info
except ImportError:  # before issue 15: info opened the store
    collection_info = None
if collection_info is not None:
    print(collection_info(url, "bench")["count"])
else:
    with open_store(url, "bench") as store:
        print(store.info()["count"])
""",
    "info_open": """
with open_store(url, "bench") as store:
    print(store.info()["count"])
""",
    "search": """
mode = sys.argv[5]
t = time.perf_counter()
store = open_store(url, "bench")
opened = time.perf_counter() - t
t = time.perf_counter()
hits = store.search(query(1), mode=mode, limit=10)
print(f"open {opened:.3f} query {time.perf_counter() - t:.3f} hits {len(hits)}")
store.close()
""",
    "warm": """
store = open_store(url, "bench")
for mode in sys.argv[5].split(","):
    store.search(query(0), mode=mode)
    times = []
    for k in range(20):
        t = time.perf_counter()
        store.search(query(k + 1), mode=mode)
        times.append(time.perf_counter() - t)
    print(f"warm {mode} {sorted(times)[10] * 1000:.2f}")
store.close()
""",
    "crash": """
store = open_store(url, "bench")
write(store, n, n + int(sys.argv[5]))
os.kill(os.getpid(), signal.SIGKILL)
""",
    "reopen": """
with open_store(url, "bench") as store:
    print(store.count())
""",
}


@dataclass
class Step:
    """One measured command."""

    backend: str
    step: str
    wall_s: float
    peak_rss_mb: float
    peak_anon_mb: float
    peak_file_mb: float = 0.0
    peak_pss_mb: float = 0.0
    steady_rss_mb: float | None = None
    steady_anon_mb: float | None = None
    steady_pss_mb: float | None = None
    note: str = ""
    output: list[str] = field(default_factory=list)


def _proc_kb(pid: int, name: str, keys: tuple[str, ...]) -> dict[str, int]:
    """The KB figures ``keys`` of ``/proc/<pid>/<name>`` ({} once the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in keys:
                    out[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def _median_mb(samples: list[int]) -> float | None:
    return statistics.median(samples) / 1024 if samples else None


def run_child(kind: str, args: list[str], repo: Path, timeout: float) -> tuple[float, dict, list]:
    """Run one child program; (wall seconds, memory peaks in MB, stdout lines)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    code = textwrap.dedent(_COMMON) + textwrap.dedent(_CHILD[kind])
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    hwm = 0
    series: dict[str, list[int]] = {"VmRSS": [], "RssAnon": [], "RssFile": [], "Pss": []}
    polls = 0
    while proc.poll() is None:
        st = _proc_kb(proc.pid, "status", ("VmRSS", "VmHWM", "RssAnon", "RssFile"))
        if polls % 5 == 0:
            st.update(_proc_kb(proc.pid, "smaps_rollup", ("Pss",)))
        polls += 1
        hwm = max(hwm, st.pop("VmHWM", 0))
        for key, value in st.items():
            series[key].append(value)
        if time.perf_counter() - start > timeout:
            proc.kill()
        time.sleep(0.02)
    wall = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode not in (0, -9):
        raise RuntimeError(f"{kind} failed ({proc.returncode}): {err[-2000:]}")
    peaks = {
        "rss": hwm / 1024,
        "anon": max(series["RssAnon"], default=0) / 1024,
        "file": max(series["RssFile"], default=0) / 1024,
        "pss": max(series["Pss"], default=0) / 1024,
        "steady": _median_mb(series["VmRSS"]),
        "steady_anon": _median_mb(series["RssAnon"]),
        "steady_pss": _median_mb(series["Pss"]),
    }
    return wall, peaks, out.splitlines()


def evict(folder: Path) -> None:
    """Drop the collection's clean pages from the page cache (a cold start without root)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)  # dirty pages cannot be dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def bench_backend(name: str, args: argparse.Namespace, root: Path) -> list[Step]:
    template, extra = BACKENDS[name]
    folder = root / name
    folder.mkdir(parents=True, exist_ok=args.existing is not None)
    url = template.format(folder=folder)
    base = [url, str(args.docs), str(args.tokens), repr(extra)]
    steps: list[Step] = []

    def measure(kind: str, label: str, *more: str, timeout: float = 7200) -> Step:
        wall, peaks, out = run_child(kind, base + list(more), args.repo, timeout)
        step = Step(
            name,
            label,
            wall,
            peaks["rss"],
            peaks["anon"],
            peaks["file"],
            peaks["pss"],
            peaks["steady"],
            peaks["steady_anon"],
            peaks["steady_pss"],
            output=out,
        )
        print(
            f"{name:16s} {label:22s} {wall:8.2f} s  rss {peaks['rss']:6.0f} MB  "
            f"anon {peaks['anon']:6.0f} MB  file {peaks['file']:6.0f} MB  "
            f"pss {peaks['pss']:6.0f} MB  {' | '.join(out)[:90]}",
            flush=True,
        )
        steps.append(step)
        return step

    if args.existing is not None:  # left by an earlier (killed) run: reopen it first
        measure("reopen", "reopen (existing)")
    else:
        _note_ratios(measure("ingest", "ingest"), name)
    measure("info", "info")
    measure("info_open", "info (open)")
    for mode in args.cold_modes:
        evict(folder)
        measure("search", f"cold search {mode}", mode)
    warm = measure("warm", "warm latency (ms)", ",".join(args.warm_modes))
    warm.note = " ".join(warm.output)
    if args.crash_docs:
        measure("crash", "upsert + kill -9", str(args.crash_docs))
        measure("reopen", "reopen after kill -9")
    return steps


def _note_ratios(ingest: Step, name: str) -> None:
    """Note (and print) the ingest's peak / steady ratios of RSS, Pss and anonymous memory."""
    ingest.note = ", ".join(
        f"{what} peak {peak:.0f} / steady {steady or 0:.0f} MB = "
        f"{peak / steady if steady else 0:.2f}x"
        for what, peak, steady in (
            ("RSS", ingest.peak_rss_mb, ingest.steady_rss_mb),
            ("Pss", ingest.peak_pss_mb, ingest.steady_pss_mb),
            ("anon", ingest.peak_anon_mb, ingest.steady_anon_mb),
        )
    )
    print(f"{name:16s} ingest: {ingest.note}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--crash-docs", type=int, default=500)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument(
        "--cold-modes",
        nargs="+",
        default=list(MODES),
        choices=MODES,
        help="modes of the cold-search steps (multivector reads every token vector)",
    )
    parser.add_argument(
        "--warm-modes",
        nargs="+",
        default=list(MODES),
        choices=MODES,
        help="modes of the warm-latency step (multivector reads every token vector 21 times)",
    )
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to measure")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--existing",
        type=Path,
        default=None,
        help="the memory_scale_* folder of an earlier --workdir run, kept on disk: measure its "
        "collections without ingesting (the first step reopens them) and keep them",
    )
    args = parser.parse_args()
    root = args.existing or Path(tempfile.mkdtemp(prefix="memory_scale_", dir=args.workdir))
    results: list[Step] = []
    try:
        for name in args.backends:
            results += bench_backend(name, args, root)
    finally:
        if args.existing is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in results], indent=2))


if __name__ == "__main__":
    main()

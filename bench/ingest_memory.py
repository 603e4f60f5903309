"""Peak memory of ``jina-vdb ingest`` over large images and multi-MB texts (not a test).

Small files can cost a lot of memory: a 9000x9000 PNG of a few hundred KB decodes to
243 MB, and tokenising a 32 MiB text whole took 10 GB. This runs the real CLI in a
subprocess on a generated folder and reports its peak RSS (``ru_maxrss`` of the child),
minus a baseline run over one small text file (interpreter, libraries, the model):

    python bench/ingest_memory.py                         # 6 images 9000x9000, texts 2x8 + 30 MiB
    python bench/ingest_memory.py --images 4 --text-mib 8 --checkout /path/to/old/checkout

``--checkout`` runs another checkout's code (e.g. a commit before a change) on the same
inputs, for before/after figures. The model is ``--model`` (default: the tiny random
checkpoint, so the figures are what the pipeline holds beyond the model's weights).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=6, help="PNGs of --side x --side pixels")
    p.add_argument("--side", type=int, default=9000)
    p.add_argument(
        "--text-mib",
        type=float,
        nargs="*",
        default=[8, 8, 30],
        help="sizes of the text files in MiB (each under max_text_bytes, 32 MiB)",
    )
    p.add_argument("--model", default="tiny")
    p.add_argument("--store", default=None, help="store URL (default: qdrant-edge in a temp dir)")
    p.add_argument("--checkout", type=Path, default=REPO, help="the code to measure")
    return p.parse_args()


def write_image(path: Path, side: int, seed: int) -> None:
    """A document-like picture: flat background, ruled lines, a few boxes (compresses well)."""
    image = Image.new("RGB", (side, side), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    for y in range(0, side, 60):
        draw.line([(0, y), (side, y)], fill=(200, 200, 220), width=2)
    for k in range(12):
        x, y = (seed * 977 + k * 1553) % side, (seed * 331 + k * 2711) % side
        draw.rectangle([x, y, x + side // 10, y + side // 14], fill=(40 * k % 255, 90, 160))
    image.save(path, format="PNG", compress_level=6)


def write_text(path: Path, mib: float, seed: int) -> None:
    """Prose-like text of ``mib`` MiB: varied words, sentences and paragraphs."""
    words = [f"w{(seed * 7919 + i * 104729) % 50000:x}" for i in range(4096)]
    target = int(mib * 2**20)
    with open(path, "w", encoding="utf-8") as f:
        written, i = 0, 0
        while written < target:
            sentence = " ".join(words[(i * 13 + j * 7) % 4096] for j in range(12)) + ". "
            if i % 8 == 7:
                sentence += "\n\n"
            f.write(sentence)
            written += len(sentence)
            i += 1


def run_ingest(checkout: Path, folder: Path, store: str, model: str) -> tuple[float, float, str]:
    """(peak RSS in MiB, wall seconds, first summary line) of one ``jina-vdb ingest``."""
    env = dict(os.environ, PYTHONPATH=str(checkout), OMP_NUM_THREADS="2")
    cmd = [sys.executable, "-m", "jina_vdb.cli", "ingest", str(folder), "--store", store]
    cmd += ["--model", model, "--device", "cpu", "-q"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"ingest failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        first_line = out.read().decode().splitlines()[0]
    return usage.ru_maxrss / 1024, seconds, first_line  # ru_maxrss: KiB on Linux


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="ingest-memory-") as tmp:
        root = Path(tmp)
        small, big = root / "small", root / "big"
        small.mkdir()
        big.mkdir()
        (small / "one.txt").write_text("a single short text", encoding="utf-8")
        for i in range(args.images):
            write_image(big / f"image_{i}.png", args.side, i)
        for i, mib in enumerate(args.text_mib):
            write_text(big / f"text_{i}.txt", mib, i)
        sizes = sorted(p.stat().st_size for p in big.iterdir())
        print(f"inputs: {args.images} PNGs {args.side}x{args.side}, texts {args.text_mib} MiB; ")
        print(
            f"        files {sum(sizes) / 2**20:.1f} MiB on disk, largest {sizes[-1] / 2**20:.1f}"
        )
        print(f"code:   {args.checkout}")
        # Baseline and measurement: each in its own process (ru_maxrss is per process).
        results = {}
        for name, folder in (("baseline", small), ("ingest", big)):
            store = args.store or f"qdrant:{root / ('store-' + name)}"
            results[name] = run_ingest(args.checkout, folder, store, args.model)
        base, run = results["baseline"], results["ingest"]
        print(f"baseline (model, libraries, one text): peak RSS {base[0]:,.0f} MiB")
        print(f"ingest: peak RSS {run[0]:,.0f} MiB, {run[1]:.1f} s; {run[2]}")
        print(f"beyond the baseline: {run[0] - base[0]:,.0f} MiB")


if __name__ == "__main__":
    main()

"""How much of the GIL a qdrant-edge writer leaves to the encoder's thread (not a test).

On a GPU the encoder's Python thread launches kernels and needs the GIL; the writer thread
converts token matrices into the binding's Python lists and upserts them. This measures,
for the same records written in-process and through ``connectors.store_process``, how
much Python work a probe thread (standing in for the encoder) gets done meanwhile,
relative to the probe running alone:

    python bench/writer_gil.py --pages 200 --tokens 768

Prints write seconds and the probe's share of its solo rate for both writers.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from connectors import CollectionSpec, Record  # noqa: E402
from connectors.qdrant import QdrantStore  # noqa: E402
from connectors.store_process import store_in_process  # noqa: E402


def records(n: int, tokens: int, seed: int) -> list[Record]:
    rng = np.random.default_rng(seed)
    return [
        Record(
            id=f"p{seed}-{i}",
            dense=rng.standard_normal(2048).astype(np.float32),
            multivector=rng.standard_normal((tokens, 128)).astype(np.float16),
            payload={"source": f"doc{i // 8}.pdf", "page": i % 8},
        )
        for i in range(n)
    ]


def probed(work) -> tuple[float, int]:
    """(seconds of ``work``, probe loop iterations meanwhile)."""
    count, stop = [0], threading.Event()

    def probe() -> None:
        while not stop.is_set():
            count[0] += 1

    thread = threading.Thread(target=probe)
    thread.start()
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    return seconds, count[0]


def write(target, data: list[Record], batch: int) -> None:
    for lo in range(0, len(data), batch):
        target.upsert(data[lo : lo + batch])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pages", type=int, default=200)
    p.add_argument("--tokens", type=int, default=768, help="token vectors per page")
    p.add_argument("--batch", type=int, default=64, help="records per upsert (ingest's)")
    args = p.parse_args()
    spec = CollectionSpec(dim=2048, prefetch_dims=(128,))
    solo_s, solo_n = probed(lambda: time.sleep(3))
    solo_rate = solo_n / solo_s
    print(f"[bench] probe alone: {solo_rate:,.0f} iterations/s")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("in-process", "child process"):
            data = records(args.pages, args.tokens, seed=len(mode))
            with QdrantStore.create(mode.replace(" ", "-"), path=tmp, spec=spec) as store:
                if mode == "in-process":
                    seconds, n = probed(functools.partial(write, store, data, args.batch))
                else:
                    with store_in_process(store) as child:
                        seconds, n = probed(functools.partial(write, child, data, args.batch))
            share = n / seconds / solo_rate
            print(
                f"[bench] {mode:13}: {args.pages} pages x {args.tokens} tokens written in "
                f"{seconds:.2f} s ({args.pages / seconds:.0f} pages/s); "
                f"probe thread got {share:.0%} of its solo rate"
            )


if __name__ == "__main__":
    main()

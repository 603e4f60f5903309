"""What a filtered search costs on Milvus Lite, and how much of it is counting (not a test).

    python bench/filtered_count.py --docs 2000              # dense + hybrid, 1/10/50/90 %
    python bench/filtered_count.py --docs 20000 --dense-only
    python bench/filtered_count.py --server --docs 2000 --dense-only   # local Milvus 2.3.5

A restricted dense stage sets its HNSW breadth from the filter's selectivity
(``convert.filtered_ef``), which needs the filter's match count and the row count. This
times ``store.search`` per selectivity (``Range("bucket", lt=s)`` over ``bucket = i % 100``)
and, through a wrapper around the client's ``query``, the time and number of the
``count(*)`` and match-probe queries the search sent. The documents come from the cached
topic corpus of bench/multivector_scale.py (read only; ``--corpus``); the Lite database
is built once under ``--workdir`` and reused.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import CollectionSpec, Query, Range, Record  # noqa: E402
from connectors.milvus import MilvusStore  # noqa: E402

logger = logging.getLogger("bench.filtered_count")
BUCKETS = 100


class QueryTimer:
    """Wraps ``client.query`` to time the requests a search makes besides the search itself."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.inner = client.query
        self.seconds = 0.0
        self.calls = 0
        client.query = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        counting = "count(*)" in (kwargs.get("output_fields") or []) or "limit" in kwargs
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            if counting:
                self.seconds += time.perf_counter() - start
                self.calls += 1


def build(uri: str, corpus: Path, docs: int, dense_only: bool) -> MilvusStore:
    dense = np.load(corpus / "dense.npy", mmap_mode="r")[:docs]
    tokens = None if dense_only else np.load(corpus / "tokens.npy", mmap_mode="r")[:docs]
    spec = CollectionSpec(
        dim=dense.shape[1],
        prefetch_dims=(128,) if "://" not in uri else (),
        multivector=not dense_only,
        payload_indexes={"bucket": "integer"},
    )
    store = MilvusStore.create("bench", uri=uri, spec=spec)
    if store.count() == docs:
        return store
    start = time.perf_counter()
    for s in range(0, docs, 250):
        e = min(docs, s + 250)
        store.upsert(
            [
                Record(
                    i,
                    np.asarray(dense[i], dtype=np.float32),
                    None if tokens is None else np.asarray(tokens[i], dtype=np.float32),
                    {"bucket": i % BUCKETS},
                )
                for i in range(s, e)
            ]
        )
    logger.info("inserted %d documents in %.0f s", docs, time.perf_counter() - start)
    return store


def series(
    store: MilvusStore, timer: QueryTimer, queries: Any, n: int, flt: Range, mode: str, when: str
) -> dict[str, Any]:
    """Median latency and counting cost of ``n`` searches (after one warm-up). ``when``:
    "new": each search as the first with its filter (the store's kept counts forgotten);
    "repeat": the same filter again on the unchanged store. The two are one and the same
    before the store kept counts (no ``_sizes``)."""
    sizes = getattr(store, "_sizes", None)
    laps, counted, calls, found = [], [], [], []
    for i in range(n + 1):
        q = Query(
            dense=queries["dense"][i],
            multivector=None if mode == "dense" else queries["tokens"][i],
        )
        if when == "new" and sizes is not None:
            sizes.forget()
        timer.seconds, timer.calls = 0.0, 0
        start = time.perf_counter()
        hits = store.search(q, mode=mode, limit=10, filter=flt)
        lap = time.perf_counter() - start
        if i:
            laps.append(lap * 1e3)
            counted.append(timer.seconds * 1e3)
            calls.append(timer.calls)
            found.append(len(hits))
    return {
        "mode": mode,
        "filter": when,
        "p50_ms": round(statistics.median(laps), 1),
        "count_ms": round(statistics.median(counted), 1),
        "count_queries": statistics.median(calls),
        "hits": min(found),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/jvdb-filtered-count"))
    parser.add_argument("--uri", default=None, help="a Milvus server (default: a Lite file)")
    parser.add_argument(
        "--server", action="store_true", help="start a local Milvus 2.3.5 (PyPI milvus)"
    )
    parser.add_argument("--dense-only", action="store_true")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--percent", type=int, nargs="+", default=[1, 10, 50, 90])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    corpus = args.corpus or Path(f"/tmp/jvdb-multivector-scale/corpus-{args.docs}x300-q40")
    args.workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.server:
            from connectors.milvus.testing import LocalMilvusServer

            server = stack.enter_context(LocalMilvusServer(args.workdir / "server"))
            uri = server.uri
        elif args.uri is None:
            kind = "dense" if args.dense_only else "multi"
            uri = str(args.workdir / f"lite-{args.docs}-{kind}.db")
        else:
            uri = args.uri
        rows = measure(uri, corpus, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def measure(uri: str, corpus: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Build (or reuse) the collection at ``uri``, reopen it and time every series."""
    build(uri, corpus, args.docs, args.dense_only).close()
    store = MilvusStore.open("bench", uri=uri)  # reopened: sealed segments, built indexes
    timer = QueryTimer(store.client)
    queries = np.load(corpus / "queries.npz")
    modes = ["dense"] if args.dense_only else ["dense", "hybrid"]
    rows = []
    for pct, mode, when in itertools.product(args.percent, modes, ["new", "repeat"]):
        row = series(store, timer, queries, args.queries, Range("bucket", lt=pct), mode, when)
        row = {"docs": args.docs, "percent": pct, **row, "load": round(os.getloadavg()[0], 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    store.close()
    return rows


if __name__ == "__main__":
    raise SystemExit(main())

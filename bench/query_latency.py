"""Query latency per search mode and disk bytes per document, per backend (not a test).

    python bench/query_latency.py                         # 2k docs, every backend
    python bench/query_latency.py --docs 20000 --backends qdrant-edge
    python bench/query_latency.py --docs 2000 20000 --json results.json
    python bench/query_latency.py --backends milvus-server milvus-lite qdrant-edge \
        --prefetch-dims --modes dense hybrid fusion      # Milvus 2.3: one vector field

Synthetic data: random unit vectors, ``--tokens`` token vectors of 128 dims per document,
a 2048-d dense vector (its Matryoshka prefixes are stored by the connector). Queries are
noisy copies of random documents (``--query-tokens`` tokens), so "top1" checks that the
planted document comes first. Latency is wall time of ``store.search`` after warm-up.

Adding a backend = one entry in BACKENDS: a setup function that creates an empty store in
a folder, and the largest N it is sensible to run it at.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import CollectionSpec, Query, Record, SearchMode, VectorStore  # noqa: E402
from connectors.vectors import l2_normalize  # noqa: E402

logger = logging.getLogger("bench.query_latency")


@dataclass(frozen=True)
class BenchBackend:
    """How to create an empty store in ``folder`` and reopen it; ``max_docs``: skip larger runs."""

    setup: Callable[[Path, CollectionSpec], VectorStore]
    reopen: Callable[[Path], VectorStore]
    max_docs: int | None = None
    #: Folder whose size is the store's disk footprint (None: in memory or not measurable).
    disk: Callable[[Path], Path | None] = lambda folder: folder
    #: Other ways to reopen the same data, timed too (fewer queries), e.g. another consistency.
    also: dict[str, Callable[[Path], VectorStore]] = field(default_factory=dict)


def _qdrant_edge(folder: Path, spec: CollectionSpec) -> VectorStore:
    from connectors.qdrant import QdrantStore

    return QdrantStore.create("bench", path=folder, spec=spec)


def _qdrant_edge_open(folder: Path) -> VectorStore:
    from connectors.qdrant import QdrantStore

    return QdrantStore.open("bench", path=folder)


def _qdrant_local(folder: Path, spec: CollectionSpec) -> VectorStore:
    from connectors.qdrant import QdrantStore

    return QdrantStore.create("bench", local=str(folder), spec=spec)


def _qdrant_local_open(folder: Path) -> VectorStore:
    from connectors.qdrant import QdrantStore

    return QdrantStore.open("bench", local=str(folder))


def _milvus_lite(folder: Path, spec: CollectionSpec, layout: str = "auto") -> VectorStore:
    from connectors.milvus import MilvusStore

    folder.mkdir(parents=True, exist_ok=True)
    return MilvusStore.create("bench", uri=str(folder / "bench.db"), spec=spec, layout=layout)


def _milvus_lite_open(folder: Path) -> VectorStore:
    from connectors.milvus import MilvusStore

    return MilvusStore.open("bench", uri=str(folder / "bench.db"))


#: Local Milvus servers started by the "milvus-server" backend, by folder; stopped at exit.
_SERVERS: dict[Path, Any] = {}


def _milvus_server(folder: Path, spec: CollectionSpec) -> VectorStore:
    """A real Milvus 2.3.5 standalone (PyPI ``milvus``) with its data in ``folder``."""
    from connectors.milvus import MilvusStore
    from connectors.milvus.testing import LocalMilvusServer

    server = _SERVERS.get(folder)
    if server is None:
        server = _SERVERS[folder] = LocalMilvusServer(folder / "server")
        server.start()
    return MilvusStore.create("bench", uri=server.uri, spec=spec)


def _milvus_server_open(folder: Path, consistency: str = "Session") -> VectorStore:
    from connectors.milvus import MilvusStore

    return MilvusStore.open("bench", uri=_SERVERS[folder].uri, consistency_level=consistency)


def _stop_servers() -> None:
    while _SERVERS:
        _SERVERS.popitem()[1].stop()


BACKENDS: dict[str, BenchBackend] = {
    "qdrant-edge": BenchBackend(_qdrant_edge, _qdrant_edge_open),
    # Pure-Python brute force: ~0.3 s per query at 2k docs, several seconds and 7+ GB at 20k.
    "qdrant-local": BenchBackend(_qdrant_local, _qdrant_local_open, max_docs=2_000),
    # Packed token rows (the default layout): hybrid fetches its ~100 candidates' ~200 rows in
    # one query; the multivector mode streams every row (seconds at 2k docs).
    "milvus-lite": BenchBackend(_milvus_lite, _milvus_lite_open, max_docs=20_000),
    # The layout before packed, one row per token: hybrid fetches ~30k token rows per query;
    # the multivector mode streams all of them (tens of seconds at 2k docs).
    "milvus-lite-token-rows": BenchBackend(
        lambda folder, spec: _milvus_lite(folder, spec, layout="token_rows"),
        _milvus_lite_open,
        max_docs=2_000,
    ),
    # Milvus 2.3.5 holds one vector field per collection: run it with --prefetch-dims (none).
    # Also timed at Strong consistency (every read waits for the next 200 ms time tick).
    "milvus-server": BenchBackend(
        _milvus_server,
        _milvus_server_open,
        max_docs=20_000,
        disk=lambda folder: folder / "server" / "data",
        also={"Strong": lambda folder: _milvus_server_open(folder, "Strong")},
    ),
}


# -- synthetic data -------------------------------------------------------------------------
def documents(
    n: int, *, dim: int, tokens: int, seed: int, batch: int = 256
) -> Iterator[list[Record]]:
    """Batches of random documents (generated lazily: 20k x 300 x 128 floats is 3 GB)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        size = min(batch, n - start)
        dense = l2_normalize(rng.standard_normal((size, dim), dtype=np.float32))
        multi = l2_normalize(rng.standard_normal((size, tokens, 128), dtype=np.float32))
        yield [
            Record(
                id=start + i,
                dense=dense[i],
                multivector=multi[i],
                payload={"n": start + i, "lang": "en" if (start + i) % 2 else "de"},
            )
            for i in range(size)
        ]


def planted_queries(
    n_docs: int, count: int, *, dim: int, tokens: int, query_tokens: int, seed: int
) -> list[tuple[int, Query]]:
    """Queries near random documents: regenerate those documents from the same seed."""
    rng = np.random.default_rng(seed + 1)
    targets = rng.choice(n_docs, size=count, replace=False).tolist()
    wanted = set(targets)
    found: dict[int, Record] = {}
    for batch in documents(n_docs, dim=dim, tokens=tokens, seed=seed):
        found.update((r.id, r) for r in batch if r.id in wanted)
    queries = []
    for t in targets:
        doc = found[t]
        dense = l2_normalize(doc.dense + 0.04 * rng.standard_normal(dim, dtype=np.float32))
        pick = rng.choice(tokens, size=query_tokens, replace=False)
        toks = l2_normalize(
            doc.multivector[pick]
            + 0.08 * rng.standard_normal((query_tokens, 128), dtype=np.float32)
        )
        queries.append((t, Query(dense=dense, multivector=toks)))
    return queries


def read_through(path: Path | None) -> None:
    """Read every file once so timing starts from a warm page cache, as in a long-lived service."""
    if path is None or not path.exists():
        return
    for f in path.rglob("*"):
        if f.is_file():
            with f.open("rb") as fh:
                while fh.read(1 << 24):
                    pass


def folder_bytes(path: Path | None) -> int | None:
    if path is None or not path.exists():
        return None
    # Allocated blocks, as du counts them: qdrant preallocates sparse 32 MiB chunk files.
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


# -- one run --------------------------------------------------------------------------------
def run(name: str, backend: BenchBackend, n: int, args: argparse.Namespace, workdir: Path) -> dict:
    """Ingest ``n`` documents, reopen, time every mode; returns one result row."""
    spec = CollectionSpec(
        dim=args.dim,
        prefetch_dims=tuple(args.prefetch_dims),
        multivector_dtype=args.dtype,
        quantization=args.quantization,
        multivector_quantization=args.token_quantization,
        token_pooling=args.token_pooling,
    )
    folder = workdir / f"{name}-{n}"
    upserted = ingest = None
    if not (args.reuse and folder.exists()):
        store = backend.setup(folder, spec)
        start = time.perf_counter()
        for batch in documents(n, dim=args.dim, tokens=args.tokens, seed=args.seed):
            store.upsert(batch)
        upserted = round(time.perf_counter() - start, 1)
        store.close()  # qdrant-edge builds the indexes of the last points here
        ingest = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    store = backend.reopen(folder)
    reopen = time.perf_counter() - start
    read_through(backend.disk(folder))
    # Warm-up queries target other documents than the timed ones: timing runs on warm caches
    # (as in a long-running service), not on pages the very same query just touched.
    planted = planted_queries(
        n,
        args.warmup + args.queries,
        dim=args.dim,
        tokens=args.tokens,
        query_tokens=args.query_tokens,
        seed=args.seed,
    )
    modes = time_modes(store, planted[: args.warmup], planted[args.warmup :], args)
    store.close()
    size = folder_bytes(backend.disk(folder))
    variants = {}
    for label, opener in backend.also.items():
        few = argparse.Namespace(**{**vars(args), "repeat": 1, "exhaustive_queries": 2})
        with opener(folder) as other:
            shown = planted[args.warmup : args.warmup + max(5, args.queries // 5)]
            variants[label] = time_modes(other, planted[:2], shown, few)
    return {
        "backend": name,
        "variants": variants,
        "docs": n,
        "query_tokens": args.query_tokens,
        "prefetch_limit": args.prefetch_limit,
        "ingest_s": ingest,
        "upsert_s": upserted,
        "reopen_s": round(reopen, 2),
        "disk_bytes_per_doc": None if size is None else round(size / n),
        "modes": modes,
    }


def time_modes(store: VectorStore, warmup: list, queries: list, args: argparse.Namespace) -> dict:
    """p50/p95 latency and top-1 hit rate per mode.

    The fast modes run interleaved (each query in every mode, ``--repeat`` passes), so a busy
    moment on a shared machine slows every mode alike instead of one. Exhaustive MaxSim scores
    every document (seconds at 20k): it gets ``--exhaustive-queries`` queries, once.
    """
    exhaustive = SearchMode.MULTIVECTOR.value
    fast = [m for m in args.modes if m != exhaustive]
    kwargs = {"limit": 10, "prefetch_limit": args.prefetch_limit}
    times: dict[str, list[float]] = {m: [] for m in args.modes}
    top1: dict[str, list[bool]] = {m: [] for m in args.modes}

    def timed(mode: str, target: int, query: Query, count: bool) -> None:
        t0 = time.perf_counter()
        hits = store.search(query, mode=mode, **kwargs)
        times[mode].append((time.perf_counter() - t0) * 1000)
        if count:
            top1[mode].append(bool(hits) and hits[0].id == target)

    for _, q in warmup:
        for mode in fast:
            store.search(q, mode=mode, **kwargs)
    for rep in range(args.repeat):
        for target, q in queries:
            for mode in fast:
                timed(mode, target, q, count=rep == 0)
    if exhaustive in args.modes:
        store.search(warmup[0][1], mode=exhaustive, **kwargs)
        for target, q in queries[: args.exhaustive_queries]:
            timed(exhaustive, target, q, count=True)
    out = {}
    for mode in args.modes:
        out[mode] = {
            "p50_ms": round(statistics.median(times[mode]), 2),
            "p95_ms": round(float(np.percentile(times[mode], 95)), 2),
            "top1": round(sum(top1[mode]) / len(top1[mode]), 3),
        }
        logger.info("%s: %s", mode, out[mode])
    return out


def table(results: list[dict], modes: list[str]) -> str:
    head = (
        "| backend | docs | q tokens | "
        + " | ".join(f"{m} p50/p95 ms (top1)" for m in modes)
        + " | bytes/doc | ingest s | reopen s |"
    )
    lines = [head, "|" + "---|" * (len(modes) + 6)]
    for r in results:
        rows = [
            (r["backend"], r["modes"]),
            *((f"{r['backend']} ({k})", v) for k, v in r.get("variants", {}).items()),
        ]
        for label, timed in rows:
            cells = [
                f"{timed[m]['p50_ms']} / {timed[m]['p95_ms']} ({timed[m]['top1']})" for m in modes
            ]
            lines.append(
                f"| {label} | {r['docs']} | {r['query_tokens']} | "
                + " | ".join(cells)
                + f" | {r['disk_bytes_per_doc']} | {r['ingest_s']} | {r['reopen_s']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, nargs="+", default=[2000])
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    p.add_argument(
        "--modes",
        nargs="+",
        default=[m.value for m in SearchMode],
        choices=[m.value for m in SearchMode],
    )
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3, help="timed passes over the queries")
    p.add_argument(
        "--exhaustive-queries", type=int, default=10, help="timed queries of the multivector mode"
    )
    p.add_argument(
        "--warmup", type=int, default=20, help="queries run before timing (other targets)"
    )
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--query-tokens", type=int, default=32)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--prefetch-dims", type=int, nargs="*", default=[128])
    p.add_argument("--prefetch-limit", type=int, default=100)
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--quantization", default="none", choices=["none", "int8", "binary"])
    p.add_argument("--token-quantization", default="none", choices=["none", "int8", "binary"])
    p.add_argument("--token-pooling", type=int, default=None, choices=[2, 3, 4])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reuse", action="store_true", help="time stores already in --workdir instead of ingesting"
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where stores are written and kept (default: a temp dir, removed)",
    )
    p.add_argument("--force", action="store_true", help="run backends above their max_docs too")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jvdb-bench-"))
    results = []
    try:
        for n in args.docs:
            for name in args.backends:
                backend = BACKENDS[name]
                if backend.max_docs is not None and n > backend.max_docs and not args.force:
                    logger.info(
                        "skipping %s at %d docs (max_docs=%d; --force to run)",
                        name,
                        n,
                        backend.max_docs,
                    )
                    continue
                results.append(run(name, backend, n, args, workdir))
                if args.workdir is None:  # a 20k store is ~2 GB: do not keep temp ones around
                    _stop_servers()
                    shutil.rmtree(workdir / f"{name}-{n}", ignore_errors=True)
    finally:
        _stop_servers()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(results, args.modes))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

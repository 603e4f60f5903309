"""Storage options for token vectors at scale: bytes, insert rate, latency and recall (not a test).

    python bench/multivector_scale.py --docs 2000                      # every option, both backends
    python bench/multivector_scale.py --docs 20000 --backends qdrant-edge --options float16 pool3
    python bench/multivector_scale.py --docs 20000 --json results.jsonl  # one JSON line per run

The corpus has topic structure (bench/topic_corpus.py): documents and queries draw their
tokens from shared clusters, so compression and approximate first stages lose ranks as
they would on real data. For each storage option (OPTIONS) on each backend (BACKENDS):

- bytes per document on disk (allocated blocks of the collection's folder / file, after a
  clean close), and the insert rate (upserts of 250 documents plus the final close, which
  builds the indexes on qdrant-edge);
- p50 / p95 latency per search mode, and recall@10 against the exact float32 MaxSim top 10
  over the whole corpus (numpy, computed once per corpus and cached);
- a filtered hybrid query selecting ~1% of the corpus (``bucket == target % 100``, an
  integer payload index), its recall against the exact top 10 of that subset.

An option is a row of OPTIONS: the CollectionSpec fields it sets, and the search modes it
adds. An option whose spec fields are not in this checkout's CollectionSpec is reported as
not available; one a backend refuses is reported with the refusal. Every figure is
printed, good or bad. The documents are generated once into ``--workdir`` (float16 token
vectors, memory-mapped: 7.7 GB at 100k x 300) with the exact scores beside them.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from topic_corpus import BUCKETS, TopicCorpus, maxsim_block, top_k  # noqa: E402

from connectors import CollectionSpec, Eq, Query, Record, VectorStore  # noqa: E402
from connectors.errors import ConnectorError  # noqa: E402

logger = logging.getLogger("bench.multivector_scale")
K = 10


# -- what is compared -----------------------------------------------------------------------
@dataclass(frozen=True)
class StorageOption:
    """CollectionSpec fields (built lazily: they may name types a checkout lacks) and the
    search modes the option adds to the common ones."""

    fields: Callable[[], dict[str, Any]]
    modes: tuple[str, ...] = ()


def _muvera() -> dict[str, Any]:
    from connectors.spec import MuveraParams  # type: ignore[attr-defined]

    return {"muvera": MuveraParams()}


def _preset(name: str) -> dict[str, Any]:
    from connectors.spec import STORAGE_PRESETS  # type: ignore[attr-defined]

    return STORAGE_PRESETS[name]


def _small(pool: int) -> dict[str, Any]:
    return {"token_pooling": pool, "multivector_dtype": "uint8", "dense_dtype": "float16"}


#: A 2,048-d MUVERA encoding (8 repetitions x 16 buckets x 16 dims): 4 KB in float16.
_SMALL_MUVERA = {"k_sim": 4, "dim_proj": 16, "r_reps": 8}


OPTIONS: dict[str, StorageOption] = {
    "float16": StorageOption(dict),  # today's default
    "pool2": StorageOption(lambda: {"token_pooling": 2}),
    "pool3": StorageOption(lambda: {"token_pooling": 3}),
    "pool4": StorageOption(lambda: {"token_pooling": 4}),
    "int8": StorageOption(lambda: {"multivector_quantization": "int8"}),
    "binary": StorageOption(lambda: {"multivector_quantization": "binary"}),
    "pool3+int8": StorageOption(lambda: {"token_pooling": 3, "multivector_quantization": "int8"}),
    "muvera": StorageOption(_muvera, modes=("muvera",)),
    # uint8 token vectors without float originals (connectors/token_codec.py), float16 dense.
    "uint8": StorageOption(lambda: {"multivector_dtype": "uint8"}),
    "dense16": StorageOption(lambda: {"dense_dtype": "float16"}),
    "uint8+dense16": StorageOption(
        lambda: {"multivector_dtype": "uint8", "dense_dtype": "float16"}
    ),
    "pool3+uint8+dense16": StorageOption(lambda: {**_small(3)}),
    "pool4+uint8+dense16": StorageOption(lambda: {**_small(4)}),
    "compact": StorageOption(lambda: dict(_preset("compact"))),  # ingest --storage compact
    # = pool3+uint8+dense16 + a binary copy of the dense vector for the dense stage
    "balanced": StorageOption(lambda: dict(_preset("balanced"))),
    "pool4+uint8+dense16+muvera2k": StorageOption(
        lambda: {**_small(4), "muvera": _SMALL_MUVERA}, modes=("muvera",)
    ),
}


@dataclass(frozen=True)
class BenchBackend:
    create: Callable[[Path, CollectionSpec], VectorStore]
    open: Callable[[Path], VectorStore]
    #: Modes timed besides an option's own (exhaustive "multivector" gets fewer queries).
    modes: tuple[str, ...]


def _edge_create(folder: Path, spec: CollectionSpec) -> VectorStore:
    from connectors.qdrant import QdrantStore

    return QdrantStore.create("bench", path=folder, spec=spec)


def _edge_open(folder: Path) -> VectorStore:
    from connectors.qdrant import QdrantStore

    return QdrantStore.open("bench", path=folder)


def _lite_create(folder: Path, spec: CollectionSpec) -> VectorStore:
    from connectors.milvus import MilvusStore

    folder.mkdir(parents=True, exist_ok=True)
    return MilvusStore.create("bench", uri=str(folder / "bench.db"), spec=spec)


def _lite_open(folder: Path) -> VectorStore:
    from connectors.milvus import MilvusStore

    return MilvusStore.open("bench", uri=str(folder / "bench.db"))


BACKENDS = {
    "qdrant-edge": BenchBackend(
        _edge_create, _edge_open, ("dense", "hybrid", "fusion", "multivector")
    ),
    # Exhaustive MaxSim streams every token row out of Milvus Lite: left out by default.
    "milvus-lite": BenchBackend(_lite_create, _lite_open, ("dense", "hybrid", "fusion")),
}


# -- the corpus, generated once ----------------------------------------------------------------
class Cached:
    """Token vectors (float16 memmap), dense vectors, queries and exact scores in a folder."""

    def __init__(self, corpus: TopicCorpus, queries: int, folder: Path) -> None:
        self.corpus = corpus
        self.folder = folder
        shape = (corpus.n, corpus.tokens, 128)
        done = folder / "done.json"
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            targets, qdense, qtokens = corpus.queries(queries)
            tokens = np.lib.format.open_memmap(
                folder / "tokens.npy", mode="w+", dtype=np.float16, shape=shape
            )
            dense = np.empty((corpus.n, corpus.dim), dtype=np.float32)
            scores = np.empty((queries, corpus.n), dtype=np.float32)
            for ids, d, t in corpus.batches():
                tokens[ids[0] : ids[-1] + 1] = t
                dense[ids[0] : ids[-1] + 1] = d
                # exact scores on the float32 originals, while the batch is at hand
                scores[:, ids[0] : ids[-1] + 1] = maxsim_block(qtokens, t)
            tokens.flush()
            del tokens
            np.save(folder / "dense.npy", dense)
            logger.info(
                "generated %d documents and the exact MaxSim of %d queries in %.0fs",
                corpus.n,
                queries,
                time.perf_counter() - start,
            )
            np.savez(folder / "queries.npz", targets=targets, dense=qdense, tokens=qtokens)
            np.save(folder / "exact.npy", scores)
            done.write_text(json.dumps({"n": corpus.n, "queries": queries}))
        self.tokens = np.load(folder / "tokens.npy", mmap_mode="r")
        self.dense = np.load(folder / "dense.npy", mmap_mode="r")
        q = np.load(folder / "queries.npz")
        self.targets, self.qdense, self.qtokens = q["targets"], q["dense"], q["tokens"]
        self.exact = np.load(folder / "exact.npy")
        ids = np.arange(corpus.n)
        self.buckets = self.targets % BUCKETS
        masks = ids[None, :] % BUCKETS == self.buckets[:, None]
        self.truth = top_k(self.exact, K)
        self.filtered_truth = top_k(self.exact, K, masks)

    def records(self, batch: int = 250) -> Any:
        for s in range(0, self.corpus.n, batch):
            e = min(self.corpus.n, s + batch)
            tokens = np.asarray(self.tokens[s:e], dtype=np.float32)
            dense = np.asarray(self.dense[s:e])
            yield [
                Record(i, dense[i - s], tokens[i - s], {"bucket": i % BUCKETS}) for i in range(s, e)
            ]

    def query(self, i: int) -> Query:
        return Query(dense=self.qdense[i], multivector=self.qtokens[i])


# -- one run ------------------------------------------------------------------------------
def folder_bytes(path: Path) -> int:
    """Allocated blocks, as du counts them (qdrant preallocates sparse files)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def recall(hits: list[Any], truth: list[int]) -> float:
    """Share of the exact top 10 found (of the whole subset when a filter leaves fewer)."""
    return len({h.id for h in hits[:K]} & set(truth)) / max(1, min(K, len(truth)))


def run(
    backend: str, option: str, data: Cached, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    row: dict[str, Any] = {"backend": backend, "option": option, "docs": data.corpus.n}
    opt, bb = OPTIONS[option], BACKENDS[backend]
    try:
        fields = opt.fields()
    except ImportError as e:
        return {**row, "status": f"not on this checkout ({e})"}
    unknown = sorted(set(fields) - set(CollectionSpec.__dataclass_fields__))
    if unknown:
        return {**row, "status": f"not on this checkout (no spec field {', '.join(unknown)})"}
    spec = CollectionSpec(
        dim=data.corpus.dim, prefetch_dims=(128,), payload_indexes={"bucket": "integer"}, **fields
    )
    folder = workdir / f"{backend}-{option}-{data.corpus.n}"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        store = bb.create(folder, spec)
    except ConnectorError as e:
        return {**row, "status": f"refused: {e}"}
    start = time.perf_counter()
    done = 0
    for batch in data.records():
        store.upsert(batch)
        done += len(batch)
        if done % 10_000 == 0:  # a long run shows where it is
            logger.info("%d documents in %.0fs", done, time.perf_counter() - start)
    store.close()
    seconds = time.perf_counter() - start
    row.update(insert_docs_per_s=round(data.corpus.n / seconds, 1), insert_s=round(seconds, 1))
    row["bytes_per_doc"] = round(folder_bytes(folder) / data.corpus.n)
    store = bb.open(folder)
    try:
        row["modes"] = time_modes(store, data, (*bb.modes, *opt.modes), args)
    finally:
        store.close()
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return {**row, "status": "ok"}


def time_modes(
    store: VectorStore, data: Cached, modes: tuple[str, ...], args: argparse.Namespace
) -> dict[str, Any]:
    """Latency and recall@10 per mode, each query in every mode in turn (a busy moment on
    the shared machine slows every mode alike); "filtered" is hybrid on ~1% of the corpus."""
    kwargs = {"limit": K, "prefetch_limit": args.prefetch_limit}
    fast = [m for m in modes if m != "multivector"]
    n = min(len(data.targets), args.timed_queries or len(data.targets))
    times: dict[str, list[float]] = {m: [] for m in (*modes, "filtered")}
    recalls: dict[str, list[float]] = {m: [] for m in times}

    def timed(mode: str, i: int, **extra: Any) -> None:
        name = "filtered" if extra else mode
        t0 = time.perf_counter()
        hits = store.search(data.query(i), mode=mode, **kwargs, **extra)
        times[name].append((time.perf_counter() - t0) * 1000)
        truth = data.filtered_truth[i] if extra else data.truth[i]
        recalls[name].append(recall(hits, truth))

    for i in range(min(args.warmup, n)):  # not timed (pages, caches, lazy loads)
        for mode in fast:
            store.search(data.query(i), mode=mode, **kwargs)
    for i in range(n):
        for mode in fast:
            timed(mode, i)
        timed("hybrid", i, filter=Eq("bucket", int(data.buckets[i])))
    if "multivector" in modes:
        for i in range(min(args.exhaustive_queries, n)):
            timed("multivector", i)
    out = {}
    for mode, values in times.items():
        if values:
            out[mode] = {
                "p50_ms": round(statistics.median(values), 1),
                "p95_ms": round(float(np.percentile(values, 95)), 1),
                "recall10": round(float(np.mean(recalls[mode])), 3),
                "queries": len(values),
            }
            logger.info("%s: %s", mode, out[mode])
    return out


# -- report --------------------------------------------------------------------------------
COLUMNS = ("dense", "hybrid", "fusion", "multivector", "muvera", "filtered")


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| backend | option | docs | bytes/doc | vs float16 | insert docs/s | "
        + " | ".join(f"{c} p50/p95 ms, R@10" for c in COLUMNS)
        + " |"
    )
    lines = [head, "|" + "---|" * (6 + len(COLUMNS))]
    base = {
        (r["backend"], r["docs"]): r["bytes_per_doc"]
        for r in rows
        if r.get("option") == "float16" and r.get("status") == "ok"
    }
    for r in rows:
        if r.get("status") != "ok":
            lines.append(
                f"| {r['backend']} | {r['option']} | {r['docs']} | {r['status']} |"
                + " |" * (2 + len(COLUMNS))
            )
            continue
        ref = base.get((r["backend"], r["docs"]))
        ratio = f"{r['bytes_per_doc'] / ref:.2f}" if ref else "-"
        cells = []
        for c in COLUMNS:
            m = r["modes"].get(c)
            cells.append(f"{m['p50_ms']} / {m['p95_ms']}, {m['recall10']:.3f}" if m else "-")
        lines.append(
            f"| {r['backend']} | {r['option']} | {r['docs']} | {r['bytes_per_doc']:,} | {ratio} "
            f"| {r['insert_docs_per_s']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    p.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    p.add_argument("--queries", type=int, default=40)
    p.add_argument(
        "--timed-queries", type=int, help="time only the first N queries (slow backends)"
    )
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--exhaustive-queries", type=int, default=5)
    p.add_argument("--prefetch-limit", type=int, default=100)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/jvdb-multivector-scale"))
    p.add_argument("--keep", action="store_true", help="keep each collection's folder")
    p.add_argument("--json", type=Path, help="append one JSON line per run")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("connectors").setLevel(logging.WARNING)
    corpus = TopicCorpus(n=args.docs, tokens=args.tokens, dim=args.dim)
    folder = args.workdir / f"corpus-{args.docs}x{args.tokens}-q{args.queries}"
    data = Cached(corpus, args.queries, folder)
    rows = []
    for backend in args.backends:
        for option in args.options:
            logger.info("%s / %s / %d docs ...", backend, option, args.docs)
            row = run(backend, option, data, args, args.workdir)
            logger.info("%s", row)
            rows.append(row)
            if args.json:
                with args.json.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

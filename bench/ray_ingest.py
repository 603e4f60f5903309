"""Ray ingest vs the local pipeline on the same corpus, in one run (not a test).

    python bench/ray_ingest.py                         # tiny model, CPU: local, Ray 1 and 2 workers
    python bench/ray_ingest.py --texts 400 --pdf-pages 16 --gpu-workers 1   # a GPU machine

Runs, each into a fresh qdrant-edge store (the driver writes, as for any embedded store):
the local pipeline (``jina_vdb.ingest``), then ``ray_ingest`` with 1 and 2 CPU encoder
actors (and ``--gpu-workers`` GPU actors when asked) on one local Ray started here. Items/s
count from the first file listed to the last record written, so Ray's fixed costs (worker
processes, one model load per actor) are inside; "listing" and "encoding" are the Ray
job's two passes.

Ray's per-item overhead is measured apart, on the path an item's data takes through the
object store and back: the loaded content pickled by a load task, an Arrow block, the object
store, unpickled by the encoder actor; its vectors pickled, an Arrow block, the object store,
unpickled by the driver. Once with this corpus's real rows (tiny model), once with the real
model's shapes (2048-d dense; a ``--chunk-tokens`` text chunk's and a 150-DPI letter page's
token matrices, the rendered page itself), set against the real model's GPU encode time per
item from the README's H200 figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from connectors.stores import open_store  # noqa: E402
from jina_vdb.cli.support import build_spec, tiny_checkpoint  # noqa: E402
from jina_vdb.distributed import RayOptions, ray_ingest, stages  # noqa: E402
from jina_vdb.ingest import IngestOptions, ingest  # noqa: E402
from jina_vdb.sources import SourceOptions, iter_items  # noqa: E402
from jina_vdb.sources.samples import minimal_pdf  # noqa: E402

#: README, bench/embed_throughput.py on one H200 in bf16 (the faster text figure: a shorter
#: encode time makes the overhead's share larger, so the estimate errs high).
GPU_TOKENS_PER_S = 54_300
GPU_PAGES_PER_S = 14.9
#: Token vectors of a page at the model's default max_pixels (602112 / 28^2) + its template.
PAGE_TOKENS = 768 + 20
LETTER_150_DPI = (1275, 1650)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=None, help="checkpoint folder (default: the tiny one)")
    p.add_argument("--texts", type=int, default=120, help="text files (~3 chunks each)")
    p.add_argument("--pdf-pages", type=int, default=8, help="PDF pages (4 per PDF), + text")
    p.add_argument("--chunk-tokens", type=int, default=512)
    p.add_argument("--ray-cpus", type=int, default=4, help="logical CPUs of the local Ray")
    p.add_argument("--gpu-workers", type=int, default=0, help="also run with N GPU actors")
    p.add_argument("--repeat", type=int, default=20, help="overhead measurement repeats")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per encoder: the local pipeline's, and each CPU actor's CPUs",
    )
    return p.parse_args()


def write_corpus(root: Path, texts: int, pages: int) -> None:
    rng = np.random.default_rng(0)
    (root / "texts").mkdir(parents=True)
    for i in range(texts):
        words = " ".join(f"w{i}_{j}_{rng.integers(1000)}" for j in range(600))
        (root / "texts" / f"doc_{i:04d}.txt").write_text(words, encoding="utf-8")
    for k in range(0, pages, 4):
        doc = [[f"Report {k} page {p}: revenue and outlook."] for p in range(min(4, pages - k))]
        (root / f"report_{k:03d}.pdf").write_bytes(minimal_pdf(doc))


def run_local(corpus: Path, store_dir: Path, encoder: Any, sources: SourceOptions) -> Any:
    with open_store(f"qdrant:{store_dir}", "docs", spec=spec_of(encoder)) as store:
        items = iter_items([corpus], tokenizer=encoder.tokenizer, options=sources)
        return ingest(items, encoder, store, OPTS)


def run_ray(
    corpus: Path, store_dir: Path, model: str, encoder: Any, sources: SourceOptions, ropts: Any
) -> Any:
    with open_store(f"qdrant:{store_dir}", "docs", spec=spec_of(encoder)) as store:
        return ray_ingest([corpus], model, store, OPTS, sources=sources, ray_options=ropts)


def spec_of(encoder: Any) -> Any:
    return build_spec(encoder, dim=None, prefetch_dims=None, multivector=True)[0]


def round_trip_s(
    contents: list[Any], vectors: list[tuple[Any, Any]], repeat: int
) -> tuple[float, float]:
    """(wall, CPU) seconds per item for the object-store path of a batch (module docstring)."""
    import pyarrow as pa
    import ray

    def through_store(cells: list[bytes]) -> list[Any]:
        block = pa.table({"c": pa.array(cells, type=pa.binary())})
        back = ray.get(ray.put(block))  # plasma: written once, mapped by the reader
        return [stages.loads(x) for x in back.column("c").to_pylist()]

    # The fastest repeat, in wall time and in this process's CPU time: on a loaded machine
    # the CPU time is what the path costs when it has a core to itself.
    wall = cpu = float("inf")
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        through_store([stages.dumps(c) for c in contents])  # load task -> encoder actor
        through_store([stages.dumps(v) for v in vectors])  # encoder actor -> driver
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    return wall / len(contents), cpu / len(contents)


def real_shapes(chunk_tokens: int, fit: Any) -> dict[str, tuple[list[Any], list[Any], float]]:
    """(contents, vectors, GPU encode s/item) of 64 items of the real model's shapes.

    The page crosses the object store as the load task ships it, shrunk by ``fit`` (the
    model's default pixel budget), and, for comparison, as rendered.
    """
    from PIL import Image

    rng = np.random.default_rng(0)
    dense = rng.standard_normal(2048).astype(np.float32)
    text_tokens = rng.standard_normal((chunk_tokens, 128)).astype(np.float32)
    page_tokens = rng.standard_normal((PAGE_TOKENS, 128)).astype(np.float32)
    page = Image.fromarray(rng.integers(0, 255, (*LETTER_150_DPI[::-1], 3), dtype=np.uint8))
    text = "x " * (chunk_tokens * 2)
    return {
        f"text chunk ({chunk_tokens} tokens)": (
            [text] * 64,
            [(dense, text_tokens)] * 64,
            chunk_tokens / GPU_TOKENS_PER_S,
        ),
        "PDF page (150 DPI letter, shrunk to the budget)": (
            [fit(page)] * 16,
            [(dense, page_tokens)] * 16,
            1 / GPU_PAGES_PER_S,
        ),
        "PDF page (150 DPI letter, as rendered)": (
            [page] * 16,
            [(dense, page_tokens)] * 16,
            1 / GPU_PAGES_PER_S,
        ),
    }


def corpus_rows(corpus: Path, encoder: Any, sources: SourceOptions) -> tuple[list[Any], list[Any]]:
    items = list(iter_items([corpus], tokenizer=encoder.tokenizer, options=sources))
    items = [i for i in items if hasattr(i, "load")][:64]
    contents = [i.load() for i in items]
    texts = [c for i, c in zip(items, contents, strict=True) if isinstance(c, str)]
    out = encoder.encode_text(texts, task="retrieval", show_progress=False)
    vectors = list(zip(out.dense, out.multivectors, strict=True))
    return texts, vectors


OPTS = IngestOptions(progress=False)


def main() -> None:
    args = parse_args()
    sources = SourceOptions(pdf_dpi=150, chunk_tokens=args.chunk_tokens, chunk_overlap=0)
    logging.basicConfig(level=logging.WARNING)
    import torch

    from embedder import JinaV4Embedder, describe_checkpoint

    # The same torch threads per encoder here and in each actor (Ray gives an actor
    # OMP_NUM_THREADS = its CPUs): oversubscribed OpenMP threads slow both unevenly.
    torch.set_num_threads(args.threads)
    model = args.model or str(tiny_checkpoint())
    encoder = JinaV4Embedder.from_pretrained(model, device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    write_corpus(tmp / "corpus", args.texts, args.pdf_pages)
    print(
        f"corpus: {args.texts} text files, {args.pdf_pages} PDF pages; model {model}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start"
    )

    import ray

    os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # workers: this checkout
    ray.init(
        num_cpus=args.ray_cpus,
        include_dashboard=False,
        object_store_memory=512 * 2**20,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    rows = []
    local = run_local(tmp / "corpus", tmp / "local", encoder, sources)
    rows.append((f"local pipeline ({args.threads} thread(s))", local))
    t = args.threads
    configs = [
        (f"Ray, {n} CPU worker(s) ({t} thread(s) each)", RayOptions(workers=n, cpus_per_worker=t))
        for n in (1, 2)
    ]
    if args.gpu_workers:
        configs.append(
            (f"Ray, {args.gpu_workers} GPU workers", RayOptions(workers=args.gpu_workers))
        )
    for n, (name, ropts) in enumerate(configs):
        store_dir = tmp / f"ray{n}"
        rows.append((name, run_ray(tmp / "corpus", store_dir, model, encoder, sources, ropts)))

    print("\n| run | items | s | items/s | vs local | listing s | encoding s | encode busy s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in rows:
        clocks = s.stage_seconds
        print(
            f"| {name} | {s.added} | {s.seconds:.1f} | {s.added / s.seconds:.1f} | "
            f"{(s.added / s.seconds) / (local.added / local.seconds):.0%} | "
            f"{clocks.get('listing', 0):.1f} | {clocks.get('encoding', 0):.1f} | "
            f"{clocks['encode']:.1f} |"
        )

    texts, vectors = corpus_rows(tmp / "corpus", encoder, sources)
    wall, cpu = round_trip_s(texts, vectors, args.repeat)
    encode = local.stage_seconds["encode"] / max(local.added, 1)
    print("\n| items | object-store path ms/item: wall (CPU) | encode ms/item | overhead share |")
    print("|---|---:|---:|---:|")
    print(
        f"| this corpus, tiny model on CPU | {wall * 1e3:.3f} ({cpu * 1e3:.3f}) | "
        f"{encode * 1e3:.2f} (measured) | {wall / encode:.1%} ({cpu / encode:.1%}) |"
    )
    fit = describe_checkpoint(model).image_fit()  # the real model's budget: 602112 pixels
    for name, (contents, vecs, gpu_s) in real_shapes(args.chunk_tokens, fit).items():
        wall, cpu = round_trip_s(contents, vecs, max(2, args.repeat // 4))
        print(
            f"| {name}, real model's shapes | {wall * 1e3:.3f} ({cpu * 1e3:.3f}) | "
            f"{gpu_s * 1e3:.1f} (H200 estimate) | {wall / gpu_s:.1%} ({cpu / gpu_s:.1%}) |"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    ray.shutdown()


if __name__ == "__main__":
    main()

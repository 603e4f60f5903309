"""Matryoshka funnel: the smallest prefix of the dense vector finds candidates, the full
vector narrows them, MaxSim over the token vectors ranks the rest. Compared here with the
exact (slow) MaxSim over every document.

    python examples/matryoshka_funnel.py --model tiny
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from connectors import Query
from connectors.qdrant import QdrantStore
from embedder import JinaV4Embedder, make_tiny_checkpoint
from jina_vdb.ingest import ingest
from jina_vdb.sources import iter_items
from jina_vdb.sources.samples import write_sample_corpus


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="jinaai/jina-embeddings-v4", help="hub id, local folder, or 'tiny'"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="default: a new temporary folder"
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jina-vdb-example-"))

    checkpoint = (
        make_tiny_checkpoint(workdir / "tiny-model") if args.model == "tiny" else args.model
    )
    model = JinaV4Embedder.from_pretrained(checkpoint)
    write_sample_corpus(workdir / "docs")

    dims = sorted(model.matryoshka_dims)  # real model: 128 -> 2048
    print(f"dense {dims[-1]}-d, funnel prefix {dims[0]}-d, token vectors 128-d")
    with QdrantStore.create(
        "funnel", path=workdir / "qdrant", dim=dims[-1], prefetch_dims=dims[:1]
    ) as store:
        print(
            ingest(iter_items([workdir / "docs"], tokenizer=model.tokenizer), model, store).lines()[
                0
            ]
        )

        batch = model.encode_text(
            ["Berlin, capital of Germany"], task="retrieval", prompt_name="query"
        )
        query = Query.from_batch(batch)
        for mode in ("funnel", "multivector"):
            started = time.perf_counter()
            hits = store.search(query, mode=mode, limit=3, prefetch_limit=8)
            ms = (time.perf_counter() - started) * 1000
            ranked = ", ".join(f"{Path(h.payload['source']).name} ({h.score:.2f})" for h in hits)
            print(f"{mode:<12} {ms:6.1f} ms  {ranked}")


if __name__ == "__main__":
    main()

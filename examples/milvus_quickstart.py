"""Milvus quickstart: the same one-line collection, ingest and hybrid query on Milvus Lite
(a local file; pass a server URI such as http://localhost:19530 for Milvus 2.6).

    python examples/milvus_quickstart.py --model tiny      # offline, tiny random model
    python examples/milvus_quickstart.py                   # jinaai/jina-embeddings-v4 from the hub
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from connectors import Query
from connectors.milvus import MilvusStore
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
        "--uri", default=None, help="Milvus URI (default: WORKDIR/milvus.db, Milvus Lite)"
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
    write_sample_corpus(workdir / "docs")  # texts in 6 languages, a chart, a table, a PDF

    dims = sorted(model.matryoshka_dims)  # (128, ..., 2048) for the real model
    uri = args.uri or str(workdir / "milvus.db")
    with MilvusStore.create("docs", uri=uri, dim=dims[-1], prefetch_dims=dims[:1]) as store:
        summary = ingest(iter_items([workdir / "docs"], tokenizer=model.tokenizer), model, store)
        print(summary.lines()[0])

        query = model.encode_text(
            ["What is the capital of Germany?"], task="retrieval", prompt_name="query"
        )
        for hit in store.search(Query.from_batch(query), mode="hybrid", limit=3):
            print(f"{hit.score:8.3f}  {hit.payload['kind']:<8}  {Path(hit.payload['source']).name}")


if __name__ == "__main__":
    main()

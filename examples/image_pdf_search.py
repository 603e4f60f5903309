"""Image and PDF page search: pages are embedded as images (plus their text layer), then
found by a text query restricted to visual records, and by an image query.

    python examples/image_pdf_search.py --model tiny
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from connectors import AnyOf, Query
from connectors.qdrant import QdrantStore
from embedder import JinaV4Embedder, make_tiny_checkpoint
from jina_vdb.ingest import ingest
from jina_vdb.sources import SourceOptions, iter_items
from jina_vdb.sources.samples import write_sample_corpus


def show(title: str, hits: list) -> None:
    print(title)
    for hit in hits:
        name = Path(hit.payload["source"]).name
        page = f" page {hit.payload['page']}" if "page" in hit.payload else ""
        print(f"  {hit.score:8.3f}  {hit.payload['kind']:<8}  {name}{page}")


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
    parser.add_argument("--dpi", type=float, default=150, help="PDF render resolution")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jina-vdb-example-"))

    checkpoint = (
        make_tiny_checkpoint(workdir / "tiny-model") if args.model == "tiny" else args.model
    )
    model = JinaV4Embedder.from_pretrained(checkpoint)
    write_sample_corpus(workdir / "docs")
    visual = [
        workdir / "docs" / "images",
        workdir / "docs" / "pdf",
    ]  # a chart, a table, a 2-page PDF

    dims = sorted(model.matryoshka_dims)
    with QdrantStore.create(
        "pages", path=workdir / "qdrant", dim=dims[-1], prefetch_dims=dims[:1]
    ) as store:
        items = iter_items(
            visual, tokenizer=model.tokenizer, options=SourceOptions(pdf_dpi=args.dpi)
        )
        print(ingest(items, model, store).lines()[0])

        query = model.encode_text(
            ["quarterly revenue growth"], task="retrieval", prompt_name="query"
        )
        only_visual = AnyOf("kind", ("image", "pdf_page"))
        show(
            "text -> pages and images:",
            store.search(Query.from_batch(query), limit=3, filter=only_visual),
        )

        chart = model.encode_image(
            [workdir / "docs" / "images" / "revenue_chart.png"], task="retrieval"
        )
        show("image -> most similar records:", store.search(Query.from_batch(chart), limit=3))


if __name__ == "__main__":
    main()

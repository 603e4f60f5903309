"""``jina-vdb demo``: sample corpus -> ingest -> a few hybrid queries, printed as ranked lists."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from connectors.query import Query, SearchMode
from connectors.stores import open_store
from jina_vdb.ingest import IngestOptions, ingest
from jina_vdb.model_record import check_model, model_record, with_model

from . import support as cs
from .output import print_hits

#: Queries in several languages; each has an obvious target in the sample corpus.
DEMO_QUERIES = (
    "What is the capital of Germany?",
    "Quel est le prix d'un billet de train pour Lyon ?",
    "bar chart of quarterly revenue",
    "receipt with the total price of coffee and croissants",
    "日本で一番高い山は？",
)


def run_demo(
    *,
    model: str,
    workdir: Path,
    store: str,
    collection: str,
    limit: int = 3,
    device: str | None = None,
) -> None:
    """Write the sample corpus to ``workdir/corpus``, ingest it, run ``DEMO_QUERIES``."""
    from jina_vdb._deps import require
    from jina_vdb.sources import SourceOptions, iter_items

    require("PIL", "for the demo's sample corpus")
    from jina_vdb.sources.samples import write_sample_corpus

    started = time.perf_counter()
    corpus = workdir / "corpus"
    files = write_sample_corpus(corpus)
    kinds = "texts in 6 languages, code, a chart, a table, a PDF"
    typer.echo(f"sample corpus: {len(files)} files in {corpus} ({kinds})")
    encoder = cs.load_encoder(model, device=device)
    spec, _ = cs.build_spec(encoder, dim=None, prefetch_dims=None, multivector=True)
    record = model_record(encoder, ("retrieval", "code"))  # task "auto"
    with open_store(store, collection, spec=with_model(spec, record)) as db:
        check_model(db, record, action="demo")
        items = iter_items(
            [corpus], tokenizer=encoder.tokenizer, options=SourceOptions(task="auto", pdf_dpi=100)
        )
        summary = ingest(items, encoder, db, IngestOptions(progress=False))
        typer.echo(f"ingest into {store} (collection {collection!r}): " + summary.lines()[0])
        for line in summary.lines()[1:]:
            typer.echo(line)
        for text in DEMO_QUERIES:
            batch = encoder.encode_text([text], task="retrieval", prompt_name="query")
            hits = db.search(Query.from_batch(batch), mode=SearchMode.HYBRID, limit=limit)
            typer.echo(f"\nquery: {text}")
            tokens = len(batch.multivectors[0]) if batch.multivectors is not None else None
            print_hits(hits, as_json=False, kind="maxsim", query_tokens=tokens)
    if model == cs.TINY:
        typer.echo("\n(--model tiny has random weights: the ranking is arbitrary)")
    again = f'jina-vdb search "revenue" --store {store} --collection {collection}'
    again += " --model tiny" if model == cs.TINY else ""
    typer.echo(f"\ndone in {time.perf_counter() - started:.1f}s. Try: {again}")

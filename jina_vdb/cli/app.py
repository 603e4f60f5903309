"""The ``jina-vdb`` command line: ingest, search, info, demo, eval, serve.

This package is the one place that wires an encoder (``embedder``, imported lazily) to a
store. Errors are one line on stderr with exit code 1; ``--verbose`` adds the traceback and
debug logs. The typer ``app`` and the small commands live here; ingest (``ingest_cmd``),
search (``search_cmd``) and serve (``serve_cmd``) in their own modules, registered on ``app``
below, with the option declarations they share in ``options``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from connectors.stores import collection_info, parse_store_url
from embedder.options import Task

from . import support as cs
from .ingest_cmd import ingest
from .options import (
    AllowMismatchOpt,
    CollectionOpt,
    DeviceOpt,
    ModelOpt,
    PrefetchLimitOpt,
    StoreOpt,
    TaskOpt,
    VerboseOpt,
)
from .search_cmd import search
from .serve_cmd import serve

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="jina-vdb",
    help="jina-embeddings-v4 (dense + multi-vector) into Qdrant or Milvus, hybrid search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The big commands live in their own modules; registered here, in --help's order.
app.command()(ingest)
app.command()(search)


@app.command()
def info(
    store: StoreOpt,
    collection: CollectionOpt = "docs",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show a collection's spec, counts, layout and size."""
    cs.setup_logging(verbose, store)
    with cs.cli_errors(verbose):
        where = parse_store_url(store)
        with cs.store_errors(store, collection):
            data = collection_info(where, collection)  # vectors not loaded where avoidable
        if not where.server:
            data.update(cs.disk_bytes(where.backend, where.location, collection))
        if as_json:
            typer.echo(json.dumps(data, indent=2, default=str))
        else:
            cs.print_mapping({"store": store, **data})


@app.command()
def demo(
    model: ModelOpt = cs.DEFAULT_MODEL,
    workdir: Annotated[Path, typer.Option(help="Where the sample corpus and the store go.")] = Path(
        "jina_vdb_demo"
    ),
    store: Annotated[
        str | None, typer.Option("--store", "-s", help="Default: qdrant:WORKDIR/qdrant.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Results per query.")] = 3,
    device: DeviceOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Generate a small multilingual corpus, ingest it into an embedded store, query it."""
    from .demo import run_demo

    cs.setup_logging(verbose, store)
    with cs.cli_errors(verbose):
        url = store or f"qdrant:{workdir / 'qdrant'}"
        suffix = "tiny" if model == cs.TINY else hashlib.sha256(model.encode()).hexdigest()[:8]
        run_demo(
            model=model,
            workdir=workdir,
            store=url,
            collection=f"demo_{suffix}",
            limit=limit,
            device=device,
        )


@app.command(name="eval")
def eval_(
    data: Annotated[
        Path,
        typer.Argument(help="A BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv."),
    ],
    store: StoreOpt,
    collection: Annotated[
        str | None,
        typer.Option("--collection", "-c", help="Collection name (default: eval_<folder name>)."),
    ] = None,
    split: Annotated[str, typer.Option(help="Which qrels/SPLIT.tsv judges the queries.")] = "test",
    modes: Annotated[
        str | None,
        typer.Option(help="Comma-separated search modes (default: all the collection can run)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate only the first N judged queries.")
    ] = None,
    depth: Annotated[int, typer.Option(help="Results retrieved per query.")] = 100,
    prefetch_limit: PrefetchLimitOpt = 100,
    ingest: Annotated[
        bool,
        typer.Option(help="Ingest the corpus first (documents already stored are skipped)."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    run_file: Annotated[
        Path | None,
        typer.Option(help="Write every mode's rankings here (TREC run format, for trec_eval)."),
    ] = None,
    model: ModelOpt = cs.DEFAULT_MODEL,
    task: TaskOpt = Task.RETRIEVAL.value,
    device: DeviceOpt = None,
    allow_model_mismatch: AllowMismatchOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Retrieval quality (nDCG@10, recall@10/100, MRR@10) and latency of every search mode."""
    from .evaluate import EvalOptions, default_collection, print_report, run_eval

    cs.setup_logging(verbose, store)
    with cs.cli_errors(verbose):
        opts = EvalOptions(
            model=model,
            task=task,
            modes=None if modes is None else tuple(m for m in modes.split(",") if m.strip()),
            limit=limit,
            depth=depth,
            prefetch_limit=prefetch_limit,
            ingest=ingest,
            device=device,
            allow_model_mismatch=allow_model_mismatch,
            progress=not quiet and cs.stderr_is_tty(),
            run_file=run_file,
        )
        name = collection or default_collection(data)
        report = run_eval(data, store, name, split, opts)
        print_report(report, as_json=as_json, tiny=model == cs.TINY)


app.command()(serve)


def main() -> Any:
    """Run the typer app (``jina_vdb.cli.main`` checks the ``[cli]`` extra first)."""
    return app()

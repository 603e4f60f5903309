"""``jina-vdb eval``: a BEIR-layout dataset -> (ingest) -> every search mode -> a table.

The dataset is read and checked whole before the model loads or anything is written. The
corpus is ingested through the ordinary pipeline (re-running skips what is stored), with
each document's BEIR ``_id`` as its record id, so a hit maps back to the qrels.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from connectors.stores import open_or_create, open_store, parse_store_url
from jina_vdb.evaluation.beir import BeirDataset, load_dataset
from jina_vdb.evaluation.metrics import DEFAULT_METRICS
from jina_vdb.evaluation.runner import (
    EvalReport,
    choose_modes,
    corpus_items,
    evaluate_collection,
    parse_modes,
)
from jina_vdb.ingest_types import IngestOptions
from jina_vdb.model_record import check_model, model_record, with_model

from . import support as cs


@dataclass(frozen=True)
class EvalOptions:
    """What the command line asked for, besides where the data and the store are."""

    model: str
    task: str = "retrieval"
    modes: tuple[str, ...] | None = None
    limit: int | None = None  # first N judged queries
    depth: int = 100
    prefetch_limit: int = 100
    ingest: bool = True
    device: str | None = None
    allow_model_mismatch: bool = False
    progress: bool = False
    run_file: Path | None = None  # every mode's rankings, TREC run format


def default_collection(data: Path) -> str:
    """``eval_<folder name>`` with characters every backend accepts."""
    name = "".join(c if c.isalnum() and c.isascii() else "_" for c in data.resolve().name)
    return f"eval_{name.strip('_') or 'data'}"


def run_eval(data: Path, store: str, collection: str, split: str, opts: EvalOptions) -> EvalReport:
    """Load and check the dataset, open (or create and fill) the collection, evaluate."""
    _check_options(opts)
    dataset = load_dataset(data, split).limited(opts.limit)
    where = parse_store_url(store)
    with contextlib.ExitStack() as stack:
        # --no-ingest: a missing collection fails before the model loads.
        db = None if opts.ingest else stack.enter_context(_open_existing(where, collection))
        encoder = cs.load_encoder(opts.model, device=opts.device)
        record = model_record(encoder, [opts.task])
        if db is None:
            db = stack.enter_context(_open_or_create(where, collection, encoder, record))
        check_model(db, record, action="eval", allow_mismatch=opts.allow_model_mismatch)
        modes, skipped = choose_modes(db.spec, opts.modes)
        if opts.ingest:
            _ingest(db, encoder, dataset, opts)
        results, encode_ms = evaluate_collection(
            db,
            encoder,
            dataset,
            modes,
            depth=opts.depth,
            prefetch_limit=opts.prefetch_limit,
            task=opts.task,
        )
    report = EvalReport(
        dataset=str(data),
        split=split,
        store=store,
        collection=collection,
        documents=len(dataset.corpus_ids),
        queries=len(dataset.queries),
        unjudged_queries=dataset.unjudged_queries,
        depth=opts.depth,
        prefetch_limit=opts.prefetch_limit,
        encode_ms_per_query=encode_ms,
        results=results,
        skipped_modes=skipped,
    )
    if opts.run_file is not None:
        opts.run_file.write_text("".join(line + "\n" for line in report.trec_run_lines()))
    return report


def _check_options(opts: EvalOptions) -> None:
    """Options that are wrong whatever the data: refused before anything is read or loaded."""
    if opts.limit is not None and opts.limit <= 0:
        raise ValueError(f"--limit must be a positive number of queries, got {opts.limit}")
    deepest = max(m.k for m in DEFAULT_METRICS)
    if opts.depth < deepest:
        raise ValueError(f"--depth {opts.depth} is below the largest metric cutoff ({deepest})")
    if opts.run_file is not None and not opts.run_file.parent.is_dir():
        raise ValueError(
            f"--run-file {opts.run_file}: folder {opts.run_file.parent} does not exist"
        )
    if opts.modes is not None:
        parse_modes(opts.modes)  # a typo fails before the model loads


def _open_existing(where: Any, collection: str) -> Any:
    from connectors.errors import CollectionNotFoundError

    try:
        return open_store(where, collection)
    except CollectionNotFoundError:
        raise cs.CliError(
            f"no collection {collection!r} in {where}: leave out --no-ingest to create it "
            "from the corpus, or name another --collection"
        ) from None


def _open_or_create(
    where: Any, collection: str, encoder: Any, record: dict[str, Any] | None
) -> Any:
    """The collection as it is; a missing one is created as ``jina-vdb ingest`` would."""
    from jina_vdb.sizing import milvus_max_tokens

    spec, _ = cs.build_spec(encoder, dim=None, prefetch_dims=None, multivector=True)
    max_tokens = None
    if where.backend == "milvus":  # documents are not chunked: the encoder's cut-off bounds them
        length = IngestOptions().max_length
        max_tokens = milvus_max_tokens(
            encoder, chunk_tokens=length, max_pixels=None, max_length=length
        )
    with cs.store_errors(str(where), collection):
        return open_or_create(
            where, collection, with_model(spec, record), explicit=False, max_tokens=max_tokens
        )


def _ingest(db: Any, encoder: Any, dataset: BeirDataset, opts: EvalOptions) -> None:
    from jina_vdb.ingest import ingest

    items = corpus_items(dataset, encoder.tokenizer, opts.task)
    options = IngestOptions(progress=opts.progress, strict=False)
    with cs.progress_safe_logging():
        summary = ingest(items, encoder, db, options, total_files=1)
    typer.echo(f"ingest {dataset.corpus_path}: " + summary.lines()[0], err=True)
    for line in summary.lines()[1:]:
        typer.echo(line, err=True)
    if summary.failed:
        typer.echo(
            f"warning: {len(summary.failed)} corpus documents failed to ingest; they count as "
            "never retrieved",
            err=True,
        )


def print_report(report: EvalReport, *, as_json: bool, tiny: bool = False) -> None:
    """The per-mode table (or the report as JSON)."""
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    unjudged = (
        f", {report.unjudged_queries} without qrels in this split left out"
        if report.unjudged_queries
        else ""
    )
    typer.echo(
        f"{report.dataset} (split {report.split}): {report.documents} documents, "
        f"{report.queries} queries{unjudged}; collection {report.collection!r} in {report.store}"
    )
    names = [str(m) for m in DEFAULT_METRICS]
    header = f"{'mode':<12}" + "".join(f"{n:>12}" for n in names) + f"{'p50 ms':>10}{'p95 ms':>10}"
    typer.echo(header)
    for r in report.results:
        cells = "".join(f"{r.scores[n]:>12.4f}" for n in names)
        typer.echo(f"{r.mode:<12}{cells}{r.p50_ms:>10.1f}{r.p95_ms:>10.1f}")
    for mode, why in report.skipped_modes.items():
        typer.echo(f"not run: {mode}: {why}")
    typer.echo(
        f"latency: the store's search call per query ({report.depth} results, "
        f"{report.prefetch_limit} dense candidates for hybrid/fusion), after one warm-up; "
        f"query encoding {report.encode_ms_per_query:.1f} ms per query, not included"
    )
    if tiny:
        typer.echo("(--model tiny has random weights: these numbers mean nothing)")

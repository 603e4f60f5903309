"""``jina-vdb search``: a text or image query, here or on a running server (see ``app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from connectors.filters import parse_filter_args
from connectors.query import Query, SearchMode
from connectors.stores import STORE_URL_FORMS, open_store
from embedder.options import Task
from jina_vdb.model_record import check_model, model_record
from jina_vdb.sources.images import set_max_image_pixels

from . import output
from . import support as cs
from .options import (
    AllowMismatchOpt,
    CollectionOpt,
    DeviceOpt,
    MaxImagePixelsOpt,
    ModelOpt,
    PrefetchLimitOpt,
    StoreOpt,
    TaskOpt,
    VerboseOpt,
)


def search(
    query: Annotated[str | None, typer.Argument(help="The query text (or use --image).")] = None,
    store: StoreOpt = "",
    collection: CollectionOpt = "docs",
    image: Annotated[
        Path | None, typer.Option(help="Search with an image instead of text.")
    ] = None,
    mode: Annotated[
        SearchMode, typer.Option(case_sensitive=False, help="Search mode.")
    ] = SearchMode.HYBRID,
    limit: Annotated[int, typer.Option(help="Results returned.")] = 10,
    prefetch_limit: PrefetchLimitOpt = 100,
    filter: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-f",
            help="key=value, key=a,b (any of), key>=n (repeat for AND); quote a value that "
            "holds commas: -f 'source=\"notes, v1.md\"'.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as JSON.")] = False,
    score_per_token: Annotated[
        bool,
        typer.Option(help="MaxSim divided by the query's token count (-1..1), not the sum."),
    ] = False,
    max_image_pixels: MaxImagePixelsOpt = None,
    model: ModelOpt = cs.DEFAULT_MODEL,
    task: TaskOpt = Task.RETRIEVAL.value,
    device: DeviceOpt = None,
    allow_model_mismatch: AllowMismatchOpt = False,
    server: Annotated[
        str | None,
        typer.Option(
            help="A running 'jina-vdb serve' (e.g. http://127.0.0.1:8080) does the search: no "
            "model is loaded here; --store is the server's; API key from $JINA_VDB_API_KEY.",
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Search a collection with a text or an image query."""
    cs.setup_logging(verbose, store)
    with cs.cli_errors(verbose):
        if (query is None) == (image is None):
            raise ValueError("give either a query text or --image PATH (exactly one)")
        if server is not None:
            opts = (mode, limit, prefetch_limit, filter or [], task, allow_model_mismatch)
            _search_server(server, collection, query, image, *opts, as_json, score_per_token)
            return
        if not store:
            raise ValueError(f"--store is required: {STORE_URL_FORMS}")
        conditions = parse_filter_args(filter or [])
        kind = output.score_kind(mode, True, per_token=score_per_token)  # bad options fail fast
        if max_image_pixels is not None:
            set_max_image_pixels(max_image_pixels)
        with cs.store_errors(store, collection):  # before the model: a bad store fails fast
            db = open_store(store, collection)
        with db:
            picture = cs.query_image(image) if image is not None else None  # also before it
            encoder = cs.load_encoder(model, device=device)
            check_model(
                db,
                model_record(encoder, [task]),
                action="search",
                allow_mismatch=allow_model_mismatch,
            )
            multivector = db.spec.multivector and mode is not SearchMode.DENSE
            if picture is not None:
                batch = encoder.encode_image([picture], task=task, multivector=multivector)
            else:
                batch = encoder.encode_text(
                    [query], task=task, prompt_name="query", multivector=multivector
                )
            q = Query.from_batch(batch)
            hits = db.search(
                q, mode=mode, limit=limit, prefetch_limit=prefetch_limit, filter=conditions
            )
            if len(hits) < limit:  # a filter on a key no record has finds nothing: say so
                output.warn_missing_keys(db, conditions)
            kind = output.score_kind(mode, db.spec.multivector, per_token=score_per_token)
        tokens = None if q.multivector is None else len(q.multivector)
        output.print_hits(hits, as_json=as_json, kind=kind, query_tokens=tokens)


def _search_server(
    server: str,
    collection: str,
    query: str | None,
    image: Path | None,
    mode: SearchMode,
    limit: int,
    prefetch_limit: int,
    filters: list[str],
    task: str,
    allow_model_mismatch: bool,
    as_json: bool,
    per_token: bool,
) -> None:
    from .remote import search_remote

    parse_filter_args(filters)  # a bad filter fails here, with the CLI's message
    output.score_kind(mode, True, per_token=per_token)
    hits, multivector, tokens = search_remote(
        server,
        collection,
        query=query,
        image=image,
        mode=mode,
        limit=limit,
        prefetch_limit=prefetch_limit,
        filters=filters,
        task=task,
        allow_model_mismatch=allow_model_mismatch,
    )
    kind = output.score_kind(mode, multivector, per_token=per_token)
    output.print_hits(hits, as_json=as_json, kind=kind, query_tokens=tokens)

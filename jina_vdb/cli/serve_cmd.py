"""``jina-vdb serve``: the model behind an HTTP API (``jina_vdb.serve``; see ``app``)."""

from __future__ import annotations

from typing import Annotated

import typer

from connectors.stores import STORE_URL_FORMS, parse_store_url

from . import support as cs
from .options import CompileOpt, DeviceOpt, ModelOpt, VerboseOpt


def serve(
    model: ModelOpt = cs.DEFAULT_MODEL,
    store: Annotated[
        str | None,
        typer.Option("--store", "-s", help=f"Store for the collection routes: {STORE_URL_FORMS}."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="JINA_VDB_API_KEY",
            help="Bearer token required on /v1 routes (or $JINA_VDB_API_KEY).",
            show_default=False,
        ),
    ] = None,
    allow_private_urls: Annotated[
        bool,
        typer.Option(help="Fetch image URLs on private, loopback or link-local addresses."),
    ] = False,
    max_items: Annotated[int, typer.Option(help="Most inputs per request.")] = 512,
    max_image_bytes: Annotated[int, typer.Option(help="Largest image (downloaded or base64).")] = 20
    * 2**20,
    url_timeout_s: Annotated[
        float, typer.Option(help="Seconds for a whole image-URL download.")
    ] = 10.0,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 32 * 2**20,
    max_tokens_per_text: Annotated[
        int, typer.Option(help="Longest text in tokens (prompt prefix included).")
    ] = 8192,
    max_queue: Annotated[
        int, typer.Option(help="Requests waiting for the model; beyond: 503 + Retry-After.")
    ] = 256,
    max_wait_ms: Annotated[
        float, typer.Option(help="Milliseconds the model worker waits to batch requests.")
    ] = 5.0,
    batch_tokens: Annotated[int, typer.Option(help="Token budget of one batched call.")] = 8192,
    task_patience_ms: Annotated[
        float,
        typer.Option(
            help="Least wait of a request for another LoRA task while the loaded one has work."
        ),
    ] = 200.0,
    device: DeviceOpt = None,
    compile: CompileOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Keep the model loaded behind an HTTP API (embeddings, collections) with dynamic batching."""
    cs.setup_logging(verbose, store)
    with cs.cli_errors(verbose):
        try:
            from jina_vdb.serve import ServeSettings
            from jina_vdb.serve.server import run_server
        except ImportError as e:
            raise cs.CliError(f"serve needs {e.name}: pip install 'jina-vdb[serve]'") from e
        settings = ServeSettings(
            store=str(parse_store_url(store)) if store else None,
            api_key=api_key or None,
            allow_private_urls=allow_private_urls,
            max_items=max_items,
            max_image_bytes=max_image_bytes,
            url_timeout_s=url_timeout_s,
            max_body_bytes=max_body_bytes,
            max_tokens_per_text=max_tokens_per_text,
            max_queue=max_queue,
            max_wait_ms=max_wait_ms,
            batch_tokens=batch_tokens,
            task_patience_ms=task_patience_ms,
        )
        encoder = cs.load_encoder(model, device=device, compile=compile)
        run_server(encoder, settings, model_name=model, host=host, port=port)

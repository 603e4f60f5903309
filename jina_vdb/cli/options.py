"""Typer option declarations shared by several ``jina-vdb`` commands (one help text each)."""

from __future__ import annotations

from typing import Annotated

import typer

from connectors.stores import STORE_URL_FORMS
from embedder.options import Task

StoreOpt = Annotated[
    str, typer.Option("--store", "-s", help=f"Where the collection lives: {STORE_URL_FORMS}.")
]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Hub id, local checkpoint folder, or 'tiny' (a tiny random model, offline).",
    ),
]
TaskOpt = Annotated[str, typer.Option(help=f"LoRA task: {', '.join(Task.values())}.")]
DeviceOpt = Annotated[
    str | None, typer.Option(help="torch device (default: cuda when available, else cpu).")
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the decoder (CUDA graphs for single queries on CUDA); the first "
        "batches pay the compile. Off by default (see README 'Compiled decoder').",
    ),
]
MaxImagePixelsOpt = Annotated[
    int | None,
    typer.Option(
        help="Decompression-bomb limit: images with more pixels are refused (default: PIL's, "
        "89,478,485). Raise it for trusted huge scans."
    ),
]
AllowMismatchOpt = Annotated[
    bool,
    typer.Option(
        "--allow-model-mismatch",
        help="Use a collection made with another model or task (its scores then mean nothing).",
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Debug logs, and tracebacks on errors.")
]
PrefetchLimitOpt = Annotated[int, typer.Option(help="Dense candidates reranked by MaxSim.")]

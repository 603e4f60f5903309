"""``jina-vdb ingest``: embed files and folders into a collection (registered in ``app``)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from connectors.spec import STORAGE_PRESETS, CollectionSpec, Quantization
from connectors.stores import StoreURL, open_or_create, parse_store_url
from embedder.options import DEFAULT_MAX_PIXELS, Task
from jina_vdb.ingest_types import IngestOptions
from jina_vdb.model_record import MODEL_KEY, check_model, model_record, with_model
from jina_vdb.sources import SourceOptions
from jina_vdb.sources.images import set_max_image_pixels

from . import ray_cli
from . import support as cs
from .options import (
    AllowMismatchOpt,
    CollectionOpt,
    CompileOpt,
    DeviceOpt,
    MaxImagePixelsOpt,
    ModelOpt,
    StoreOpt,
    VerboseOpt,
)

#: ``ingest --storage``: the names of ``connectors.spec.STORAGE_PRESETS``.
# mypy cannot see members of an Enum built from a mapping; typer reads them at run time.
StoragePreset = enum.Enum(  # type: ignore[misc]
    "StoragePreset", {name: name for name in STORAGE_PRESETS}, type=str
)

# Option defaults come from the library's own defaults, never repeated here.
_SOURCE = SourceOptions()
_INGEST = IngestOptions()


def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Files and folders: text, code, images, PDFs, JSONL.")
    ],
    store: StoreOpt,
    collection: CollectionOpt = "docs",
    task: Annotated[
        str,
        typer.Option(help=f"{', '.join(Task.values())}, or auto (code files -> code)."),
    ] = _SOURCE.task,
    dim: Annotated[
        int | None, typer.Option(help="Dense dim stored (default: the model's full dim).")
    ] = None,
    prefetch_dims: Annotated[
        str | None,
        typer.Option(
            help="Matryoshka prefix dims stored for funnel queries, e.g. 128 or 128,256; 'none'."
        ),
    ] = None,
    multivector: Annotated[
        bool, typer.Option(help="Store the 128-d token vectors (MaxSim).")
    ] = True,
    tokens_on_disk: Annotated[
        bool | None,
        typer.Option(
            "--tokens-on-disk/--tokens-in-memory",
            help="New collection: token vectors memory-mapped from disk, or held in RAM "
            "(default: on disk where the backend can; Milvus and Qdrant local mode: in RAM).",
            show_default=False,
        ),
    ] = None,
    dense_on_disk: Annotated[
        bool | None,
        typer.Option(
            "--dense-on-disk/--dense-in-memory",
            help="New collection: dense vectors and their HNSW graphs memory-mapped from disk, "
            "or held in RAM (default: in RAM).",
            show_default=False,
        ),
    ] = None,
    muvera: Annotated[
        bool,
        typer.Option(
            "--muvera",
            help="New collection: also store a MUVERA encoding of the token vectors, for "
            "--mode muvera searches (one more dense vector per document).",
        ),
    ] = False,
    muvera_params: Annotated[
        str | None,
        typer.Option(
            help="MUVERA parameters (implies --muvera), e.g. k_sim=4,dim_proj=16,r_reps=10,seed=1 "
            "(defaults: k_sim=5,dim_proj=16,r_reps=20,seed=42).",
            show_default=False,
        ),
    ] = None,
    token_pooling: Annotated[
        int | None,
        typer.Option(
            min=2,
            max=8,
            help="New collection: pool each document's token vectors by this factor at write "
            "time (hierarchical clustering; ~1/factor of the token bytes; queries unpooled).",
            show_default=False,
        ),
    ] = None,
    token_quantization: Annotated[
        Quantization | None,
        typer.Option(
            case_sensitive=False,
            help="New collection: an int8 or binary copy of the token vectors scores MaxSim, "
            "rescored with the originals (qdrant-edge and Qdrant servers).",
            show_default=False,
        ),
    ] = None,
    dense_quantization: Annotated[
        Quantization | None,
        typer.Option(
            case_sensitive=False,
            help="New collection: the same for the dense vector (qdrant-edge, Qdrant servers).",
            show_default=False,
        ),
    ] = None,
    storage_preset: Annotated[
        StoragePreset | None,
        typer.Option(
            "--storage",
            case_sensitive=False,
            help="New collection: a bundle of storage options (qdrant-edge, Qdrant servers): "
            "uint8 token vectors (no float copy) and float16 dense vectors with a binary copy "
            "for the dense stage, with token pooling 3 (balanced: ~0.24x float16's bytes per "
            "document) or 4 (compact: ~0.20x, a little more recall lost); --token-pooling and "
            "--dense-quantization override the preset's.",
            show_default=False,
        ),
    ] = None,
    model: ModelOpt = cs.DEFAULT_MODEL,
    max_pixels: Annotated[
        int | None,
        typer.Option(help=f"Pixel budget per image / page (model default: {DEFAULT_MAX_PIXELS})."),
    ] = _INGEST.max_pixels,
    max_image_pixels: MaxImagePixelsOpt = None,
    max_text_bytes: Annotated[
        int, typer.Option(help="Larger text files are reported, not read (split them or raise).")
    ] = _SOURCE.max_text_bytes,
    dpi: Annotated[float, typer.Option(help="PDF render resolution.")] = _SOURCE.pdf_dpi,
    pdf_text: Annotated[
        bool, typer.Option(help="Also embed each PDF page's text layer.")
    ] = _SOURCE.pdf_text,
    chunk_tokens: Annotated[
        int, typer.Option(help="Text chunk size in tokens.")
    ] = _SOURCE.chunk_tokens,
    chunk_overlap: Annotated[
        int, typer.Option(help="Tokens shared by neighbouring chunks.")
    ] = _SOURCE.chunk_overlap,
    include: Annotated[
        list[str] | None, typer.Option(help="Glob of files to take from folders (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Glob of files to leave out (repeatable).")
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option(help="key=value stored in every record's meta (repeatable)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Most texts per encode call.")
    ] = _INGEST.text_batch,
    batch_tokens: Annotated[
        int, typer.Option(help="Tokens per text encode call.")
    ] = _INGEST.text_batch_tokens,
    image_batch_size: Annotated[
        int, typer.Option(help="Images / pages per encode call.")
    ] = _INGEST.image_batch,
    strict: Annotated[
        bool, typer.Option(help="Stop at the first bad file instead of skipping it.")
    ] = _SOURCE.strict,
    force: Annotated[
        bool, typer.Option(help="Re-encode and overwrite items already stored.")
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(help="Delete records of files under PATHS that no longer exist."),
    ] = False,
    allow_outside_paths: Annotated[
        bool,
        typer.Option(help="Let JSONL image paths point outside the folder being ingested."),
    ] = _SOURCE.allow_outside_paths,
    image_timeout: Annotated[
        float, typer.Option(help="Seconds allowed for one image URL download, in all.")
    ] = _SOURCE.image_timeout,
    writer_process: Annotated[
        bool | None,
        typer.Option(
            "--writer-process/--no-writer-process",
            help="Write an embedded qdrant-edge store from a child process (off the "
            "encoder's GIL). Default: on when the model runs on CUDA.",
        ),
    ] = None,
    preprocess_workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Processes that decode images, render PDF pages and resize them ahead of "
            "the model (0: none). Default: min(8, cores - 2) on CUDA, 0 on CPU.",
        ),
    ] = None,
    device: DeviceOpt = None,
    compile: CompileOpt = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or progress logs.")
    ] = False,
    log_every: Annotated[
        float,
        typer.Option(help="Seconds between one-line progress logs when stderr is not a terminal."),
    ] = 10.0,
    allow_model_mismatch: AllowMismatchOpt = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run as a Ray Data job: 'local' (a Ray on this machine), 'auto' (this "
            "machine's cluster) or a cluster address (ray://HOST:10001). Needs jina-vdb[ray].",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="--ray: encoder replicas (default: one per GPU; 1 without GPUs)."),
    ] = None,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option(help="--ray: GPUs per encoder replica (default: 1, or 0 without GPUs)."),
    ] = None,
    writers: Annotated[
        int | None,
        typer.Option(help="--ray: parallel writers to a server store (default: 2)."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Embed files and folders and upsert them; re-running skips what is already stored."""
    cs.setup_logging(verbose, store)
    with cs.cli_errors(verbose):
        source_opts = SourceOptions(
            include=tuple(include or ()),
            exclude=tuple(exclude or ()),
            task=task,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
            pdf_dpi=dpi,
            pdf_text=pdf_text,
            max_text_bytes=max_text_bytes,
            metadata=cs.parse_meta(meta or ()),
            image_max_pixels=max_pixels or _SOURCE.image_max_pixels,
            image_timeout=image_timeout,
            allow_outside_paths=allow_outside_paths,
            strict=strict,
        )
        ingest_opts = IngestOptions(
            text_batch=batch_size,
            text_batch_tokens=batch_tokens,
            image_batch=image_batch_size,
            max_pixels=max_pixels,
            strict=strict,
            skip_existing=not force,
            prune_under=tuple(cs.source_path(p) for p in paths) if prune else (),
            progress=not quiet and cs.stderr_is_tty(),
            log_every=None if quiet or cs.stderr_is_tty() else log_every,
            writer_process=writer_process,
            preprocess_workers=preprocess_workers,
        )
        if ingest_opts.log_every is not None:
            cs.show_progress_logs()
        where = parse_store_url(store)  # a bad URL fails before the model loads
        muvera_spec = cs.parse_muvera(muvera, muvera_params)  # so does a bad --muvera-params
        storage = cs.TokenStorage(
            token_pooling,
            token_quantization,
            dense_quantization,
            storage_preset.value if storage_preset is not None else None,
        )
        storage.check(multivector)  # and token options without token vectors
        if max_image_pixels is not None:
            set_max_image_pixels(max_image_pixels)
        on_ray = None
        if ray is not None and (writer_process or preprocess_workers):
            raise ValueError(
                "--writer-process and --preprocess-workers are for an ingest in this process, "
                "not --ray"
            )
        if ray is not None:  # checked before the model loads
            if compile:
                raise ValueError("--compile is not supported with --ray (workers run eagerly)")
            on_ray = ray_cli.ray_options(ray, device, workers, gpus_per_worker, writers, where)
            # The driver needs the tokenizer, dims and identity, not weights: workers encode.
            encoder = cs.describe_model(model)
        else:
            encoder = cs.load_encoder(model, device=device, compile=compile)
        spec, explicit = cs.build_spec(
            encoder,
            dim=dim,
            prefetch_dims=prefetch_dims,
            multivector=multivector,
            placement=(tokens_on_disk, dense_on_disk),
            muvera=muvera_spec,
            storage=storage,
        )
        tasks = (Task.RETRIEVAL.value, Task.CODE.value) if task == "auto" else (task,)
        record = model_record(encoder, tasks)
        summary = _ingest_paths(
            paths,
            where,
            collection,
            encoder,
            with_model(spec, record),
            explicit,
            source_opts,
            ingest_opts,
            allow_model_mismatch=allow_model_mismatch,
            on_ray=None if on_ray is None else (on_ray, cs.model_location(model)),
        )
        for line in summary.lines(verbose=verbose):
            typer.echo(line)


def _ingest_paths(
    paths: list[Path],
    where: StoreURL,
    collection: str,
    encoder: Any,
    spec: CollectionSpec,
    explicit: bool,
    source_opts: Any,
    ingest_opts: Any,
    *,
    allow_model_mismatch: bool = False,
    on_ray: tuple[Any, str] | None = None,
) -> Any:
    """Open (or create) the collection and run the pipeline over the paths' items.

    A new collection records the model (``spec.extra``); an existing one must have been
    made by this model (its tasks are only checked by queries: an ingest may add a task).
    ``on_ray``: (RayOptions, the checkpoint the workers load) to run it as a Ray job.
    """
    from jina_vdb.ingest import ingest as run_ingest
    from jina_vdb.sizing import milvus_max_tokens
    from jina_vdb.sources import count_files, iter_items

    max_tokens = None
    if where.backend == "milvus":  # the Array-of-Structs layout needs a per-record bound
        max_tokens = milvus_max_tokens(
            encoder,
            chunk_tokens=source_opts.chunk_tokens,
            max_pixels=ingest_opts.max_pixels,
            max_length=ingest_opts.max_length,
        )
    with cs.store_errors(str(where), collection):
        db = open_or_create(where, collection, spec, explicit=explicit, max_tokens=max_tokens)
    with db, cs.progress_safe_logging():
        record = spec.extra.get(MODEL_KEY)
        check_model(
            db,
            None if record is None else {**record, "tasks": []},
            action="ingest",
            allow_mismatch=allow_model_mismatch,
        )
        if on_ray is not None:
            return ray_cli.run(paths, where, db, encoder, source_opts, ingest_opts, *on_ray)
        total = count_files(paths, source_opts)  # walk first: the progress total and ETA
        items = iter_items(paths, tokenizer=encoder.tokenizer, options=source_opts)
        return run_ingest(items, encoder, db, ingest_opts, total_files=total)

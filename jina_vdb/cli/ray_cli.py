"""``jina-vdb ingest --ray``: the command line's side of the Ray job (``jina_vdb.distributed``).

ray is imported only when ``--ray`` is given; without the ``[ray]`` extra the command fails
with the install hint before any model loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.base import VectorStore
from connectors.stores import StoreURL
from jina_vdb.distributed import RayOptions, ray_ingest, require_ray

from .support import CliError


def ray_options(
    address: str,
    device: str | None,
    workers: int | None,
    gpus_per_worker: float | None,
    writers: int | None,
    where: StoreURL,
) -> RayOptions:
    """The ``--ray`` flags as RayOptions (ray itself must be importable)."""
    if writers is not None and not where.server:
        raise CliError(
            f"--writers applies to server stores; {where} is embedded and written by the "
            "driver alone (one process may open it)"
        )
    if device is not None:
        raise CliError(
            "--device cannot be combined with --ray: the workers' device follows "
            "--gpus-per-worker (0: CPU workers)"
        )
    require_ray()
    try:
        return RayOptions(
            address=address, workers=workers, gpus_per_worker=gpus_per_worker, writers=writers
        )
    except ValueError as e:
        raise CliError(f"--ray: {e}") from e


def run(
    paths: list[Path],
    where: StoreURL,
    db: VectorStore,
    description: Any,
    source_opts: Any,
    ingest_opts: Any,
    options: RayOptions,
    model: str,
) -> Any:
    """Run the ingest as a Ray job into the open collection ``db``.

    ``description``: the model without its weights (``embedder.describe_checkpoint``).
    """
    return ray_ingest(
        paths,
        model,
        db,
        ingest_opts,
        sources=source_opts,
        ray_options=options,
        store_url=str(where) if where.server else None,
        description=description,
    )

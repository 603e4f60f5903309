"""``RayOptions``: where and how wide a Ray ingest runs (checked before ray is imported)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray ingest runs.

    Attributes:
        address: "local" (start a Ray on this machine for the run), "auto" (the cluster this
            machine belongs to), or a cluster address: ``ray://HOST:10001`` (Ray Client) or
            ``HOST:6379``. Unused when the calling process has already started Ray.
        workers: encoder actors (model replicas). None: one per ``gpus_per_worker`` GPUs of
            the cluster; 1 without GPUs.
        gpus_per_worker: GPUs per encoder actor. None: 1 when the cluster has GPUs, else 0
            (CPU actors, with a WARNING).
        cpus_per_worker: CPUs per encoder actor (a CPU actor's torch threads).
        writers: writer actors for a server store (None: 2). An embedded store is written
            by the driver alone: giving writers for one is refused.
        batch_rows: rows per encoder actor call, at most ``IngestOptions.text_batch``
            (split further into the local pipeline's text token-budget and image batches).
        max_retries: restarts of a dead actor and re-runs of a lost task.
        init: extra ``ray.init`` keyword arguments when this run starts Ray (``num_cpus``,
            ``object_store_memory``...).
    """

    address: str = "local"
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    writers: int | None = None
    batch_rows: int = 64
    max_retries: int = 3
    init: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("workers", "writers", "batch_rows"):
            value = getattr(self, name)
            if value is None and name in ("workers", "writers"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.gpus_per_worker is not None and not self.gpus_per_worker >= 0:
            raise ValueError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker!r}")
        if not self.cpus_per_worker > 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if not isinstance(self.address, str) or not self.address.strip():
            raise ValueError(f"address must be 'local', 'auto' or an address, got {self.address!r}")

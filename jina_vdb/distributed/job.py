"""Ingest on Ray Data: the local pipeline's sources, ids, skips, batches and summary, on a cluster.

    summary = ray_ingest(paths, "jinaai/jina-embeddings-v4", store,
                         ray_options=RayOptions(address="auto"))

The driver loads no weights: ``embedder.describe_checkpoint`` gives it the tokenizer (for
chunking in the reading tasks) and the image budget; the encoder actors load the model.

Two Ray Data passes over the files, both listed on the driver (``walk_files``):

1. **listing**: CPU tasks read each file (decode, chunk, hash) into Ray's object store
   (``materialize``: spilled to disk past its size); the driver takes the entries in walk
   order and checks the ids against the store (``listing.Listing``), before anything is
   decoded or encoded, and keeps ids only;
2. **work**: the listed items still to encode (``select_wanted``: a file is read and
   chunked once), their images decoded and PDF pages rendered (CPU tasks) and shrunk there
   to the model's pixel budget (``embedder.ImageFit``: the encoder's own resize, so the
   vectors are bit-identical, and a page crosses the object store budget-sized), encoded by an
   actor pool (one ``JinaV4Embedder`` per actor: per GPU, or CPU actors without GPUs), and
   written: to a server store by writer actors, each with its own connection; to an
   embedded store (a qdrant-edge folder, a Milvus Lite file: one process may open it) by
   the driver, from the job's output batches.

Resumable exactly like the local pipeline: ids are stable, stored ids are skipped before
encoding, upserts are idempotent. A dead worker's batch is retried by Ray (actors restart,
lost tasks re-run, ``RayOptions.max_retries`` times); a bad item fails alone and is reported
in the summary, never retried. After a complete run, stale records are deleted as locally.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from connectors.base import VectorStore
from connectors.stores import parse_store_url

from ..ingest_types import IngestOptions, IngestSummary, Tally
from ..sources.items import SourceOptions
from ..sources.walk import walk_files
from ..sync import delete_stale, prune_vanished
from . import stages
from .listing import Listing, Wanted
from .options import RayOptions
from .ray_support import job_errors, require_ray, retries_named

if TYPE_CHECKING:
    from embedder import ModelDescription

logger = logging.getLogger(__name__)

#: Listing / work blocks per cluster CPU: enough tasks to keep every CPU reading.
_BLOCKS_PER_CPU = 4
#: Items per load task call (decoded images and rendered pages travel in these batches).
_LOAD_BATCH = 8
#: Writer actors for a server store by default.
_WRITERS = 2
#: CPUs reserved per writer actor: none. Writers mostly wait on the database's replies, and
#: a reservation could leave the reading tasks (1 CPU each) no CPU: the job would stall.
_WRITER_CPUS = 0


def ray_ingest(
    paths: Iterable[str | os.PathLike[str]],
    model: str | os.PathLike[str],
    store: VectorStore,
    options: IngestOptions | None = None,
    *,
    sources: SourceOptions | None = None,
    ray_options: RayOptions | None = None,
    store_url: str | None = None,
    description: ModelDescription | None = None,
) -> IngestSummary:
    """Ingest files and folders on Ray: what ``ingest(iter_items(paths), ...)`` does locally.

    Args:
        paths: files and folders, as for ``jina_vdb.sources.iter_items``.
        model: the checkpoint every encoder actor loads (a folder its node can read, or a
            hub id).
        store: the open collection: the driver checks ids against it, deletes stale records
            and, for an embedded store, writes.
        options: batching and behaviour, as for ``ingest``.
        sources: how files become items.
        ray_options: the cluster and the pool sizes.
        store_url: the server URL of ``store`` (``qdrant+http://…``, ``milvus+http://…``):
            writer actors open the collection by it. None: the driver writes.
        description: ``model`` described without its weights (``embedder.describe_checkpoint``),
            when the caller has it already; None: described here.

    Returns:
        The same summary as ``ingest``.

    Raises:
        MissingDependencyError: ray is not installed (the ``[ray]`` extra).
        IngestError: in strict mode on the first failure; when the job itself fails.
    """
    ray = require_ray()
    ropts = ray_options or RayOptions()
    if store_url is not None and not parse_store_url(store_url).server:
        raise ValueError(
            f"store_url {store_url!r} is an embedded store: pass store_url=None, the driver "
            "writes it (one process may open it)"
        )
    if store_url is None and ropts.writers is not None:
        raise ValueError(
            f"writers={ropts.writers}: an embedded store is written by the driver alone; "
            "parallel writers need a server store (qdrant+http://, milvus+http://)"
        )
    if description is None:
        from embedder import describe_checkpoint

        description = describe_checkpoint(os.fspath(model))
    job = _RayJob(
        ray,
        str(model),
        description,
        store,
        options or IngestOptions(),
        sources or SourceOptions(),
        ropts,
        store_url,
    )
    started = False
    if not ray.is_initialized():
        ropts = job.ropts
        quiet = job.opts.progress is False  # Ray's own logs follow the progress setting
        ray.init(
            address=ropts.address,
            log_to_driver=not quiet,
            logging_level=logging.WARNING if quiet else logging.INFO,
            **ropts.init,
        )
        started = True
    try:
        return job.run(paths)
    finally:
        if started:
            ray.shutdown()


class _RayJob:
    def __init__(
        self,
        ray: ModuleType,
        model: str,
        description: ModelDescription,
        store: VectorStore,
        opts: IngestOptions,
        sources: SourceOptions,
        ropts: RayOptions,
        store_url: str | None,
    ) -> None:
        self.ray, self.model, self.store = ray, model, store
        self.opts, self.ropts, self.store_url = opts, ropts, store_url
        self.tokenizer = description.tokenizer
        # Refuses a max_pixels the encoder would refuse, before any work.
        self.fit = description.image_fit(opts.max_pixels)
        # Tasks never raise for a bad source: the driver applies strictness, in walk order.
        self.sources = replace(sources, strict=False)
        self.source_strict = sources.strict

    def run(self, paths: Iterable[str | os.PathLike[str]]) -> IngestSummary:
        import ray.data

        workers, gpus = self._pool()  # a pool the cluster cannot hold fails before any work
        files = list(walk_files(paths, self.sources))
        ctx = ray.data.DataContext.get_current()
        progress = self.opts.progress
        # Ray's bars follow the project's: None shows them when INFO logging is on.
        ctx.enable_progress_bars = (
            logger.isEnabledFor(logging.INFO) if progress is None else progress
        )
        tally = Tally(
            self.opts.progress, logger, total_files=len(files), log_every=self.opts.log_every
        )
        listener, self.store.maintenance_listener = (
            self.store.maintenance_listener,
            tally.maintenance,
        )
        listing = Listing(self.store, self.opts, tally, source_strict=self.source_strict)
        try:
            with job_errors(self.ray):
                with _wall(tally, "listing"):
                    listed = self._read(files)
                    work = self._list(listed, listing)
                if work:
                    with _wall(tally, "encoding"):
                        self._work(listed, work, listing, tally, (workers, gpus))
            self._sync(listing, tally)
            self.store.flush()
        finally:
            self.store.maintenance_listener = listener
            summary = tally.close()
        for line in summary.lines():
            logger.info("%s", line)
        return summary

    # -- pass 1: listing -----------------------------------------------------------------
    def _list(self, listed: Any, listing: Listing) -> dict[int, Wanted]:
        """Each file's work, in walk order: {file_no: wanted} for files with items to encode."""
        work: dict[int, Wanted] = {}
        early: dict[int, bytes] = {}  # files listed before an earlier one
        next_no = 0
        for batch in self._batches(listed):
            early.update(zip((int(n) for n in batch["file_no"]), batch["entries"], strict=True))
            while next_no in early:
                wanted = listing.file(next_no, stages.entries_of(early.pop(next_no)))
                if wanted is None or wanted:
                    work[next_no] = wanted
                next_no += 1
        return work

    def _read(self, files: list[tuple[Path, Path | None]]) -> Any:
        """Every file's entries (read, chunked, hashed in CPU tasks, a file a call), kept in
        the object store for both passes."""
        import ray.data

        if not files:
            return ray.data.from_items([])
        rows = [{"file_no": i, "file": stages.file_row(*f)} for i, f in enumerate(files)]
        cpus = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), _BLOCKS_PER_CPU * cpus))
        with retries_named():
            return ds.map_batches(
                cast(Any, stages.expand_listing),  # keyword-only fn_kwargs: beyond Ray's stubs
                batch_size=1,
                batch_format="numpy",
                fn_kwargs={"tokenizer": self.tokenizer, "options": self.sources},
                num_cpus=1,
                max_retries=self.ropts.max_retries,
            ).materialize()

    def _batches(self, ds: Any) -> Iterator[dict[str, np.ndarray]]:
        return ds.iter_batches(batch_size=None, batch_format="numpy")  # type: ignore[no-any-return]

    # -- pass 2: read again, load, encode, write --------------------------------------------
    def _work(
        self,
        listed: Any,
        work: dict[int, Wanted],
        listing: Listing,
        tally: Tally,
        pool: tuple[int, float],
    ) -> None:
        with retries_named():
            ds = listed.map_batches(
                stages.select_wanted,
                batch_size=None,  # a listed block at a time: unpickling, no reading
                batch_format="numpy",
                fn_kwargs={"wanted": work},
                num_cpus=1,
                max_retries=self.ropts.max_retries,
            )
        ds = self._stages(ds, *pool)
        for batch in self._batches(ds):
            if self.store_url is None:
                with tally.clock("write"):
                    failures = stages.write_encoded(self.store, batch, self.opts)
            else:
                failures = list(batch["failure"])
            self._count(batch, failures, listing, tally)

    def _stages(self, ds: Any, workers: int, gpus: float) -> Any:
        """Load (CPU tasks) -> encode (actor pool) [-> write (writer actors, servers)]."""
        from ray.data import ActorPoolStrategy

        retries = self.ropts.max_retries
        with retries_named():
            ds = ds.map_batches(
                stages.load_rows,
                batch_size=_LOAD_BATCH,
                batch_format="numpy",
                fn_kwargs={"fit": self.fit},
                num_cpus=1,
                max_retries=retries,
            )
            ds = ds.map_batches(
                stages.EncodeWorker,
                fn_constructor_kwargs={
                    "model": self.model,
                    "device": "cuda" if gpus else "cpu",
                    "multivector": self.store.spec.multivector,
                    "options": self.opts,
                },
                # An actor call holds at most ``text_batch`` items, as a local encode call.
                batch_size=min(self.ropts.batch_rows, self.opts.text_batch),
                batch_format="numpy",
                compute=ActorPoolStrategy(size=workers),
                num_gpus=gpus,
                num_cpus=self.ropts.cpus_per_worker,
                max_restarts=retries,
                max_task_retries=retries,
            )
            if self.store_url is None:
                return ds
            return ds.map_batches(
                stages.StoreWriter,
                fn_constructor_kwargs={
                    "url": self.store_url,
                    "collection": self.store.name,
                    "options": self.opts,
                },
                batch_size=self.opts.write_batch,
                batch_format="numpy",
                compute=ActorPoolStrategy(size=self.ropts.writers or _WRITERS),
                num_cpus=_WRITER_CPUS,
                max_restarts=retries,
                max_task_retries=retries,
            )

    def _pool(self) -> tuple[int, float]:
        """(encoder actors, GPUs each), from the options and the cluster's resources."""
        resources = self.ray.cluster_resources()
        gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
        per = self.ropts.gpus_per_worker
        if per is None:
            per = 1.0 if gpus else 0.0
            if not gpus:
                logger.warning("the Ray cluster has no GPU: encoding on CPU actors")
        if per > gpus:
            raise ValueError(f"gpus_per_worker is {per:g} but the Ray cluster has {gpus:g} GPUs")
        workers = self.ropts.workers or (max(1, int(gpus // per)) if per else 1)
        if workers * self.ropts.cpus_per_worker >= cpus:
            raise ValueError(
                f"{workers} encoder actors of {self.ropts.cpus_per_worker:g} CPUs leave no "
                f"CPU of the Ray cluster's {cpus:g} for reading files: lower workers "
                "(--workers) or cpus_per_worker"
            )
        logger.info("encoding on %d actor(s), %g GPU(s) each", workers, per)
        return workers, per

    def _count(
        self,
        batch: dict[str, np.ndarray],
        failures: list[bytes],
        listing: Listing,
        tally: Tally,
    ) -> None:
        tally.summary.stage_seconds["encode"] += float(np.sum(batch["seconds"]))
        done: list[int] = []
        for i, failure in enumerate(failures):
            file_no = int(batch["file_no"][i])
            if failure:
                listing.fail(stages.loads(failure), file_no)
                continue
            done.append(file_no)
            tally.add("pages" if batch["image"][i] else "tokens", int(batch["cost"][i]))
        total = tally.add("added", len(done), done=done)
        logger.debug("upserted %d records (%d so far)", len(done), total)

    def _sync(self, listing: Listing, tally: Tally) -> None:
        lock = threading.Lock()  # the driver is the only thread using the store here
        if self.opts.sync_sources:
            tally.add("stale_deleted", delete_stale(self.store, listing.ledger, lock))
        if self.opts.prune_under:
            pruned = prune_vanished(self.store, listing.ledger, self.opts.prune_under, lock)
            tally.add("pruned", pruned)


@contextlib.contextmanager
def _wall(tally: Tally, name: str) -> Iterator[None]:
    """The wall time of a pass in ``summary.stage_seconds[name]`` ("listing", "encoding")."""
    started = time.perf_counter()
    try:
        yield
    finally:
        tally.summary.stage_seconds[name] = time.perf_counter() - started

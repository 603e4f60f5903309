"""QdrantStore on an embedded qdrant-edge shard: the real Qdrant engine in-process, no server.

Layout: ``<path>/<name>/jina_vdb.json`` (the spec: qdrant-edge keeps no collection metadata)
and ``<path>/<name>/shard/`` (the EdgeShard: WAL, segments). One process per folder: the
WAL is locked while a shard is open.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..clients import EdgeShardHandle
from ..errors import (
    BackendError,
    CollectionNotFoundError,
    ConnectorError,
    SchemaMismatchError,
    StoreLockedError,
)
from ..filters import Filter
from ..query import Hit, SearchPlan
from ..records import PreparedRecord, Record, RecordId
from ..spec import CollectionSpec, reconcile_spec
from . import _deps, convert, schema
from .store import QdrantStore

logger = logging.getLogger(__name__)

SPEC_FILE = "jina_vdb.json"
SHARD_DIR = "shard"
T = TypeVar("T")


class EdgeQdrantStore(QdrantStore):
    """A collection in an embedded qdrant-edge shard (``QdrantStore.create(name, path=...)``)."""

    #: qdrant-edge indexes nothing until optimize() runs. After an upsert call, optimize once
    #: this many points were written since the last one; close()/flush() optimize the rest.
    #: Each run turns the new points into one indexed segment, and a search runs one thread
    #: per segment: 10k-point segments (~0.85 GB at 300 tokens/doc, left unmerged) split the
    #: MaxSim rerank of a 20k collection over two cores, and smaller HNSW builds cost less
    #: in total (measured, 8k docs: one 22 s build vs two totalling 13 s).
    optimize_every: int = 10_000
    #: HNSW beam width of dense stages (raised to the stage's limit when that is larger).
    hnsw_ef: int | None = 128
    tuning: schema.EdgeTuning = schema.EdgeTuning()

    def __init__(
        self, name: str, spec: CollectionSpec, folder: Path, shard: EdgeShardHandle
    ) -> None:
        super().__init__(name, spec)
        self.folder = folder
        self._shard: EdgeShardHandle | None = shard
        self._pending = 0  # points written since the last optimize()

    # -- create / open ------------------------------------------------------------------
    @classmethod
    def create_at(cls, name: str, root: Path, spec: CollectionSpec) -> EdgeQdrantStore:
        """Create ``<root>/<name>`` (or open it when it holds the same spec).

        The collection is built in a hidden folder beside it (spec file and shard) and
        published with one ``rename``: of two processes creating it at once, one rename wins
        and the other process opens the winner's collection (or gets SchemaMismatchError
        / StoreLockedError); nobody ever sees a spec without its shard or the reverse.
        """
        folder = root / name
        existing = _read_spec(folder)
        if existing is not None:
            return cls._open_existing(name, folder, existing, spec)
        root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{name}.creating-", dir=root))
        try:
            _write_spec(building, spec)
            config = schema.edge_config(spec, cls.tuning)
            shard = _guard_lock(
                building, lambda: _deps.edge().EdgeShard.create(str(building / SHARD_DIR), config)
            )
            shard.close()
            try:
                os.rename(building, folder)  # atomic; refused when the folder has content
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                winner = _read_spec(folder)
                if winner is None:
                    raise SchemaMismatchError(
                        f"{folder} exists and holds no jina-vdb collection ({SPEC_FILE} is "
                        "missing); remove it or choose another collection name"
                    ) from None
                logger.info("collection %r was created by another process; opening it", name)
                return cls._open_existing(name, folder, winner, spec)
        finally:
            shutil.rmtree(building, ignore_errors=True)
        logger.info("created qdrant-edge collection %r in %s", name, folder)
        return cls._load(name, folder, spec)

    @classmethod
    def _open_existing(
        cls, name: str, folder: Path, existing: CollectionSpec, spec: CollectionSpec
    ) -> EdgeQdrantStore:
        reconcile_spec(spec, existing, name=name, where=f"in {folder}", opener="QdrantStore")
        return cls._load(name, folder, existing)

    @classmethod
    def open_at(cls, name: str, root: Path) -> EdgeQdrantStore:
        """Open ``<root>/<name>``; its spec comes from the folder."""
        folder = root / name
        spec = _read_spec(folder)
        if spec is None:
            raise CollectionNotFoundError(
                f"no qdrant-edge collection {name!r} in {root} (no {SPEC_FILE} in {folder}); "
                "create it with QdrantStore.create"
            )
        return cls._load(name, folder, spec)

    @classmethod
    def _load(cls, name: str, folder: Path, spec: CollectionSpec) -> EdgeQdrantStore:
        qe = _deps.edge()
        shard_path = folder / SHARD_DIR
        if (shard_path / "edge_config.json").exists():
            shard = _guard_lock(folder, lambda: qe.EdgeShard.load(str(shard_path)))
        else:
            config = schema.edge_config(spec, cls.tuning)
            shard = _guard_lock(folder, lambda: qe.EdgeShard.create(str(shard_path), config))
        return cls(name, spec, folder, shard)

    # -- writes -------------------------------------------------------------------------
    def _write(self, records: Sequence[PreparedRecord]) -> None:
        qe = _deps.edge()
        self._live().update(qe.UpdateOperation.upsert_points(convert.edge_points(records)))
        self._pending += len(records)

    def _after_write(self) -> None:
        # Not per batch: every run makes a segment, and many small ones get merged and
        # re-indexed again. Until then new points are searched exactly (and visible at once).
        if self._pending >= self.optimize_every:
            self.optimize()

    def optimize(self) -> None:
        """Build the HNSW graphs / quantization of what was written since the last call."""
        shard = self._live()
        start = time.perf_counter()
        changed = self._run("optimize", shard.optimize)
        logger.info(
            "optimized qdrant-edge collection %r (%d new points, changed=%s) in %.1fs",
            self.name,
            self._pending,
            changed,
            time.perf_counter() - start,
        )
        self._pending = 0

    def _delete(self, ids: list[RecordId]) -> None:
        qe = _deps.edge()
        self._live().update(qe.UpdateOperation.delete_points(self._point_ids(ids)))

    # -- reads --------------------------------------------------------------------------
    def _execute(self, plan: SearchPlan, vectors: dict[str, Any]) -> list[Hit]:
        request = convert.edge_request(plan, vectors, hnsw_ef=self.hnsw_ef)
        return self._hits(self._live().query(request))

    def _get(self, ids: list[RecordId], with_vectors: bool) -> list[Record]:
        point_ids = self._point_ids(ids)
        points = self._live().retrieve(point_ids, with_payload=True, with_vector=with_vectors)
        return self._order_records(ids, points, with_vectors)

    def _scan_page(
        self, filter: Filter | None, limit: int, cursor: Any
    ) -> tuple[list[Record], Any]:
        qe = _deps.edge()
        request = qe.ScrollRequest(
            offset=cursor,
            limit=limit,
            filter=convert.edge_filter(filter),
            with_payload=True,
            with_vector=False,
        )
        points, after = self._live().scroll(request)
        return [convert.to_record(p, self.spec, False) for p in points], after

    def _count(self, filter: Filter | None) -> int:
        qe = _deps.edge()
        return int(
            self._live().count(qe.CountRequest(exact=True, filter=convert.edge_filter(filter)))
        )

    def info(self) -> dict[str, Any]:
        """Spec, count, folder and segment/index state."""
        details = super().info()
        shard_info = self._live().info()
        details.update(
            engine="qdrant-edge",
            path=str(self.folder),
            segments=shard_info.segments_count,
            indexed_vectors=shard_info.indexed_vectors_count,
            pending_optimize=self._pending,
        )
        return details

    # -- lifecycle ----------------------------------------------------------------------
    def flush(self) -> None:
        """Persist pending writes (the WAL already makes them durable) and build indexes."""
        if self._pending:
            self.optimize()
        self._run("flush", self._live().flush)

    def close(self) -> None:
        """Optimize what is pending, flush and release the folder lock (idempotent)."""
        if self._shard is None:
            return
        try:
            self.flush()
        finally:
            self._shard.close()
            self._shard = None

    def _drop(self) -> None:
        """Delete the collection folder and everything in it; the store is closed."""
        if self._shard is not None:
            self._shard.close()
            self._shard = None
        shutil.rmtree(self.folder, ignore_errors=True)
        logger.info("dropped qdrant-edge collection %r (%s)", self.name, self.folder)

    def _translate_error(self, error: Exception) -> ConnectorError | None:
        # qdrant-edge raises plain Exception carrying the engine's (Rust) error text; nothing
        # else does, so a bug of ours (TypeError, ...) is never disguised as an engine error.
        if type(error) is not Exception:
            return None
        reason = " ".join(str(error).split())[:300]
        return BackendError(f"qdrant-edge collection {self.name!r} in {self.folder}: {reason}")

    def _live(self) -> EdgeShardHandle:
        if self._shard is None:
            raise self._closed_error()
        return self._shard


def _guard_lock(folder: Path, call: Callable[[], T]) -> T:
    """Run EdgeShard.load/create; a WAL lock failure becomes StoreLockedError naming the folder."""
    try:
        return call()
    except Exception as e:  # qdrant-edge raises plain Exception with a Rust error string
        text = str(e)
        if "WouldBlock" in text or "lock" in text.lower():
            raise StoreLockedError(
                f"qdrant-edge collection folder {folder} is already open in another process "
                "(or by another store in this one): one process per folder. Close it there, "
                "or use a Qdrant server for concurrent access."
            ) from e
        raise


def _read_spec(folder: Path) -> CollectionSpec | None:
    try:
        data = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    spec = schema.spec_from_metadata(data)
    if spec is None:
        raise SchemaMismatchError(f"{folder / SPEC_FILE} holds no jina-vdb collection spec")
    return spec


def _write_spec(folder: Path, spec: CollectionSpec) -> None:
    tmp = folder / (SPEC_FILE + ".tmp")
    tmp.write_text(json.dumps(schema.spec_metadata(spec), indent=2), encoding="utf-8")
    os.replace(tmp, folder / SPEC_FILE)  # atomic: a reader never sees half a spec

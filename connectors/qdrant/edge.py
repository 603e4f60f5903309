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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..clients import EdgeShardHandle
from ..errors import (
    BackendError,
    CollectionNotFoundError,
    ConnectorError,
    SchemaMismatchError,
)
from ..filters import Filter
from ..names import check_collection_name
from ..payload_index import PayloadIndexes
from ..query import Hit, SearchPlan
from ..records import PreparedRecord, Record, RecordId
from ..spec import CollectionSpec, StoragePolicy, reconcile_spec
from . import _deps, convert, edge_state, schema
from .edge_state import SHARD_DIR
from .store import QdrantStore

logger = logging.getLogger(__name__)

SPEC_FILE = "jina_vdb.json"
EDGE_CONFIG = "edge_config.json"  # written by qdrant-edge in the shard folder
T = TypeVar("T")
#: Both placements; by default the token vectors are memory-mapped (Memory.Cold) and read only
#: for a rerank's candidates, the dense vectors and graphs are read in at load (Cached).
EDGE_STORAGE = StoragePolicy("qdrant-edge")


class EdgeQdrantStore(QdrantStore):
    """A collection in an embedded qdrant-edge shard (``QdrantStore.create(name, path=...)``)."""

    #: qdrant-edge indexes nothing until optimize() runs. After an upsert call, optimize once
    #: the points written since the last run hold this many bytes (as stored: float16 token
    #: vectors count 2 bytes); close()/flush() optimize the rest. Each run turns the new points
    #: into one indexed segment of about this size, and the shard's max_segment_size keeps the
    #: merge optimizer from joining them: one run costs the same at 1k documents or 1M. It then
    #: flushes (a crash replays only what came after) and reloads the shard, which releases the
    #: pages the run wrote (they stay mapped, and counted in RSS, until the shard is closed).
    optimize_bytes: int = schema.EdgeTuning.max_segment_kb * 1024
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
        self._pending_bytes = 0

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
        check_collection_name(name, "qdrant")  # before it becomes a folder
        spec = EDGE_STORAGE.apply(spec)
        root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{name}.creating-", dir=root))
        try:
            _write_spec(building, spec)
            config = schema.edge_config(spec, cls.tuning)
            shard = _guard_lock(
                building, lambda: _deps.edge().EdgeShard.create(str(building / SHARD_DIR), config)
            )
            for operation in schema.edge_index_operations(spec.payload_indexes):
                shard.update(operation)
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
        store = cls._load(name, folder, existing)
        try:
            store.add_payload_indexes(spec.payload_indexes)
        except BaseException:
            store.close()
            raise
        return store

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
        if (folder / SHARD_DIR / EDGE_CONFIG).exists():
            _check_shard_matches(folder, spec)
        shard = _load_shard(name, folder, schema.edge_config(spec, cls.tuning))
        return cls(name, spec, folder, shard)

    @classmethod
    def describe_at(cls, name: str, root: Path) -> dict[str, Any] | None:
        """``info()`` of ``<root>/<name>`` from its files, without loading the shard.

        None when the counts saved by the last clean close are missing or may be stale (the
        last process died with the shard open): then only loading the shard can count.
        Raises CollectionNotFoundError, or StoreLockedError while another process has it open.
        """
        folder = root / name
        spec = _read_spec(folder)
        if spec is None:
            raise CollectionNotFoundError(
                f"no qdrant-edge collection {name!r} in {root} (no {SPEC_FILE} in {folder})"
            )
        edge_state.check_unlocked(folder)
        stats = edge_state.read_stats(folder)
        if stats is None:
            return None
        closed = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stats.get("closed_at", 0)))
        return {
            "collection": name,
            "backend": cls.__name__,
            "spec": spec.to_dict(),
            "count": stats.get("count"),
            "engine": "qdrant-edge",
            "path": str(folder),
            "segments": stats.get("segments"),
            "indexed_vectors": stats.get("indexed_vectors"),
            "pending_optimize": 0,
            "storage": _placement(spec),
            "counted": f"at the last clean close ({closed}); the shard was not loaded",
        }

    # -- writes -------------------------------------------------------------------------
    def _write(self, records: Sequence[PreparedRecord]) -> None:
        qe = _deps.edge()
        self._live().update(
            qe.UpdateOperation.upsert_points(convert.edge_points(records, self.spec))
        )
        self._pending += len(records)
        self._pending_bytes += sum(r.nbytes for r in records)

    def _after_write(self) -> None:
        # Not per batch: every run makes a segment. Until then new points are searched
        # exactly (and visible at once).
        if self._pending_bytes >= self.optimize_bytes:
            self.optimize()
            self._flush_and_reload()

    def _create_payload_indexes(self, indexes: PayloadIndexes) -> None:
        shard = self._live()
        for operation in schema.edge_index_operations(indexes):
            shard.update(operation)

    def _save_spec(self) -> None:
        _write_spec(self.folder, self.spec)

    def optimize(self) -> None:
        """Build the HNSW graphs / quantization of what was written since the last call."""
        shard = self._live()
        with self._maintenance(
            "optimize", f"{self._pending} new points, {self._pending_bytes / 2**20:.0f} MiB"
        ):
            self._run("optimize", shard.optimize)
        self._pending = self._pending_bytes = 0

    def _flush_and_reload(self) -> None:
        """Persist, then reload the shard: unmaps what the optimize wrote (see optimize_bytes)."""
        with self._maintenance("flush", "persist and reload the shard"):
            shard = self._live()
            self._run("flush", shard.flush)
            shard.close()
            self._shard = None
            self._shard = _load_shard(
                self.name, self.folder, schema.edge_config(self.spec, self.tuning), reload=True
            )

    def _delete(self, ids: list[RecordId]) -> None:
        qe = _deps.edge()
        self._live().update(qe.UpdateOperation.delete_points(self._point_ids(ids)))

    # -- reads --------------------------------------------------------------------------
    def _execute(self, plan: SearchPlan, vectors: dict[str, Any]) -> list[Hit]:
        vectors, scores = convert.encode_query_tokens(self.spec, plan, vectors)
        request = convert.edge_request(
            plan, vectors, hnsw_ef=self.hnsw_ef, rescoring=self._rescoring()
        )
        return scores(self._hits(self._live().query(request)))

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
            payload_indexes={
                k: str(v.data_type).rsplit(".", 1)[-1].lower()
                for k, v in shard_info.payload_schema.items()
            },
            pending_optimize=self._pending,
            storage=_placement(self.spec),
        )
        return details

    # -- lifecycle ----------------------------------------------------------------------
    def flush(self) -> None:
        """Persist pending writes (the WAL already makes them durable) and build indexes."""
        if self._pending:
            self.optimize()
        self._run("flush", self._live().flush)

    def close(self) -> None:
        """Optimize what is pending, flush and release the folder lock (idempotent).

        A clean close saves the counts ``info`` reads without loading the shard.
        """
        if self._shard is None:
            return
        stats = None
        try:
            self.flush()
            shard_info = self._shard.info()
            stats = {
                "count": self.count(),
                "segments": shard_info.segments_count,
                "indexed_vectors": shard_info.indexed_vectors_count,
            }
        finally:
            self._shard.close()
            self._shard = None
            if stats is not None:
                edge_state.mark_closed(self.folder, stats)

    @contextmanager
    def released(self) -> Iterator[tuple[Path, str]]:
        """Close the shard for another process to open ``(root, name)``; reload it after.

        ``connectors.store_process`` uses it: the WAL lock admits one process at a time. The
        spec is read back afterwards (the other process may have added payload indexes).
        """
        self.close()
        try:
            yield self.folder.parent, self.name
        finally:
            self.spec = _read_spec(self.folder) or self.spec
            config = schema.edge_config(self.spec, self.tuning)
            self._shard = _load_shard(self.name, self.folder, config)

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


def _load_shard(name: str, folder: Path, config: Any, *, reload: bool = False) -> Any:
    """Load (or create) the shard: the lock is checked first, and a crash's WAL replay is
    announced before and timed after. ``config`` is the spec's, with the tuning of this
    version (segment bound); loading an older shard with it updates its optimizer settings.
    """
    qe = _deps.edge()
    shard_path = folder / SHARD_DIR
    edge_state.check_unlocked(folder)  # before anything is read or replayed
    # A reload by the store that just closed the shard finds its own marker: not a crash.
    died = None if reload else edge_state.unclean(folder)
    exists = (shard_path / EDGE_CONFIG).exists()
    if died is not None and exists:
        logger.warning(
            "qdrant-edge collection %r in %s was not closed cleanly (process %s died): "
            "replaying its write-ahead log (%.0f MiB of WAL segments) ...",
            name,
            folder,
            died.get("pid", "?"),
            edge_state.wal_bytes(folder) / 2**20,
        )
    start = time.perf_counter()
    if exists:
        shard = _guard_lock(folder, lambda: qe.EdgeShard.load(str(shard_path), config))
    else:
        shard = _guard_lock(folder, lambda: qe.EdgeShard.create(str(shard_path), config))
    seconds = time.perf_counter() - start
    if died is not None and exists:
        logger.warning("recovered qdrant-edge collection %r in %.1fs", name, seconds)
    elif not reload:
        logger.info("loaded qdrant-edge collection %r in %.2fs", name, seconds)
    edge_state.mark_open(folder)
    return shard


def _placement(spec: CollectionSpec) -> dict[str, str]:
    where = {True: "on disk (memory-mapped)", False: "in RAM", None: "default"}
    return {
        "token_vectors": where[spec.multivector_on_disk] if spec.multivector else "none",
        "dense_vectors": where[spec.dense_on_disk],
    }


def _guard_lock(folder: Path, call: Callable[[], T]) -> T:
    """Run EdgeShard.load/create; a WAL lock failure becomes StoreLockedError naming the folder."""
    try:
        return call()
    except Exception as e:  # qdrant-edge raises plain Exception with a Rust error string
        text = str(e)
        if "WouldBlock" in text or "lock" in text.lower():
            raise edge_state.locked_error(folder) from e
        raise


def _check_shard_matches(folder: Path, spec: CollectionSpec) -> None:
    """Refuse a shard whose vector sizes are not the spec's (a concurrent create before
    creation was atomic could leave one spec file over another process's shard)."""
    try:
        config = json.loads((folder / SHARD_DIR / EDGE_CONFIG).read_text(encoding="utf-8"))
        stored = {k: int(v["size"]) for k, v in config["vectors"].items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SchemaMismatchError(f"cannot read {folder / SHARD_DIR / EDGE_CONFIG}: {e}") from e
    wanted = {spec.dense_field: spec.dim, **{spec.prefix_field(k): k for k in spec.prefetch_dims}}
    if spec.multivector:
        wanted[spec.multivector_field] = schema.token_width(spec)
    if spec.muvera is not None:
        wanted[spec.muvera_field] = spec.muvera.dim
    if stored != wanted:
        raise SchemaMismatchError(
            f"qdrant-edge collection {folder} is damaged: {SPEC_FILE} says vectors {wanted}, "
            f"the shard holds {stored}. Drop the folder and ingest again."
        )


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

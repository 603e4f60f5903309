"""Keep a collection in step with its sources: stale records, vanished sources, duplicate ids.

Every record carries its source (``payload["source"]``). After a complete ingest, the
:class:`SourceLedger` knows every id each source gave in this run, so:

- **stale records** of a source (ids it no longer gives: an edited file's old chunks, a
  JSONL line whose record changed) are deleted, after the new ones are written, so a
  search finds the old version or the new one, never neither. A source with any failure
  in this run keeps its old records (its new version is not complete);
- **vanished sources** (``--prune``): records whose source lies under a given folder and
  no longer exists on disk are deleted;
- an id the store refuses (checked before anything is loaded) fails its own item only.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from connectors.base import VectorStore
from connectors.errors import ConnectorError, RecordError
from connectors.filters import Eq
from connectors.records import RecordId, check_id

logger = logging.getLogger(__name__)

_DELETE_BATCH = 512


class SourceLedger:
    """The ids each source gave in this run, and the sources with a failure."""

    def __init__(self) -> None:
        self.ids: dict[str, set[RecordId]] = {}
        self._failed: set[str] = set()
        self._lock = threading.Lock()

    def add(self, item: Any) -> None:
        """An item this run ingests (or finds unchanged): its id stays in the collection."""
        source = (getattr(item, "payload", None) or {}).get("source")
        if isinstance(source, str):
            self.ids.setdefault(source, set()).add(item.id)

    def fail(self, source: str) -> None:
        """A failure from ``source`` ("path", "path:line" or "path#page=N")."""
        with self._lock:
            self._failed.add(source)

    def failed(self, source: str) -> bool:
        with self._lock:
            return any(
                f == source or f.startswith((source + ":", source + "#")) for f in self._failed
            )

    def seen(self, source: str) -> bool:
        return source in self.ids or self.failed(source)


def stored_payloads(
    store: VectorStore, ids: list[RecordId]
) -> tuple[dict[RecordId, Any], dict[RecordId, Exception]]:
    """(payload by id for the ids the store holds, the error for each id it refuses).

    An id the store cannot hold (an int beyond 64 bits, a string it cannot quote) fails
    its own item, not the whole check; if every id fails alone, the store itself is at
    fault and the error is raised.
    """
    refused: dict[RecordId, Exception] = {}
    for record_id in ids:
        try:
            check_id(record_id)
        except (RecordError, ValueError, TypeError) as e:
            refused[record_id] = e
    valid = [i for i in ids if i not in refused]
    if not valid:
        return {}, refused
    try:
        return {r.id: r.payload for r in store.get(valid)}, refused
    except (ConnectorError, ValueError, TypeError) as e:
        batch_error = e
    stored: dict[RecordId, Any] = {}
    for record_id in valid:
        try:
            stored.update((r.id, r.payload) for r in store.get([record_id]))
        except (ConnectorError, ValueError, TypeError) as e:
            refused[record_id] = e
    if len(valid) > 1 and all(i in refused for i in valid):
        raise batch_error
    return stored, refused


def delete_stale(store: VectorStore, ledger: SourceLedger, lock: threading.Lock) -> int:
    """Delete each complete source's records whose ids it no longer gives; returns how many."""
    deleted = 0
    for source, kept in ledger.ids.items():
        with lock:
            stale = [r.id for r in store.scan(Eq("source", source)) if r.id not in kept]
            if stale and ledger.failed(source):
                logger.warning(
                    "kept %d older records of %s: some of its items failed in this run",
                    len(stale),
                    source,
                )
                continue
            _delete(store, stale)
        if stale:
            logger.info("deleted %d stale records of %s", len(stale), source)
        deleted += len(stale)
    return deleted


def prune_vanished(
    store: VectorStore, ledger: SourceLedger, roots: Iterable[str], lock: threading.Lock
) -> int:
    """Delete records whose source is under ``roots``, gone from disk and unseen in this run."""
    bases = [Path(r) for r in roots]
    by_source: dict[str, list[RecordId]] = {}
    on_disk: dict[str, str | bytes] = {}
    with lock:
        for record in store.scan():
            source = record.payload.get("source")
            if isinstance(source, str) and _under(Path(source), bases):
                by_source.setdefault(source, []).append(record.id)
                on_disk[source] = disk_name(record.payload)
    pruned = 0
    for source, ids in by_source.items():
        if ledger.seen(source) or os.path.lexists(on_disk[source]):
            continue
        with lock:
            _delete(store, ids)
        logger.info("pruned %d records of %s (no longer exists)", len(ids), source)
        pruned += len(ids)
    return pruned


def disk_name(payload: dict[str, Any]) -> str | bytes:
    """The file's real name: ``source_b64`` holds the bytes of a name that is not UTF-8."""
    encoded = payload.get("source_b64")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:
            pass
    return str(payload["source"])


def _under(path: Path, bases: list[Path]) -> bool:
    return any(path == base or base in path.parents for base in bases)


def _delete(store: VectorStore, ids: list[RecordId]) -> None:
    for lo in range(0, len(ids), _DELETE_BATCH):
        store.delete(ids[lo : lo + _DELETE_BATCH])

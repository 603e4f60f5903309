"""What a qdrant-edge collection folder tells without loading its shard: lock, crash, stats.

Loading an EdgeShard maps every segment, reads the in-RAM vectors through (dense vectors and
HNSW graphs: ~8 KB per document at 2048-d) and, after a crash, replays the write-ahead log
(measured on 2 cores: 2,000 unflushed 300-token points took 20 s). ``info`` needs none of it:

- the lock: qdrant-edge holds an exclusive ``flock`` on ``shard/wal`` while a shard is open,
  so a second process is refused here, before anything is loaded;
- a clean close: ``jina_vdb.open`` exists while a store has the shard open; one left behind
  means the last process died without closing (its WAL is replayed on the next load);
- the counts: written to ``jina_vdb.stats.json`` by every clean close, valid while no
  marker is present (only an open store can change the shard, and it leaves a marker).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import StoreLockedError

SHARD_DIR = "shard"
OPEN_MARKER = "jina_vdb.open"
STATS_FILE = "jina_vdb.stats.json"


def locked_error(folder: Path) -> StoreLockedError:
    """The error for a collection folder another process (or store) has open."""
    return StoreLockedError(
        f"qdrant-edge collection folder {folder} is already open in another process "
        "(or by another store in this one): one process per folder. Close it there, "
        "or use a Qdrant server for concurrent access."
    )


def check_unlocked(folder: Path) -> None:
    """Raise StoreLockedError when the shard's WAL lock is held (cheap: one flock attempt)."""
    wal = folder / SHARD_DIR / "wal"
    try:
        fd = os.open(wal, os.O_RDONLY)
    except FileNotFoundError:
        return  # no shard yet: nothing can hold it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise locked_error(folder) from None
    finally:
        os.close(fd)  # closing the descriptor releases our probe lock


def unclean(folder: Path) -> dict[str, Any] | None:
    """The marker a store that died with the shard open left behind (None after a clean close)."""
    try:
        data = json.loads((folder / OPEN_MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def mark_open(folder: Path) -> None:
    """Record that this process holds the shard (removed by ``mark_closed``)."""
    _write_json(folder / OPEN_MARKER, {"pid": os.getpid(), "since": time.time()})


def mark_closed(folder: Path, stats: dict[str, Any] | None) -> None:
    """After a clean close: save the counts ``info`` reads, then drop the marker (last)."""
    if stats is not None:
        _write_json(folder / STATS_FILE, {**stats, "closed_at": time.time()})
    with contextlib.suppress(FileNotFoundError):
        (folder / OPEN_MARKER).unlink()


def read_stats(folder: Path) -> dict[str, Any] | None:
    """The counts of the last clean close, or None when they may be stale or are missing."""
    if (folder / OPEN_MARKER).exists():
        return None
    try:
        data = json.loads((folder / STATS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def wal_bytes(folder: Path) -> int:
    """Bytes of WAL segments on disk (allocated, not apparent: segments are preallocated)."""
    wal = folder / SHARD_DIR / "wal"
    if not wal.is_dir():
        return 0
    return sum(p.stat().st_blocks * 512 for p in wal.iterdir() if p.is_file())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a reader never sees half a file

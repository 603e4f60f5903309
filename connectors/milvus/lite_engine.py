"""Milvus Lite's engine in this process: companion rows read without the gRPC loopback.

Milvus Lite 3 is pure Python: pymilvus starts its gRPC server in a thread of this process
(``milvus_lite.server_manager``) and talks to it over 127.0.0.1. A hybrid search's packed
token rows (100 candidates x 300 float16 tokens: ~10 MB of base64) cost ~75 ms on that path
on the project's 2-core machine: the server copies every string into a protobuf answer,
gRPC serialises it and streams it through loopback with flow control while both ends take
turns on the GIL, and pymilvus parses it back into rows. The engine's own point read
(``Collection.get``, what the server runs for a ``pk in [...]`` query) takes ~8 ms.

``LiteEngine`` calls that point read directly, for the rows of the packed layout (VARCHAR
fields only, so the values are the same Python strings gRPC would deliver). It is found by
the port the client talks to, so it is the very server the client uses, whoever opened it.
Nothing else goes around the client: writes, loads, searches and the documents rows keep
the gRPC path. Where the engine is not reachable (milvus-lite 2, whose server is a C++
subprocess, or a milvus-lite whose internals moved), reads use gRPC, with one WARNING.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)


class LiteEngine:
    """Point reads on the in-process Milvus Lite database behind one client."""

    def __init__(self, db: Any, database: str = "default") -> None:
        self._db = db
        self._database = database

    def rows(self, collection: str, keys: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        """Rows of ``collection`` with these primary keys (missing keys are skipped), each with
        its primary key and ``fields``: what a ``pk in [...]`` query returns."""
        col = self._db.get_collection(collection, database_name=self._database)
        return list(col.get(list(keys), output_fields=fields))


def find_engine(client: Any) -> LiteEngine | None:
    """The in-process Milvus Lite engine serving ``client``, or None (logged) if there is none
    this module knows how to reach."""
    try:
        manager = importlib.import_module("milvus_lite.server_manager").server_manager_instance
        address = str(client._get_connection().server_address)
        servers = dict(manager._servers)
        database = str(getattr(client._config, "db_name", "") or "default")
    except Exception as e:  # noqa: BLE001 - any mismatch means: not reachable, use gRPC
        logger.warning(
            "Milvus Lite's engine is not reachable in this process (%s): token rows are read "
            "through its gRPC server (~10x slower for a hybrid search's rerank)",
            e,
        )
        return None
    host, _, port = address.rpartition(":")
    for entry in servers.values():
        if not (isinstance(entry, tuple) and len(entry) == 3):
            continue
        _, db, served = entry
        if host in ("127.0.0.1", "localhost") and str(served) == port:
            if callable(getattr(db, "get_collection", None)):
                return LiteEngine(db, database)
    logger.warning(
        "no in-process Milvus Lite engine serves %s (milvus-lite 2 runs a separate server): "
        "token rows are read through gRPC (~10x slower for a hybrid search's rerank)",
        address,
    )
    return None

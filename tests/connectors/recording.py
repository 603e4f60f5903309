"""A real MilvusClient with a log of the requests a store sends through it.

It only records and passes every call on: the answers are the real client's (Milvus Lite or a
Milvus server), never made up here.
"""

from __future__ import annotations

from typing import Any


class RecordingClient:
    """Wraps a real ``pymilvus.MilvusClient``; ``calls`` holds (method, collection, output
    fields) and ``requests`` (method, keyword arguments) of every call, in order."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, Any, tuple[str, ...]]] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            fields = tuple(kwargs.get("output_fields") or ())
            self.calls.append((name, args[0] if args else None, fields))
            self.requests.append((name, dict(kwargs)))
            return attr(*args, **kwargs)

        return call

    def clear(self) -> None:
        self.calls.clear()
        self.requests.clear()

    def sent(self, method: str) -> list[dict[str, Any]]:
        """Keyword arguments of every ``method`` call, in order."""
        return [kwargs for m, kwargs in self.requests if m == method]

    def watch_engine(self, store: Any) -> None:
        """Record ``store``'s reads from Milvus Lite's in-process engine (lite_engine.py) too,
        as ("engine", collection, fields)."""
        engine = store._target.engine
        assert engine is not None, "no in-process Milvus Lite engine found"
        rows = engine.rows

        def counted(collection: str, keys: Any, fields: Any) -> Any:
            self.calls.append(("engine", collection, tuple(fields)))
            return rows(collection, keys, fields)

        engine.rows = counted

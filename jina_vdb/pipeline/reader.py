"""The reader thread: items -> (skip unchanged, drop duplicates) -> loaded content, in order.

It asks the store which ids it already holds with the same payload before anything is
decoded or encoded, and loads the rest (here, or in the preprocessing pool for images);
what it hands on is bounded in bytes (``flow.ByteBudget``).
"""

from __future__ import annotations

import functools
import re
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import Failure, Ignored
from ..flow import Stopped, content_bytes
from ..ingest_types import failure_of
from ..payload import item_location
from ..preprocess import PreprocessPool
from ..sources.items import Item, Modality
from ..sync import stored_payloads
from .state import END, Event, Loaded, PipelineState


def _file_key(entry: Item | Failure | Ignored, previous: str | None) -> str:
    """The file an entry comes from: its payload's source, or a failure's / ignored file's.

    A JSONL line's failure names ``file:line``: it belongs to the file being read.
    """
    if isinstance(entry, Item):
        return str(entry.payload.get("source"))
    source = entry.source
    if previous is not None and source.startswith(previous + ":"):
        return previous
    return re.sub(r":\d+$", "", source)  # a JSONL file whose first line failed


class ReadStage(PipelineState):
    """``_read`` runs in the reader thread; ``_deliver`` hands its messages to the encoder."""

    def _read(self, items: Any) -> None:
        pending: list[tuple[Any, int]] = []
        seen: dict[Any, Any] = {}  # id -> the payload of its first item (a shared dict)
        file_key, file_no = None, -1
        for item in items:
            if self.stop.is_set():
                raise Stopped
            key = _file_key(item, file_key)
            if key != file_key:  # sources yield a file's entries together
                if file_no >= 0:
                    self.tally.close_file(file_no)
                file_key, file_no = key, file_no + 1
            self.tally.expect(file_no)
            if isinstance(item, Ignored):
                self.ahead.emit(Event("ignored", file_no, ignored=item))
            elif isinstance(item, Failure):
                self.ledger.fail(item.source)
                self.ahead.emit(Event("failed", file_no, item))
            elif item.id in seen:
                first = item_location(seen[item.id])
                repeat = Failure(
                    item_location(item.payload),
                    f"id {item.id!r} is already used by {first}; only the first is ingested",
                    item.id,
                )
                self.ahead.emit(Event("duplicate", file_no, failure=repeat))
            else:
                seen[item.id] = item.payload
                self.ledger.add(item)
                pending.append((item, file_no))
                if len(pending) >= self.opts.check_batch:
                    self._check_and_load(pending)
                    pending = []
        self._check_and_load(pending)
        self.ahead.drain()
        if file_no >= 0:
            self.tally.close_file(file_no)
        self._put(self.loaded, END)

    def _check_and_load(self, pending: list[tuple[Any, int]]) -> None:
        stored: dict[Any, Any] = {}
        refused: dict[Any, Exception] = {}
        if pending and self.opts.skip_existing:
            with self.tally.clock("read"), self.store_lock:
                if self.stop.is_set():
                    raise Stopped
                stored, refused = stored_payloads(self.store, [it.id for it, _ in pending])
        for item, file_no in pending:
            if item.id in refused:  # an id this store cannot hold: that item fails alone
                self.ahead.emit(Event("failed", file_no, failure_of(item, refused[item.id])))
                continue
            if item.id in stored and stored[item.id] == item.payload:
                self.ahead.emit(Event("skipped", file_no))
                continue
            updated = item.id in stored  # same id, changed content or payload: replaced
            if self._in_pool(item):
                finish = functools.partial(self._loaded_in_pool, item, file_no, updated)
                self.ahead.emit_load(self.pool.submit(item), finish)  # type: ignore[union-attr]
                continue
            self.ahead.emit(self._load_here(item, file_no, updated))

    def _in_pool(self, item: Item) -> bool:
        return self.pool is not None and item.modality is not Modality.TEXT and self.pool.ready()

    def _loaded_in_pool(self, item: Item, file_no: int, updated: bool, future: Any) -> Any:
        try:
            content = PreprocessPool.result(future)
        except BrokenProcessPool as e:  # a worker died: this item and the rest load here
            self.pool.broken(e)  # type: ignore[union-attr]
            return self._load_here(item, file_no, updated)
        except Exception as e:
            return Event("failed", file_no, failure_of(item, e))
        return self._loaded(item, content, file_no, updated)

    def _load_here(self, item: Item, file_no: int, updated: bool) -> Any:
        try:
            with self.tally.clock("read"):
                content = item.load()
        except Exception as e:
            return Event("failed", file_no, failure_of(item, e))
        return self._loaded(item, content, file_no, updated)

    def _loaded(self, item: Item, content: Any, file_no: int, updated: bool) -> Loaded:
        if updated:
            self.tally.add("updated")
        return Loaded(item, content, file_no, content_bytes(content))

    def _deliver(self, message: Any) -> None:
        """To the encoder, in input order; loaded content first takes its bytes (which
        blocks while the encoder holds too much)."""
        if isinstance(message, Loaded):
            self.budget.take(message.nbytes, self.stop)
        self._put(self.loaded, message)

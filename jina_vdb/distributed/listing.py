"""The driver's share of a Ray ingest: what each listed file needs, and the running summary.

The same decisions as the local pipeline's reader (``jina_vdb.pipeline.reader``), taken on the
driver, file by file in walk order (so "the first item with an id" means the same thing):
duplicates, failures and ignored files are counted, ids are checked against the store
before anything is loaded or encoded, and what remains is the file's work. No ray here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from connectors.base import VectorStore

from ..errors import Failure, Ignored, SourceError
from ..ingest_types import IngestOptions, Tally, failure_of
from ..payload import item_location
from ..pipeline.steps import report_failure
from ..sources.items import Item
from ..sync import SourceLedger, stored_payloads

logger = logging.getLogger(__name__)

#: A file's work: the ids to encode, or None for all of its items (the usual first run).
Wanted = set[Any] | None


class Listing:
    """Decides, per listed file, which items to encode; reports everything else.

    Args:
        store: the collection (ids are checked against it in ``check_batch`` groups).
        options: the ingest options (``skip_existing``, ``strict``, ``check_batch``).
        tally: the run's counts and progress.
        source_strict: a bad source raises SourceError (``SourceOptions.strict``).
    """

    def __init__(
        self, store: VectorStore, options: IngestOptions, tally: Tally, *, source_strict: bool
    ) -> None:
        self.store, self.opts, self.tally = store, options, tally
        self.source_strict = source_strict
        self.ledger = SourceLedger()
        self._first: dict[Any, str] = {}  # id -> where its first item is (duplicates)

    def file(self, file_no: int, entries: Iterable[Item | Failure | Ignored]) -> Wanted | set[Any]:
        """Count one file's entries; returns its work (an empty set: nothing to encode)."""
        pending: list[Item] = []
        whole = True  # every item of the file is in ``pending``, in order
        for entry in entries:
            self.tally.expect(file_no)
            if isinstance(entry, Ignored):
                logger.debug("ignored %s: %s", entry.source, entry.reason)
                self.tally.ignore(entry, file_no)
            elif isinstance(entry, Failure):
                if self.source_strict:
                    raise SourceError(f"{entry.source}: {entry.reason}")
                self.fail(entry, file_no)
            elif entry.id in self._first:
                whole = False
                repeat = Failure(
                    item_location(entry.payload),
                    f"id {entry.id!r} is already used by {self._first[entry.id]}; "
                    "only the first is ingested",
                    entry.id,
                )
                logger.warning("duplicate %s: %s", repeat.source, repeat.reason)
                self.tally.duplicate(repeat, file_no)
            else:
                self._first[entry.id] = item_location(entry.payload)
                self.ledger.add(entry)
                pending.append(entry)
        wanted: set[Any] = set()
        step = self.opts.check_batch
        for lo in range(0, len(pending), step):
            wanted |= self._unstored(pending[lo : lo + step], file_no)
        self.tally.close_file(file_no)
        if whole and len(wanted) == len(pending):
            return None if wanted else set()
        return wanted

    def _unstored(self, items: list[Item], file_no: int) -> set[Any]:
        """The ids of ``items`` to encode: not stored, or stored with another payload."""
        if not self.opts.skip_existing:
            return {it.id for it in items}
        with self.tally.clock("read"):
            stored, refused = stored_payloads(self.store, [it.id for it in items])
        wanted = set()
        for item in items:
            if item.id in refused:  # an id this store cannot hold: that item fails alone
                self.fail(failure_of(item, refused[item.id]), file_no)
            elif item.id in stored and stored[item.id] == item.payload:
                self.tally.add("skipped", done=(file_no,))
            else:
                if item.id in stored:
                    self.tally.add("updated")  # same id, changed content or payload
                wanted.add(item.id)
        return wanted

    def fail(self, failure: Failure, file_no: int) -> None:
        """A failed item or source: reported (strict: raised), its source keeps old records."""
        report_failure(failure, file_no, self.ledger, self.tally, strict=self.opts.strict)

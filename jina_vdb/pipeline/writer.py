"""The writer thread: vectors -> records -> upserts, a refused record failing alone."""

from __future__ import annotations

import logging
import queue
from collections.abc import Sequence

from connectors.records import Record, records_from_batch

from ..flow import Stopped
from ..ingest_types import failure_of
from .state import END, Loaded, PipelineState
from .steps import upsert_or_isolate

logger = logging.getLogger(__name__)


class WriteStage(PipelineState):
    """``_write`` runs in the writer thread."""

    def _write(self) -> None:
        while True:
            try:
                msg = self.encoded.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    raise Stopped from None
                continue
            if msg is END:
                return
            loaded, batch = msg
            items = [m.item for m in loaded]
            records = records_from_batch(
                batch, [it.id for it in items], [it.payload for it in items]
            )
            step = self.opts.write_batch
            for lo in range(0, len(records), step):
                self._write_slice(loaded[lo : lo + step], records[lo : lo + step])

    def _write_slice(self, loaded: Sequence[Loaded], records: Sequence[Record]) -> None:
        # Small upsert calls: a DB binding may hold the GIL for a whole call, stalling the encoder.
        with self.tally.clock("write"):
            written = upsert_or_isolate(
                self.store,
                records,
                self.store_lock,
                lambda i, e: self._fail(failure_of(loaded[i].item, e), loaded[i].file_no),
            )
            done = [loaded[i].file_no for i in written]
        total = self.tally.add("added", len(written), done=done)
        logger.debug("upserted %d records (%d so far)", len(written), total)

"""The encoder stage, in the calling thread: loaded content -> batches -> vectors.

Texts and images are batched apart (texts by count and tokens); a batch that fails is
retried one item at a time, so one bad input fails alone.
"""

from __future__ import annotations

import logging
import queue
from typing import Any

from ..errors import IngestError
from ..flow import Stopped
from ..ingest_types import failure_of
from ..sources.items import Modality
from .state import END, FLUSH, Event, Loaded, PipelineState
from .steps import call_encoder, is_item_fault

logger = logging.getLogger(__name__)


class EncodeStage(PipelineState):
    """``_encode_loop`` runs in the calling thread (where the GPU works)."""

    def _encode_loop(self) -> None:
        texts: list[Loaded] = []
        images: list[Loaded] = []
        text_tokens = 0
        while True:
            msg = self._next_loaded()
            if msg is END:
                break
            if msg is FLUSH:
                if texts:
                    self._encode(texts, text=True)
                    texts, text_tokens = [], 0
                if images:
                    self._encode(images, text=False)
                    images = []
                continue
            if isinstance(msg, Event):
                self._on_event(msg)
                continue
            if msg.item.modality is Modality.TEXT:
                texts.append(msg)
                text_tokens += int(msg.item.cost)
            else:
                images.append(msg)
            if len(texts) >= self.opts.text_batch or text_tokens >= self.opts.text_batch_tokens:
                self._encode(texts, text=True)
                texts, text_tokens = [], 0
            if len(images) >= self.opts.image_batch:
                self._encode(images, text=False)
                images = []
        if texts:
            self._encode(texts, text=True)
        if images:
            self._encode(images, text=False)
        self._put(self.encoded, END)

    def _next_loaded(self) -> Any:
        try:
            return self.loaded.get_nowait()
        except queue.Empty:
            pass
        with self.tally.clock("wait_read"):  # the encoder idles: the reader is behind
            while not self.stop.is_set():
                try:
                    return self.loaded.get(timeout=0.1)
                except queue.Empty:
                    if self.budget.starved:
                        return FLUSH
        raise Stopped

    def _on_event(self, event: Event) -> None:
        if event.kind == "duplicate" and event.failure is not None:
            logger.warning("duplicate %s: %s", event.failure.source, event.failure.reason)
            self.tally.duplicate(event.failure, event.file_no)
        elif event.failure is not None:
            self._fail(event.failure, event.file_no)
        elif event.ignored is not None:
            logger.debug("ignored %s: %s", event.ignored.source, event.ignored.reason)
            self.tally.ignore(event.ignored, event.file_no)
        else:
            self.tally.add("skipped", done=(event.file_no,))

    def _encode(self, batch: list[Loaded], *, text: bool) -> None:
        try:
            with self.tally.clock("encode"):
                out = self._call_encoder(batch, text=text)
        except Exception as e:
            if len(batch) == 1:
                self._fail(failure_of(batch[0].item, e), batch[0].file_no)
            else:
                logger.info(
                    "a batch of %d failed to encode (%s); retrying one by one", len(batch), e
                )
                self._encode_one_by_one(batch, text=text, batch_error=e)
        else:
            self._count_encoded(batch, text=text)
            with self.tally.clock("wait_write"):  # blocked when the writer is behind
                self._put(self.encoded, (batch, out))
        finally:
            self.budget.give(sum(m.nbytes for m in batch))

    def _count_encoded(self, batch: list[Loaded], *, text: bool) -> None:
        """Tokens / images encoded (only what the encoder returned vectors for)."""
        if text:
            self.tally.add("tokens", sum(int(m.item.cost) for m in batch))
        else:
            self.tally.add("pages", len(batch))

    def _encode_one_by_one(
        self, batch: list[Loaded], *, text: bool, batch_error: Exception
    ) -> None:
        failures, broken = [], 0
        for m in batch:
            try:
                out = self._call_encoder([m], text=text)
            except Exception as e:
                failures.append((failure_of(m.item, e), m.file_no))
                broken += not is_item_fault(e)
                continue
            self._count_encoded([m], text=text)
            self._put(self.encoded, ([m], out))
        if broken == len(batch):
            # Every item failing alone, none for its input, means the encoder is broken:
            # stop, rather than report each item (bad inputs are reported one by one).
            raise IngestError(
                f"the encoder failed on every item of a batch of {len(batch)}: {batch_error}"
            ) from batch_error
        for failure, file_no in failures:
            self._fail(failure, file_no)

    def _call_encoder(self, batch: list[Loaded], *, text: bool) -> Any:
        return call_encoder(
            self.encoder,
            [m.item for m in batch],
            [m.content for m in batch],
            text=text,
            multivector=self.store.spec.multivector,
            options=self.opts,
        )

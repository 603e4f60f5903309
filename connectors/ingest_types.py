"""The ingestion pipeline's data types: what goes in (items, an encoder), what comes out.

Duck-typed on purpose: no torch and no PIL here. ``embedder.sources.Item`` /
``ItemError`` and ``embedder.JinaV4Embedder`` satisfy these protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .errors import ConnectorError
from .records import RecordId


class Encoder(Protocol):
    """What the pipeline needs from ``embedder.JinaV4Embedder``.

    Called as ``encode_text(texts, task=, prompt_name="passage", multivector=, max_length=,
    show_progress=False)`` and ``encode_image(images, task=, multivector=, show_progress=False
    [, max_pixels=])``; ``task`` is one str or one per item.
    """

    def encode_text(self, texts: list[str], *, task: Any, prompt_name: str = ..., **kw: Any) -> Any: ...

    def encode_image(self, images: list[Any], *, task: Any, **kw: Any) -> Any: ...


class IngestItem(Protocol):
    """One thing to embed (``embedder.sources.Item``)."""

    id: RecordId
    modality: Any  # "text" | "image" (a str-Enum is fine)
    task: str
    payload: dict[str, Any]
    cost: int  # tokens for a text, 1 for an image

    def load(self) -> Any: ...


@runtime_checkable
class SourceFailure(Protocol):
    """A source that could not be read (``embedder.sources.ItemError``)."""

    source: str
    reason: str


class IngestError(ConnectorError):
    """Ingestion stopped: a failure in strict mode, or a stage that cannot go on."""


@dataclass(frozen=True)
class Failure:
    """One item or source that was not ingested, and why."""

    source: str
    reason: str
    id: RecordId | None = None


@dataclass
class IngestSummary:
    """What an ingest did. ``skipped`` counts items already present in the store."""

    added: int = 0
    skipped: int = 0
    duplicates: int = 0  # the same id twice in the input: ingested once
    failed: list[Failure] = field(default_factory=list)
    tokens: int = 0
    pages: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """Human-readable summary lines (the CLI prints them)."""
        rate = (self.added / self.seconds) if self.seconds else 0.0
        head = (
            f"added {self.added}, skipped {self.skipped} (already present), failed {len(self.failed)}"
            + (f", duplicates in input {self.duplicates}" if self.duplicates else "")
            + f" in {self.seconds:.1f}s ({rate:.1f} items/s; {self.tokens} tokens, {self.pages} images/pages encoded)"
        )
        return [head] + [f"  failed: {f.source}: {f.reason}" for f in self.failed]


@dataclass(frozen=True)
class IngestOptions:
    """Batching and behaviour of :func:`ingest`.

    Attributes:
        text_batch: texts per encode call (the encoder sorts and sub-batches by tokens).
        image_batch: images (pages) per encode call.
        check_batch: ids per existence check (``store.get``).
        queue_size: items loaded ahead of the encoder; batches queued for the writer.
        max_length: token limit per text passed to ``encode_text``.
        max_pixels: per-image pixel budget passed to ``encode_image`` (None: the model's).
        strict: stop at the first failure (raise IngestError) instead of skipping it.
        progress: tqdm bar; None follows the log level (shown when INFO is enabled).
    """

    text_batch: int = 32
    image_batch: int = 8
    check_batch: int = 64
    queue_size: int = 64
    max_length: int = 32768
    max_pixels: int | None = None
    strict: bool = False
    progress: bool | None = None

    def __post_init__(self) -> None:
        for name in ("text_batch", "image_batch", "check_batch", "queue_size", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


def failure_of(item: Any, error: BaseException | str) -> Failure:
    """A Failure for an item (its source from the payload) and an error."""
    payload = getattr(item, "payload", None) or {}
    source = str(payload.get("source", item.id))
    if payload.get("page") is not None:
        source += f"#page={payload['page']}"
    if payload.get("line") is not None:
        source += f":{payload['line']}"
    reason = error if isinstance(error, str) else (str(error) or type(error).__name__)
    return Failure(source=source, reason=reason, id=item.id)




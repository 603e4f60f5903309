"""Errors raised by the embedder. Every message names the bad value and, for batches, the item."""

from __future__ import annotations


class EmbedderError(Exception):
    """Base class for every error the embedder raises on purpose."""


class MissingDependencyError(EmbedderError, ImportError):
    """A package the model needs is not installed; the message names the extra to install."""


class CheckpointError(EmbedderError, ValueError):
    """A checkpoint folder is incomplete or does not match the expected layout."""


class InputError(EmbedderError, ValueError):
    """A bad text or image input. ``index`` is the item's position in the batch (or None)."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        self.index = index
        prefix = f"item {index}: " if index is not None else ""
        super().__init__(prefix + message)


class ImageInputError(InputError):
    """An image that cannot be read, fetched or decoded."""


class TextInputError(InputError):
    """A text that is None, not a string, or empty."""


class OptionError(EmbedderError, ValueError):
    """A bad option value (task, prompt_name, truncate_dim, device...); lists the valid ones."""


def preview(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters for messages."""
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown):,} chars)"

"""The application's errors, and the value a failed source or item is reported as.

Two names for one idea, a source or item that could not be ingested: :class:`Failure` is
the *reported* form (a value: the sources yield it, the pipeline collects it in the
summary and goes on), :class:`SourceError` the *raised* form (strict mode, or a file the
renderer cannot open). :class:`IngestError` means the pipeline itself stopped.
:class:`Ignored` is no failure: a file left out on purpose, counted in the summary.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.records import RecordId


class JinaVdbError(Exception):
    """Base class for every error the application raises on purpose."""


class MissingDependencyError(JinaVdbError, ImportError):
    """An optional package is not installed; the message names the extra to install."""


class SourceError(JinaVdbError, ValueError):
    """A source or item that cannot be read (the message names the file, page or line)."""


class IngestError(JinaVdbError, RuntimeError):
    """Ingestion stopped: a failure in strict mode, or a stage that cannot go on."""


@dataclass(frozen=True)
class Failure:
    """A source or item that was not ingested, and why (reported, not raised).

    Attributes:
        source: where it came from: the file, ``file#page=N`` or ``file.jsonl:LINE``.
        reason: what was wrong.
        id: the item's id, when it got that far.
    """

    source: str
    reason: str
    id: RecordId | None = None


@dataclass(frozen=True)
class Ignored:
    """A file left out on purpose (an unsupported type, no content): counted, not failed."""

    source: str
    reason: str

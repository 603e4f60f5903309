"""Collections know their model: the record written at create time and the check on use.

A collection built with one model and queried with another returns neighbours that mean
nothing, silently (the tiny random model against the real one, two fine-tunes, two task
adapters). The application records, in the collection's spec metadata (``spec.extra``, kept
opaque by the connectors), the model's identity (``embedder.identity``) and the LoRA tasks
its vectors were made with; an ingest or a search with another model or task is refused
with a message saying both, unless the caller allows the mismatch (a WARNING then).
Collections created before the record existed keep working, with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from connectors.base import VectorStore
from connectors.spec import CollectionSpec

logger = logging.getLogger(__name__)

#: Key of the record in ``CollectionSpec.extra``.
MODEL_KEY = "model"
ALLOW_HINT = "pass --allow-model-mismatch (allow_model_mismatch=True) to use it anyway"


class ModelMismatchError(ValueError):
    """The collection was made with another model or task than the one in use."""


def model_record(encoder: Any, tasks: Iterable[str]) -> dict[str, Any] | None:
    """What a new collection records: the encoder's identity and the tasks it embeds with.

    None when the encoder has no identity (e.g. a stand-in encoder in a test).
    """
    identity = getattr(encoder, "identity", None)
    if identity is None:
        return None
    return {**identity.to_dict(), "tasks": sorted(set(tasks))}


def with_model(spec: CollectionSpec, record: dict[str, Any] | None) -> CollectionSpec:
    """The spec a new collection is created with: ``spec`` plus the model record."""
    if record is None:
        return spec
    return dataclasses.replace(spec, extra={**spec.extra, MODEL_KEY: record})


def _describe(record: dict[str, Any]) -> str:
    revision = f"@{record['revision'][:12]}" if record.get("revision") else ""
    return f"{record.get('name')!r}{revision} (fingerprint {record.get('fingerprint')})"


def check_model(
    store: VectorStore,
    record: dict[str, Any] | None,
    *,
    action: str,
    allow_mismatch: bool = False,
) -> None:
    """Refuse to ``action`` (e.g. "search") a collection with another model or task.

    Raises:
        ModelMismatchError: naming the collection's model and tasks and the ones in use.
    """
    stored = store.spec.extra.get(MODEL_KEY)
    if record is None:
        return
    if not isinstance(stored, dict):
        logger.warning(
            "collection %r does not record which model made its vectors (created before "
            "jina-vdb recorded it): cannot check that this %s uses the same model",
            store.name,
            action,
        )
        return
    problems = []
    if stored.get("fingerprint") != record["fingerprint"]:
        problems.append(
            f"its vectors were made by {_describe(stored)}, this {action} uses {_describe(record)}"
        )
    missing = sorted(set(record["tasks"]) - set(stored.get("tasks") or ()))
    if missing:
        problems.append(
            f"its vectors were made with task(s) {', '.join(stored.get('tasks') or ())}, "
            f"this {action} uses {', '.join(missing)}"
        )
    if not problems:
        return
    message = (
        f"collection {store.name!r}: {'; and '.join(problems)}. Scores across models or "
        f"tasks mean nothing: use the collection's model and task, or {ALLOW_HINT}"
    )
    if allow_mismatch:
        logger.warning("%s (allowed)", message.split(". Scores")[0])
        return
    raise ModelMismatchError(message)

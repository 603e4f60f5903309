"""The CLI's option defaults are the library's own defaults (written once, in the library)."""

from __future__ import annotations

import typer.main

from embedder.options import Task
from jina_vdb.cli.app import app
from jina_vdb.ingest_types import IngestOptions
from jina_vdb.sources import SourceOptions


def _defaults(command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    return {p.name: p.default for p in cmd.params}


def test_ingest_defaults_are_the_library_defaults() -> None:
    cli, source, ingest = _defaults("ingest"), SourceOptions(), IngestOptions()
    assert cli["task"] == source.task
    assert cli["dpi"] == source.pdf_dpi
    assert cli["pdf_text"] is source.pdf_text
    assert cli["chunk_tokens"] == source.chunk_tokens
    assert cli["chunk_overlap"] == source.chunk_overlap
    assert cli["strict"] is source.strict is ingest.strict
    assert cli["batch_size"] == ingest.text_batch
    assert cli["batch_tokens"] == ingest.text_batch_tokens
    assert cli["image_batch_size"] == ingest.image_batch
    assert cli["max_pixels"] is ingest.max_pixels
    assert cli["force"] is not ingest.skip_existing


def test_search_task_default_is_a_model_task() -> None:
    assert Task.parse(_defaults("search")["task"]) is Task.RETRIEVAL

"""Collections know their model (issue 9 item 15): recorded at create, checked on every use.

A collection built with one tiny checkpoint and queried with another (another seed: another
model) was searched silently. Now the CLI refuses, naming both models, unless told
``--allow-model-mismatch``; a task the collection was not built with is refused the same way;
collections without a record keep working, with a warning.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest_helpers import run_cli, write_text_corpus

from connectors import CollectionSpec
from connectors.qdrant import QdrantStore
from embedder.identity import checkpoint_fingerprint, checkpoint_identity
from embedder.testing import make_tiny_checkpoint


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model: same architecture and files, other random weights."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-seed-1"), seed=1)


run = run_cli


def test_fingerprint_follows_the_weights_not_the_folder(
    tiny_checkpoint, other_checkpoint, tmp_path
):
    copy = make_tiny_checkpoint(tmp_path / "again", seed=0)
    assert checkpoint_fingerprint(copy) == checkpoint_fingerprint(tiny_checkpoint)
    assert checkpoint_fingerprint(other_checkpoint) != checkpoint_fingerprint(tiny_checkpoint)
    identity = checkpoint_identity("x", copy)
    assert identity.revision == "" and len(identity.fingerprint) == 16


@pytest.mark.slow
def test_cli_refuses_another_model_or_task_unless_allowed(
    tmp_path, tiny_checkpoint, other_checkpoint
):
    write_text_corpus(tmp_path / "docs", n=4)
    where = ("--store", f"qdrant:{tmp_path / 'q'}", "--collection", "docs")
    mine, other = ("--model", str(tiny_checkpoint)), ("--model", str(other_checkpoint))
    created = run("ingest", str(tmp_path / "docs"), *where, *mine, "-q")
    assert created.returncode == 0, created.stderr
    with QdrantStore.open("docs", path=tmp_path / "q") as store:
        recorded = store.spec.extra["model"]
    assert recorded["fingerprint"] == checkpoint_fingerprint(tiny_checkpoint)
    assert recorded["tasks"] == ["retrieval"]

    for refused, what in (
        (run("search", "document", *where, *other), "search"),
        (run("ingest", str(tmp_path / "docs"), *where, *other, "-q", "--force"), "ingest"),
    ):
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 1 and len(lines) == 1, refused.stderr
        assert checkpoint_fingerprint(other_checkpoint) in lines[0]
        assert checkpoint_fingerprint(tiny_checkpoint) in lines[0]
        assert f"this {what} uses" in lines[0] and "--allow-model-mismatch" in lines[0]

    task = run("search", "document", *where, *mine, "--task", "code")
    assert task.returncode == 1 and "task(s) retrieval, this search uses code" in task.stderr

    allowed = run("search", "document", *where, *other, "--allow-model-mismatch", "--limit", "2")
    assert allowed.returncode == 0, allowed.stderr
    assert "(allowed)" in allowed.stderr


@pytest.mark.slow
def test_collections_without_a_record_keep_working_with_a_warning(tmp_path, tiny_checkpoint):
    root = tmp_path / "q"
    QdrantStore.create("old", path=root, spec=CollectionSpec(dim=64, prefetch_dims=(16,))).close()
    write_text_corpus(tmp_path / "docs", n=3)
    where = ("--store", f"qdrant:{root}", "--collection", "old")
    mine = ("--model", str(tiny_checkpoint))
    ingested = run("ingest", str(tmp_path / "docs"), *where, *mine, "-q")
    assert ingested.returncode == 0, ingested.stderr
    assert "added 3" in ingested.stdout
    assert "does not record which model" in ingested.stderr
    searched = run("search", "document", *where, *mine)
    assert searched.returncode == 0 and "does not record which model" in searched.stderr

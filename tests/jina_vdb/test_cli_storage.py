"""``jina-vdb ingest --token-pooling / --token-quantization / --dense-quantization``, in
subprocesses: a new collection records them, the pipeline stores pooled token vectors, and
a backend that cannot honour an option refuses it before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

from ingest_helpers import run_cli

from connectors.qdrant import QdrantStore
from jina_vdb.sources.samples import write_sample_corpus


def _ingest(corpus: Path, store: str, collection: str, model: Path, *flags: str):
    return run_cli(
        "ingest", str(corpus), "--store", store, "--collection", collection,
        "--model", str(model), "--device", "cpu", "--task", "retrieval", "-q", *flags,
    )  # fmt: skip


def _tokens(folder: Path, collection: str) -> dict[object, int]:
    with QdrantStore.open(collection, path=folder) as store:
        ids = [r.id for r in store.scan()]
        return {r.id: len(r.multivector) for r in store.get(ids, with_vectors=True)}


def test_pooled_quantized_collection_from_the_cli(tmp_path: Path, tiny_checkpoint: Path) -> None:
    corpus = tmp_path / "corpus"
    write_sample_corpus(corpus)
    (corpus / "images").rename(tmp_path / "images")  # text only: quicker, same pipeline
    store = f"qdrant:{tmp_path / 'q'}"
    plain = _ingest(corpus, store, "plain", tiny_checkpoint)
    assert plain.returncode == 0, plain.stderr
    flags = (
        "--token-pooling",
        "2",
        "--token-quantization",
        "binary",
        "--dense-quantization",
        "int8",
    )
    pooled = _ingest(corpus, store, "pooled", tiny_checkpoint, *flags)
    assert pooled.returncode == 0, pooled.stderr

    info = run_cli("info", "--store", store, "--collection", "pooled", "--json")
    spec = json.loads(info.stdout)["spec"]
    assert spec["token_pooling"] == 2
    assert (spec["multivector_quantization"], spec["quantization"]) == ("binary", "int8")
    full, kept = _tokens(tmp_path / "q", "plain"), _tokens(tmp_path / "q", "pooled")
    assert full.keys() == kept.keys() and len(full) > 3
    for key, t in full.items():  # each document keeps at most half its tokens
        assert 1 <= kept[key] <= max(t // 2, 1), (key, t, kept[key])
    assert sum(kept.values()) < 0.6 * sum(full.values())

    # the options are the collection's: asking for others is a mismatch, nothing changes
    other = _ingest(corpus, store, "pooled", tiny_checkpoint, "--token-pooling", "3")
    assert other.returncode == 1
    assert "token_pooling: existing=2, requested=3" in other.stderr
    assert _tokens(tmp_path / "q", "pooled") == kept
    hits = run_cli(
        "search", "quarterly revenue", "--store", store, "--collection", "pooled",
        "--model", str(tiny_checkpoint), "--device", "cpu", "--json",
    )  # fmt: skip
    assert hits.returncode == 0 and json.loads(hits.stdout), hits.stderr


def test_options_a_backend_cannot_honour_are_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "a.txt").parent.mkdir()
    (corpus / "a.txt").write_text("one short text")
    milvus = f"milvus:{tmp_path / 'm.db'}"
    refused = _ingest(corpus, milvus, "docs", tiny_checkpoint, "--token-quantization", "int8")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not implement multivector_quantization='int8'" in lines[0]
    info = run_cli("info", "--store", milvus, "--collection", "docs")
    assert info.returncode == 1 and "no collection 'docs'" in info.stderr  # nothing created

    bad = _ingest(corpus, milvus, "docs", tiny_checkpoint, "--token-pooling", "1")
    assert bad.returncode == 2 and "--token-pooling" in bad.stderr  # usage error
    dense_only = _ingest(
        corpus, milvus, "docs", tiny_checkpoint, "--no-multivector", "--token-pooling", "2"
    )
    assert dense_only.returncode == 1
    assert dense_only.stderr.startswith("error: --token-pooling and --token-quantization")
    assert "cannot go with --no-multivector" in dense_only.stderr


def test_compact_storage_preset(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """``--storage compact``: pooled uint8 token vectors and float16 dense vectors, recorded,
    searchable; Milvus refuses it in one line and creates nothing."""
    corpus = tmp_path / "corpus"
    write_sample_corpus(corpus)
    (corpus / "images").rename(tmp_path / "images")
    store = f"qdrant:{tmp_path / 'q'}"
    done = _ingest(corpus, store, "compact", tiny_checkpoint, "--storage", "compact")
    assert done.returncode == 0, done.stderr
    spec = json.loads(
        run_cli("info", "--store", store, "--collection", "compact", "--json").stdout
    )["spec"]
    assert (spec["token_pooling"], spec["multivector_dtype"], spec["dense_dtype"]) == (
        4,
        "uint8",
        "float16",
    )
    assert spec["quantization"] == "binary"  # the dense stage walks bit codes
    hits = run_cli(
        "search", "quarterly revenue", "--store", store, "--collection", "compact",
        "--model", str(tiny_checkpoint), "--device", "cpu", "--json",
    )  # fmt: skip
    assert hits.returncode == 0 and json.loads(hits.stdout), hits.stderr

    conflict = _ingest(
        corpus,
        store,
        "other",
        tiny_checkpoint,
        "--storage",
        "compact",
        "--token-quantization",
        "int8",
    )
    assert conflict.returncode == 1
    assert conflict.stderr.startswith("error: --token-quantization needs float token vectors")

    # An explicit --dense-quantization overrides the preset's binary copy, like --token-pooling.
    plain = _ingest(
        corpus, store, "nobq", tiny_checkpoint, "--storage", "compact",
        "--dense-quantization", "none",
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    spec = json.loads(run_cli("info", "--store", store, "--collection", "nobq", "--json").stdout)
    assert (spec["spec"]["quantization"], spec["spec"]["token_pooling"]) == ("none", 4)

    milvus = f"milvus:{tmp_path / 'm.db'}"
    refused = _ingest(corpus, milvus, "docs", tiny_checkpoint, "--storage", "compact")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not implement" in lines[0], refused.stderr
    info = run_cli("info", "--store", milvus, "--collection", "docs")
    assert info.returncode == 1 and "no collection 'docs'" in info.stderr


def test_balanced_storage_preset(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """``--storage balanced``: pool 3 + uint8 token vectors + float16 dense, recorded; every
    stored document keeps at most a third of its tokens (the unpooled ingest is the count)."""
    corpus = tmp_path / "corpus"
    write_sample_corpus(corpus)
    (corpus / "images").rename(tmp_path / "images")
    folder = tmp_path / "q"
    for name, flags in (("plain", ()), ("balanced", ("--storage", "balanced"))):
        done = _ingest(corpus, f"qdrant:{folder}", name, tiny_checkpoint, *flags)
        assert done.returncode == 0, done.stderr
    spec = json.loads(
        run_cli("info", "--store", f"qdrant:{folder}", "--collection", "balanced", "--json").stdout
    )["spec"]
    assert (spec["token_pooling"], spec["multivector_dtype"], spec["dense_dtype"]) == (
        3,
        "uint8",
        "float16",
    )
    assert spec["quantization"] == "binary"
    plain, pooled = _tokens(folder, "plain"), _tokens(folder, "balanced")
    assert plain.keys() == pooled.keys() and plain
    assert all(1 <= pooled[i] <= max(plain[i] // 3, 1) for i in plain)
    assert any(pooled[i] < plain[i] for i in plain)

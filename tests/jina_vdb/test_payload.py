"""One payload schema: what the sources write is what the stores give back and readers read."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from connectors import CollectionSpec, Query
from connectors.stores import open_store
from jina_vdb.cli.output import location
from jina_vdb.ingest import IngestOptions, failure_of, ingest
from jina_vdb.payload import (
    MAX_PAYLOAD_TEXT_CHARS,
    PAYLOAD_KEYS,
    Payload,
    make_payload,
    read_payload,
)
from jina_vdb.sources import Item, Modality, SourceOptions, iter_items
from jina_vdb.sources.samples import minimal_pdf

SPEC = CollectionSpec(dim=64, prefetch_dims=(16,))


def _corpus(root: Path) -> Path:
    root.mkdir()
    (root / "a.md").write_text("# Title\n\n" + "word " * 40, encoding="utf-8")
    (root / "doc.pdf").write_bytes(minimal_pdf([["Page one"], ["Page two"]]))
    lines = [
        {"text": "a line of text", "lang": "en", "id": "line-1"},
        {"text": "def f(): pass", "task": "code", "payload": {"year": 2024}},
    ]
    (root / "rows.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    return root


def test_sources_write_the_schema_and_stores_give_it_back(
    store_url: str, tmp_path: Path, tiny_embedder
) -> None:
    opts = SourceOptions(chunk_tokens=16, chunk_overlap=2, pdf_dpi=30, metadata={"run": 7})
    items = [
        i
        for i in iter_items(
            [_corpus(tmp_path / "c")], tokenizer=tiny_embedder.tokenizer, options=opts
        )
        if isinstance(i, Item)
    ]
    kinds = {i.payload["kind"] for i in items}
    assert kinds == {"text", "pdf_page", "pdf_text"}
    for item in items:
        assert set(item.payload) <= set(PAYLOAD_KEYS)
        assert read_payload(item.payload) == item.payload  # every value has the schema's type
        assert json.loads(json.dumps(item.payload)) == item.payload
        assert item.payload["meta"]["run"] == 7 and item.payload["task"] == item.task
    with open_store(store_url, "docs", spec=SPEC) as store:
        summary = ingest(items, tiny_embedder, store, IngestOptions(progress=False))
        assert summary.added == len(items)
        stored = {r.id: r.payload for r in store.get([i.id for i in items])}
        assert all(read_payload(stored[i.id]) == i.payload for i in items)
        batch = tiny_embedder.encode_text(["page"], task="retrieval")
        hits = store.search(Query.from_batch(batch), limit=len(items))
    pages = [read_payload(h.payload) for h in hits if h.payload["kind"] == "pdf_page"]
    assert sorted(location(p, "doc.pdf") for p in pages) == ["doc.pdf#page=1", "doc.pdf#page=2"]


def test_make_payload_leaves_out_what_does_not_apply_and_cuts_long_text() -> None:
    payload = make_payload("/a.txt", "text", "text/plain", "ab" * 32, chunk=0, text="x" * 9000)
    assert list(payload) == ["source", "kind", "mime", "sha256", "chunk", "text"]
    assert len(payload["text"]) == MAX_PAYLOAD_TEXT_CHARS
    with pytest.raises(ValueError, match="payload kind must be one of.*'video'"):
        make_payload("/a", "video", "video/mp4", "00")  # type: ignore[arg-type]


def test_reading_a_foreign_payload_keeps_the_schema_and_warns_on_wrong_types(caplog) -> None:
    raw = {"source": "/x.png", "kind": "image", "page": "3", "chunk": True, "lang": "de"}
    with caplog.at_level(logging.WARNING, logger="jina_vdb.payload"):
        payload: Payload = read_payload(raw)
    assert payload == {"source": "/x.png", "kind": "image"}
    assert "'page'" in caplog.text and "'chunk'" in caplog.text
    assert read_payload(None) == {}


def test_a_failure_names_where_the_item_came_from() -> None:
    page = make_payload("/docs/r.pdf", "pdf_page", "application/pdf", "00", page=3)
    item = Item("id-1", Modality.IMAGE, "retrieval", page, 1, str)
    failure = failure_of(item, ValueError("cannot render"))
    assert (failure.source, failure.reason, failure.id) == (
        "/docs/r.pdf#page=3",
        "cannot render",
        "id-1",
    )
    line = make_payload("/d/rows.jsonl", "text", "text/plain", "00", line=2)
    assert (
        failure_of(Item(5, Modality.TEXT, "code", line, 3, str), "bad").source == "/d/rows.jsonl:2"
    )


def test_an_item_names_its_modality_once() -> None:
    payload = make_payload("/a.txt", "text", "text/plain", "00")
    assert Item("a", "text", "retrieval", payload, 1, str).modality is Modality.TEXT  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="item 'b': modality must be one of 'text', 'image'"):
        Item("b", "video", "retrieval", payload, 1, str)  # type: ignore[arg-type]

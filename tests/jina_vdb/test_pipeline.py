"""The ingest pipeline on real embedded stores with the tiny model."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import (
    TINY_DIM,
    TINY_PREFETCH,
    SpyEncoder,
    assert_store_holds,
    write_text_corpus,
)

from connectors import CollectionSpec, ConnectorError, Eq
from connectors.stores import open_store
from jina_vdb.ingest import IngestError, IngestOptions, ingest
from jina_vdb.payload import INDEXED_PAYLOAD
from jina_vdb.sources import Item, SourceError, SourceOptions, iter_items
from jina_vdb.sources.samples import write_sample_corpus

SPEC = CollectionSpec(dim=TINY_DIM, prefetch_dims=TINY_PREFETCH)
FAST = IngestOptions(text_batch=4, image_batch=2, check_batch=8, progress=False)


@pytest.fixture
def edge_url(tmp_path: Path) -> str:
    return f"qdrant:{tmp_path / 'qdrant'}"


def _items(paths: list[Path], embedder, **opts) -> list:
    return list(iter_items(paths, tokenizer=embedder.tokenizer, options=SourceOptions(**opts)))


def test_ingest_stores_every_item_once_with_direct_encoding_vectors(
    store_url: str, tmp_path: Path, tiny_embedder
) -> None:
    write_sample_corpus(tmp_path / "corpus")
    items = _items([tmp_path / "corpus"], tiny_embedder, task="auto", pdf_dpi=50)
    with open_store(store_url, "docs", spec=SPEC) as store:
        summary = ingest(items, tiny_embedder, store, FAST)
        assert (summary.added, summary.skipped, summary.failed) == (len(items), 0, [])
        assert summary.pages == 4 and summary.tokens == sum(
            i.cost for i in items if i.modality.value == "text"
        )
        assert_store_holds(store, items, tiny_embedder)
        # the pipeline indexes its own filter keys on a collection created without them
        assert {k: t.value for k, t in store.spec.payload_indexes} == INDEXED_PAYLOAD
        source = items[0].payload["source"]
        assert store.count(Eq("source", source)) == sum(
            i.payload["source"] == source for i in items
        )
    with open_store(store_url, "docs") as reopened:
        assert {k: t.value for k, t in reopened.spec.payload_indexes} == INDEXED_PAYLOAD


def test_rerun_skips_stored_ids_before_encoding(
    store_url: str, tmp_path: Path, tiny_embedder
) -> None:
    write_text_corpus(tmp_path / "corpus", 10)
    items = _items([tmp_path / "corpus"], tiny_embedder)
    with open_store(store_url, "docs", spec=SPEC) as store:
        ingest(items, tiny_embedder, store, FAST)
        spy = SpyEncoder(tiny_embedder)
        again = ingest(_items([tmp_path / "corpus"], tiny_embedder), spy, store, FAST)
        assert (again.added, again.skipped, spy.calls) == (0, 10, [])
        store.delete([items[2].id, items[7].id])
        healed = ingest(_items([tmp_path / "corpus"], tiny_embedder), spy, store, FAST)
        assert (healed.added, healed.skipped, spy.encoded) == (2, 8, 2)
        forced = ingest(
            _items([tmp_path / "corpus"], tiny_embedder),
            spy,
            store,
            IngestOptions(text_batch=4, skip_existing=False, progress=False),
        )
        assert (forced.added, forced.skipped, spy.encoded) == (
            10,
            0,
            12,
        )  # overwritten, not duplicated
        assert_store_holds(store, items, tiny_embedder)


def _only_items(corpus: Path, embedder: Any) -> list[Item]:
    return [i for i in iter_items([corpus], tokenizer=embedder.tokenizer) if isinstance(i, Item)]


def test_bad_items_are_listed_and_everything_else_ingested(
    edge_url: str, tmp_path: Path, tiny_embedder
) -> None:
    corpus = tmp_path / "corpus"
    write_text_corpus(corpus, 6)
    (corpus / "doc_003.txt").write_text("this one holds POISON for the encoder", encoding="utf-8")
    (corpus / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02 not text")
    lines = [{"id": "j1", "text": "fine line"}, {"id": "j1", "text": "same id again"}, {"text": ""}]
    (corpus / "lines.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    spy = SpyEncoder(tiny_embedder, poison="POISON")
    with open_store(edge_url, "docs", spec=SPEC) as store:
        summary = ingest(iter_items([corpus], tokenizer=tiny_embedder.tokenizer), spy, store, FAST)
        reasons = {Path(f.source).name: f.reason for f in summary.failed}
        assert set(reasons) == {"broken.png", "doc_003.txt:1", "binary.txt", "lines.jsonl:3"}
        assert "POISON" in reasons["doc_003.txt:1"] and "binary data" in reasons["binary.txt"]
        assert (summary.added, summary.duplicates) == (6, 1)  # 5 texts + j1, once
        assert store.count() == 6 and [r.id for r in store.get(["j1"])] == ["j1"]
        # what failed to encode is not counted as encoded: tokens of the 6 stored texts only
        stored = {r.id for r in store.get([i.id for i in _only_items(corpus, tiny_embedder)])}
        encoded: dict[Any, int] = {}
        for item in _only_items(corpus, tiny_embedder):
            if item.id in stored:
                encoded.setdefault(item.id, item.cost)  # a repeated id: the first is encoded
        assert summary.tokens == sum(encoded.values()) and summary.pages == 0
    assert any(line.startswith("  failed: ") and "broken.png" in line for line in summary.lines())


def test_strict_mode_stops_at_the_first_failure(
    edge_url: str, tmp_path: Path, tiny_embedder
) -> None:
    corpus = tmp_path / "corpus"
    write_text_corpus(corpus, 3)
    (corpus / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with open_store(edge_url, "docs", spec=SPEC) as store:
        with pytest.raises(IngestError, match="broken.png"):
            ingest(
                iter_items([corpus]),
                tiny_embedder,
                store,
                IngestOptions(strict=True, progress=False),
            )
        (corpus / "binary.txt").write_bytes(b"\x00\x01\x02 not text")
        with pytest.raises(SourceError, match="binary.txt"):
            ingest(
                iter_items([corpus], options=SourceOptions(strict=True)), tiny_embedder, store, FAST
            )


def test_a_broken_encoder_or_store_stops_the_run_without_hanging(
    edge_url: str, tmp_path: Path, tiny_embedder
) -> None:
    write_text_corpus(tmp_path / "corpus", 12)
    with open_store(edge_url, "docs", spec=SPEC) as store:
        with pytest.raises(IngestError, match="the encoder failed on every item of a batch of 4"):
            ingest(
                iter_items([tmp_path / "corpus"]),
                SpyEncoder(tiny_embedder, broken=True),
                store,
                FAST,
            )
        assert store.count() == 0
    with pytest.raises(ConnectorError, match="closed"):  # the store was closed by the with block
        ingest(iter_items([tmp_path / "corpus"]), tiny_embedder, store, FAST)


def test_back_pressure_bounds_how_far_the_reader_runs_ahead(edge_url: str, tiny_embedder) -> None:
    pulled = 0

    def endless():
        nonlocal pulled
        for i in range(200):
            pulled += 1
            yield Item(f"id-{i}", "text", "retrieval", {"n": i}, 3, lambda i=i: f"text number {i}")

    gate = threading.Event()
    opts = IngestOptions(text_batch=2, check_batch=4, queue_size=4, progress=False)
    done: dict = {}
    with open_store(edge_url, "docs", spec=SPEC) as store:
        worker = threading.Thread(
            target=lambda: done.update(
                s=ingest(endless(), SpyEncoder(tiny_embedder, gate=gate), store, opts)
            )
        )
        worker.start()
        threading.Event().wait(
            1.0
        )  # the encoder is blocked on the gate; the reader fills the queue
        assert pulled <= opts.text_batch + opts.queue_size + opts.check_batch + 1
        gate.set()
        worker.join(timeout=120)
        assert not worker.is_alive() and done["s"].added == 200 == store.count()


def test_a_record_the_store_refuses_is_named_by_file_and_line(
    tmp_path: Path, tiny_embedder
) -> None:
    """Milvus refuses payloads over 65,472 bytes of JSON: the failure names file:line, not
    "record 0" (its position inside one upsert call)."""
    lines = [{"text": "small"}, {"text": "big", "note": "x" * 70_000}]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    with open_store(f"milvus:{tmp_path / 'm.db'}", "docs", spec=SPEC) as store:
        summary = ingest(iter_items([path], tokenizer=tiny_embedder.tokenizer), tiny_embedder,
                         store, FAST)  # fmt: skip
    (failure,) = summary.failed
    assert failure.source == f"{path.resolve()}:2" and summary.added == 1
    assert "bytes" in failure.reason and not failure.reason.startswith(("record", "item"))

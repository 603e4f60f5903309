"""Issue 9 at the API level: bad inputs never abort, memory bounded in bytes, collections
kept in step with their sources. Real embedded stores, the tiny model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_helpers import TINY_DIM, TINY_PREFETCH, SpyEncoder, direct_encoding
from PIL import Image

from connectors import CollectionSpec
from connectors.stores import open_store
from jina_vdb.ingest import IngestOptions, ingest
from jina_vdb.sources import Failure, SourceOptions, iter_items
from jina_vdb.sources import chunking as chunking_module
from jina_vdb.sources.chunking import chunk_text

SPEC = CollectionSpec(dim=TINY_DIM, prefetch_dims=TINY_PREFETCH)
FAST = IngestOptions(text_batch=4, image_batch=4, check_batch=8, progress=False)


def _run(paths: list[Path], embedder: Any, store: Any, opts: IngestOptions = FAST, **src: Any):
    options = SourceOptions(chunk_tokens=16, chunk_overlap=4, **src)
    tokenizer = getattr(embedder, "tokenizer", None)  # a SpyEncoder has none: words
    items = iter_items(paths, tokenizer=tokenizer, options=options)
    return ingest(items, embedder, store, opts)


def _reasons(summary) -> dict[str, str]:
    return {Path(f.source).name: f.reason for f in summary.failed}


class OrderSpy:
    """The real store, recording the order of writes and deletes (everything else passes on)."""

    def __init__(self, store: Any) -> None:
        self.store, self.events = store, []

    def upsert(self, records):
        records = list(records)
        self.events.append(("upsert", [r.id for r in records]))
        return self.store.upsert(records)

    def delete(self, ids):
        self.events.append(("delete", list(ids)))
        return self.store.delete(ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


# -- item 9: one bad input never aborts the run ------------------------------------------
def test_extreme_aspect_ratio_images_in_one_batch_fail_alone(
    store_url: str, tmp_path: Path, tiny_embedder
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (6000, 20), "red").save(folder / "a_wide.png")  # aspect 300 > 200
    Image.new("RGB", (20, 5000), "blue").save(folder / "b_tall.png")
    Image.new("RGB", (64, 48), "green").save(folder / "c_fine.png")
    (folder / "d.txt").write_text("a text beside the images", encoding="utf-8")
    with open_store(store_url, "docs", spec=SPEC) as store:
        summary = _run([folder], tiny_embedder, store)
        assert set(_reasons(summary)) == {"a_wide.png", "b_tall.png"}
        assert all("aspect ratio" in r for r in _reasons(summary).values())
        assert summary.added == 2 == store.count()
    # A batch holding only bad images is still a list of bad items, not a broken encoder.
    (folder / "c_fine.png").unlink()
    (folder / "d.txt").unlink()
    with open_store(store_url, "docs2", spec=SPEC) as store:
        summary = _run([folder], tiny_embedder, store)
        assert set(_reasons(summary)) == {"a_wide.png", "b_tall.png"} and store.count() == 0


def test_symlink_loops_are_reported_and_the_rest_ingested(tmp_path: Path, tiny_embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("a good text", encoding="utf-8")
    os.symlink("loop.txt", folder / "loop.txt")  # points at itself
    os.symlink("ping.md", folder / "pong.md")
    os.symlink("pong.md", folder / "ping.md")
    items = list(iter_items([folder, folder / "loop.txt"]))
    errors = {Path(e.source).name: e.reason for e in items if isinstance(e, Failure)}
    assert errors == {
        "loop.txt": "symlink loop through loop.txt",
        "ping.md": "symlink loop through pong.md",
        "pong.md": "symlink loop through ping.md",
    }
    with open_store(f"qdrant:{tmp_path / 'q'}", "docs", spec=SPEC) as store:
        summary = _run([folder], tiny_embedder, store)
        assert summary.added == 1 and len(summary.failed) == 3


def test_bad_jsonl_lines_fail_alone_naming_the_line(
    store_url: str, tmp_path: Path, tiny_embedder
) -> None:
    lines = [
        '{"id": "ok-1", "text": "fine"}',
        '{"id": "x\\ud800y", "text": "lone surrogate in the id"}',
        '{"id": "ok-2", "text": "surrogate in meta", "tags": ["a", "\\udfff"]}',
        '{"id": "ok-3", "text": "not a number", "score": NaN}',
        '{"id": "ok-4", "text": "\\u0000\\u200b\\u200d"}',
        '{"id": "ok-5", "text": "fine as well", "lang": "en"}',
    ]
    (tmp_path / "lines.jsonl").write_text("\n".join(lines), encoding="utf-8")
    with open_store(store_url, "docs", spec=SPEC) as store:
        summary = _run([tmp_path / "lines.jsonl"], tiny_embedder, store)
        reasons = _reasons(summary)
        assert set(reasons) == {"lines.jsonl:2", "lines.jsonl:3", "lines.jsonl:4", "lines.jsonl:5"}
        assert "lone surrogate U+D800" in reasons["lines.jsonl:2"]
        assert "line['tags']" in reasons["lines.jsonl:3"]
        assert "NaN" in reasons["lines.jsonl:4"]
        assert "no visible characters" in reasons["lines.jsonl:5"]
        assert sorted(r.id for r in store.get(["ok-1", "ok-5"])) == ["ok-1", "ok-5"]
        assert store.count() == 2


# -- item 8: memory bounded in bytes, texts chunked as a stream ------------------------------
def test_loaded_images_are_bounded_in_bytes_not_counts(tmp_path: Path, tiny_embedder) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(7):  # 1500x1500 RGB: 6.75 MB each once decoded
        Image.new("RGB", (1500, 1500), (i * 30, 90, 200)).save(folder / f"img_{i}.png")
    spy = SpyEncoder(tiny_embedder)
    opts = IngestOptions(image_batch=32, max_inflight_bytes=15 * 2**20, progress=False)
    with open_store(f"qdrant:{tmp_path / 'q'}", "docs", spec=SPEC) as store:
        summary = _run([folder], spy, store, opts, image_max_pixels=None)
        assert summary.added == 7 == store.count()
    # 15 MB holds two decoded images: the encoder got them in twos, not one batch of 7.
    assert max(spy.calls) == 2 and sum(spy.calls) == 7


@pytest.mark.parametrize("tokenizer", ["words", "tiny"])
def test_streamed_chunks_equal_whole_text_chunks(
    tokenizer: str, tiny_embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = None if tokenizer == "words" else tiny_embedder.tokenizer
    paragraphs = [
        f"Paragraph {i}: " + " ".join(f"w{i}x{j}" for j in range(i % 7 + 3)) for i in range(300)
    ]
    text = "\n".join(paragraphs) + "  trailing words here"
    whole = chunk_text(text, tok, chunk_tokens=40, overlap=8)
    monkeypatch.setattr(chunking_module, "SEGMENT_CHARS", 500)  # ~20 segments
    streamed = chunk_text(text, tok, chunk_tokens=40, overlap=8)
    assert [c.text for c in streamed] == [c.text for c in whole]
    assert [(c.start, c.end, c.tokens) for c in streamed] == [
        (c.start, c.end, c.tokens) for c in whole
    ]


# -- item 10: collections in step with their sources -------------------------------------
def test_an_edited_file_replaces_its_old_chunks_new_written_first(
    store_url: str, tmp_path: Path, tiny_embedder
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    words = [f"word{i}" for i in range(60)]
    (folder / "a.txt").write_text(" ".join(words), encoding="utf-8")
    (folder / "b.txt").write_text("another file that does not change", encoding="utf-8")
    with open_store(store_url, "docs", spec=SPEC) as real:
        first = _run([folder], tiny_embedder, real)
        words[30:34] = ["EDITED"] * 4
        (folder / "a.txt").write_text(" ".join(words), encoding="utf-8")
        store = OrderSpy(real)
        second = _run([folder], tiny_embedder, store)
        items = list(
            iter_items(
                [folder],
                tokenizer=tiny_embedder.tokenizer,
                options=SourceOptions(chunk_tokens=16, chunk_overlap=4),
            )
        )
        assert real.count() == len(items)  # exactly the current chunks, nothing stale
        assert {r.id for r in real.get([it.id for it in items])} == {it.id for it in items}
        assert second.stale_deleted == first.added - second.skipped  # all but the unchanged
        assert second.added == len(items) - second.skipped > 0
        kinds = [kind for kind, _ in store.events]
        assert kinds[-1] == "delete" and "upsert" not in kinds[kinds.index("delete") :]
        assert "EDITED" in " ".join(r.payload["text"] for r in real.scan())


def test_a_changed_jsonl_record_is_re_encoded(
    store_url: str, tmp_path: Path, tiny_embedder
) -> None:
    path = tmp_path / "records.jsonl"

    def write(text: str, tag: str) -> None:
        lines = [{"id": "r1", "text": text, "tag": tag}, {"id": "r2", "text": "stays the same"}]
        path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")

    write("the first version", "a")
    with open_store(store_url, "docs", spec=SPEC) as store:
        _run([path], tiny_embedder, store)
        write("the second version", "a")
        again = _run([path], tiny_embedder, store)
        assert (again.added, again.updated, again.skipped) == (1, 1, 1)
        (record,) = store.get(["r1"], with_vectors=True)
        assert record.payload["text"] == "the second version"
        item = next(it for it in iter_items([path]) if getattr(it, "id", None) == "r1")
        dense, _ = direct_encoding(tiny_embedder, item)
        np.testing.assert_allclose(
            record.dense, dense[: SPEC.dim] / np.linalg.norm(dense[: SPEC.dim]), atol=1e-4
        )
        write("the second version", "b")  # metadata only: the stored payload follows too
        meta = _run([path], tiny_embedder, store)
        assert meta.updated == 1 and store.get(["r1"])[0].payload["meta"] == {"tag": "b"}
        assert _run([path], tiny_embedder, store).skipped == 2  # then nothing changes


def test_duplicate_ids_across_files_are_reported(tmp_path: Path, tiny_embedder) -> None:
    for name, text in (("one.jsonl", "from one"), ("two.jsonl", "from two")):
        (tmp_path / name).write_text(json.dumps({"id": 7, "text": text}), encoding="utf-8")
    with open_store(f"qdrant:{tmp_path / 'q'}", "docs", spec=SPEC) as store:
        summary = _run([tmp_path / "one.jsonl", tmp_path / "two.jsonl"], tiny_embedder, store)
        (repeat,) = summary.duplicated
        assert Path(repeat.source).name == "two.jsonl:1" and "one.jsonl:1" in repeat.reason
        assert summary.duplicates == 1 and not summary.failed
        assert store.get([7])[0].payload["text"] == "from one"


def test_a_source_with_a_failure_keeps_its_older_records(tmp_path: Path, tiny_embedder) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"text": "line one"}\n{"text": "line two"}\n', encoding="utf-8")
    with open_store(f"qdrant:{tmp_path / 'q'}", "docs", spec=SPEC) as store:
        _run([path], tiny_embedder, store)
        path.write_text('{"text": "line one"}\n{"text": "line two, edited"\n', encoding="utf-8")
        summary = _run([path], tiny_embedder, store)
        assert len(summary.failed) == 1 and summary.stale_deleted == 0
        assert store.count() == 2  # the old line two stays searchable: never neither

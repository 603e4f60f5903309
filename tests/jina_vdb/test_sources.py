"""Sources: folders, globs, JSONL, chunking with overlap, PDF pages, bad files, stable ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from embedder.errors import ImageInputError
from jina_vdb.sources import (
    Failure,
    Item,
    Modality,
    SourceError,
    SourceOptions,
    iter_items,
    stable_id,
)
from jina_vdb.sources.chunking import chunk_text, token_offsets
from jina_vdb.sources.samples import minimal_pdf


def _png(path: Path, colour: str = "red", size: tuple[int, int] = (40, 30)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def _tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "__pycache__").mkdir()
    (root / ".git").mkdir()
    (root / "a.txt").write_text("Alpha text.", encoding="utf-8")
    (root / "sub" / "b.md").write_text("# Beta\n\nMarkdown body.", encoding="utf-8")
    (root / "sub" / "deeper" / "c.py").write_text("def c():\n    return 3\n", encoding="utf-8")
    _png(root / "sub" / "img.png")
    (root / "doc.pdf").write_bytes(minimal_pdf([["Page one text"], ["Page two text"]]))
    (root / ".hidden.txt").write_text("hidden", encoding="utf-8")
    (root / "__pycache__" / "x.txt").write_text("cache", encoding="utf-8")
    (root / ".git" / "HEAD").write_text("ref", encoding="utf-8")
    (root / "notes.xyz").write_text("unknown type", encoding="utf-8")
    (root / "empty.txt").write_text("  \n", encoding="utf-8")
    return root


def _names(items: list[Item | Failure]) -> list[tuple[str, str, int | None]]:
    return [
        (Path(i.payload["source"]).name, i.payload["kind"], i.payload.get("page"))
        for i in items
        if isinstance(i, Item)
    ]


def test_folder_walk_is_recursive_sorted_and_typed(tmp_path: Path) -> None:
    items = list(iter_items([_tree(tmp_path / "docs")]))
    assert not [i for i in items if isinstance(i, Failure)]
    assert _names(items) == [
        ("a.txt", "text", None),
        ("doc.pdf", "pdf_page", 1),
        ("doc.pdf", "pdf_text", 1),
        ("doc.pdf", "pdf_page", 2),
        ("doc.pdf", "pdf_text", 2),
        ("b.md", "text", None),
        ("img.png", "image", None),
        ("c.py", "code", None),
    ]  # fmt: skip  (top-down: a folder's files, sorted, then its subfolders)
    by_kind = {
        i.payload["kind"]: i for i in items[::-1] if isinstance(i, Item)
    }  # first of each kind
    assert (
        by_kind["image"].modality is Modality.IMAGE
        and by_kind["pdf_page"].modality is Modality.IMAGE
    )
    assert (
        by_kind["text"].payload["mime"] == "text/plain"
        and by_kind["image"].payload["mime"] == "image/png"
    )
    assert (
        by_kind["text"].load() == "Alpha text." and by_kind["text"].payload["text"] == "Alpha text."
    )
    assert all(i.task == "retrieval" for i in items if isinstance(i, Item))


def test_include_exclude_globs_and_hidden(tmp_path: Path) -> None:
    root = _tree(tmp_path / "docs")
    only_md_py = list(iter_items([root], options=SourceOptions(include=("*.md", "*.py"))))
    assert sorted(n for n, _, _ in _names(only_md_py)) == ["b.md", "c.py"]
    no_sub = list(iter_items([root], options=SourceOptions(exclude=("sub/*",))))
    assert sorted({n for n, _, _ in _names(no_sub)}) == ["a.txt", "doc.pdf"]
    with_hidden = list(iter_items([root], options=SourceOptions(hidden=True, include=("*.txt",))))
    assert sorted(n for n, _, _ in _names(with_hidden)) == [
        ".hidden.txt",
        "a.txt",
    ]  # .git/__pycache__ stay out


def test_task_auto_gives_code_files_the_code_task(tmp_path: Path) -> None:
    items = [
        i
        for i in iter_items([_tree(tmp_path / "docs")], options=SourceOptions(task="auto"))
        if isinstance(i, Item)
    ]
    tasks = {i.payload["kind"]: i.task for i in items}
    assert (
        tasks["code"] == "code"
        and tasks["text"] == "retrieval"
        and tasks["pdf_page"] == "retrieval"
    )
    assert all(i.payload["task"] == i.task for i in items)


def test_bad_files_are_reported_and_skipped_or_raise_in_strict_mode(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "good.txt").write_text("fine", encoding="utf-8")
    (root / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 4)
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (root / "z_last.txt").write_text("after the bad ones", encoding="utf-8")
    (root / "huge.md").write_text("word " * 300, encoding="utf-8")
    missing, unsupported = tmp_path / "missing.txt", tmp_path / "named.xyz"
    unsupported.write_text("x", encoding="utf-8")
    items = list(
        iter_items([root, missing, unsupported], options=SourceOptions(max_text_bytes=1000))
    )
    errors = {Path(e.source).name: e.reason for e in items if isinstance(e, Failure)}
    assert set(errors) == {"binary.txt", "broken.pdf", "huge.md", "missing.txt", "named.xyz"}
    assert "1500 bytes is over the limit of 1000 bytes" in errors["huge.md"]
    assert "--max-text-bytes" in errors["huge.md"]
    assert "binary data" in errors["binary.txt"] and "PDF" in errors["broken.pdf"]
    assert (
        "no such file" in errors["missing.txt"].lower()
        and "unsupported type .xyz" in errors["named.xyz"]
    )
    assert [n for n, _, _ in _names(items)] == ["good.txt", "z_last.txt"]
    with pytest.raises(SourceError, match="binary.txt"):
        list(iter_items([root], options=SourceOptions(strict=True)))


def test_images_are_decoded_lazily(tmp_path: Path) -> None:
    good = _png(tmp_path / "good.png", size=(50, 20))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    items = list(iter_items([good, corrupt]))
    assert all(
        isinstance(i, Item) for i in items
    )  # listing reads bytes for the hash, decodes nothing
    image = items[0].load()
    assert image.size == (50, 20) and image.mode == "RGB"
    with pytest.raises(ImageInputError):
        items[1].load()


def test_pdf_pages_render_at_the_chosen_dpi_with_page_text(tmp_path: Path) -> None:
    pdf = tmp_path / "two.pdf"
    pdf.write_bytes(minimal_pdf([["First page says hello"], ["Second page says goodbye"]]))
    items = list(iter_items([pdf], options=SourceOptions(pdf_dpi=36)))
    pages = [i for i in items if i.payload["kind"] == "pdf_page"]
    texts = [i for i in items if i.payload["kind"] == "pdf_text"]
    assert [p.payload["page"] for p in pages] == [1, 2] and [t.payload["page"] for t in texts] == [
        1,
        2,
    ]
    assert "hello" in texts[0].load() and "goodbye" in texts[1].load()
    image = pages[1].load()
    assert image.mode == "RGB" and image.size == (306, 396)  # Letter (612 x 792 pt) at 36 DPI
    assert (
        len({p.id for p in pages}) == 2 and pages[0].payload["sha256"] == pages[1].payload["sha256"]
    )
    only_pages = list(iter_items([pdf], options=SourceOptions(pdf_text=False)))
    assert [i.payload["kind"] for i in only_pages] == ["pdf_page", "pdf_page"]


def test_jsonl_lines_become_records_and_bad_lines_are_listed(tmp_path: Path) -> None:
    _png(tmp_path / "pic.png")
    lines = [
        {"id": "doc-1", "text": "first text", "payload": {"lang": "en"}, "year": 2024},
        {"text": "second text", "task": "code"},
        {"image": "pic.png", "id": 7},
        "not json at all",
        {"text": "a", "image": "pic.png"},
        {"text": "x", "task": "nope"},
        {"image": "missing.png"},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n\n"
    )
    items = list(iter_items([path], options=SourceOptions(metadata={"batch": "b1"})))
    good = [i for i in items if isinstance(i, Item)]
    bad = [i for i in items if isinstance(i, Failure)]
    assert [g.id for g in good[::2]] == ["doc-1", 7]
    assert good[0].payload["meta"] == {"batch": "b1", "lang": "en", "year": 2024}
    assert good[1].task == "code" and good[1].payload["line"] == 2 and isinstance(good[1].id, str)
    assert good[2].modality is Modality.IMAGE and good[2].load().size == (40, 30)
    assert [b.source.rsplit(":", 1)[1] for b in bad] == ["4", "5", "6", "7"]
    assert (
        "exactly one of 'text' or 'image'" in bad[1].reason
        and "task" in bad[2].reason
        and "not found" in bad[3].reason
    )


def test_chunks_overlap_by_the_requested_number_of_tokens(tiny_embedder) -> None:
    tok = tiny_embedder.tokenizer
    text = " ".join(f"sentence {i} talks about vectors and databases." for i in range(40))
    offsets = token_offsets(text, tok)
    chunks = chunk_text(text, tok, chunk_tokens=50, overlap=10)
    assert len(chunks) > 3 and chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end] and chunk.tokens <= 50
    for a, b in zip(chunks, chunks[1:], strict=False):
        # 10 shared tokens; one fewer is seen when a whitespace-only edge token was stripped.
        shared = [o for o in offsets if o[1] > b.start and o[0] < a.end]
        assert len(shared) in (9, 10), (a, b)
    words = " ".join(f"w{i}" for i in range(100))
    by_words = chunk_text(words, None, chunk_tokens=30, overlap=5)  # no tokenizer: words stand in
    assert [c.text.split()[0] for c in by_words] == ["w0", "w25", "w50", "w75"]
    assert [c.tokens for c in by_words] == [30, 30, 30, 25] and by_words[-1].text.endswith("w99")
    assert chunk_text("short text", tok, chunk_tokens=50, overlap=10)[0].text == "short text"
    assert chunk_text("   ", tok) == []
    with pytest.raises(ValueError, match="overlap"):
        chunk_text(text, tok, chunk_tokens=10, overlap=10)


def test_long_files_are_chunked_with_token_counts(tmp_path: Path, tiny_embedder) -> None:
    path = tmp_path / "long.md"
    path.write_text(
        "\n".join(f"Line {i}: multi-vector retrieval keeps every token." for i in range(60)),
        encoding="utf-8",
    )
    items = list(
        iter_items(
            [path],
            tokenizer=tiny_embedder.tokenizer,
            options=SourceOptions(chunk_tokens=64, chunk_overlap=8),
        )
    )
    assert len(items) > 5 and [i.payload["chunk"] for i in items] == list(range(len(items)))
    assert all(0 < i.cost <= 64 for i in items) and len({i.id for i in items}) == len(items)


def test_ids_are_stable_and_follow_source_position_and_content(tmp_path: Path) -> None:
    root = _tree(tmp_path / "docs")

    def ids() -> list[str | int]:
        return [i.id for i in iter_items([root]) if isinstance(i, Item)]

    first = ids()
    assert first == ids() and len(set(first)) == len(first)
    (root / "a.txt").write_text("Alpha text, edited.", encoding="utf-8")
    second = ids()
    changed = [a for a, b in zip(first, second, strict=False) if a != b]
    assert len(changed) == 1 and changed[0] == first[0]
    copy = tmp_path / "copy.md"
    copy.write_text((root / "sub" / "b.md").read_text(encoding="utf-8"), encoding="utf-8")
    assert next(iter(iter_items([copy]))).id not in second  # same content, other source: another id
    assert (
        stable_id("s", "chunk=0", "abc")
        == stable_id("s", "chunk=0", "abc")
        != stable_id("s", "chunk=1", "abc")
    )

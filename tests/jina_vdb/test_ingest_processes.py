"""Ingest with its work in other processes (a writer process; preprocessing workers) stores
exactly what the in-process pipeline stores, and reports failures the same way."""

from __future__ import annotations

import dataclasses
import multiprocessing
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_helpers import TINY_DIM, TINY_PREFETCH

from connectors import CollectionSpec, UnsupportedSpecError
from connectors.stores import open_store
from jina_vdb.ingest import IngestOptions, ingest
from jina_vdb.sources import SourceOptions, iter_items
from jina_vdb.sources.samples import write_sample_corpus

SPEC = CollectionSpec(dim=TINY_DIM, prefetch_dims=TINY_PREFETCH)
FAST = IngestOptions(text_batch=4, image_batch=2, check_batch=8, progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_sample_corpus(root)
    return root


def _ingest(url: str, corpus: Path, embedder: Any, opts: IngestOptions) -> tuple[Any, list]:
    items = list(
        iter_items([corpus], tokenizer=embedder.tokenizer, options=SourceOptions(pdf_dpi=50))
    )
    with open_store(url, "docs", spec=SPEC) as store:
        summary = ingest(items, embedder, store, opts)
        records = store.get([it.id for it in items], with_vectors=True)
    return summary, records


def assert_same_records(a: list, b: list) -> None:
    assert [r.id for r in a] == [r.id for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.payload == y.payload, x.id
        np.testing.assert_array_equal(x.dense, y.dense, err_msg=str(x.id))
        np.testing.assert_array_equal(x.multivector, y.multivector, err_msg=str(x.id))


def test_writer_process_stores_the_same_records(tmp_path: Path, corpus: Path, tiny_embedder):
    base, expected = _ingest(f"qdrant:{tmp_path / 'a'}", corpus, tiny_embedder, FAST)
    opts = dataclasses.replace(FAST, writer_process=True)
    summary, records = _ingest(f"qdrant:{tmp_path / 'b'}", corpus, tiny_embedder, opts)
    assert (summary.added, summary.failed) == (base.added, []) and base.pages == 4
    assert_same_records(records, expected)
    # a second run through the child skips everything (its get answers the skip check)
    again, _ = _ingest(f"qdrant:{tmp_path / 'b'}", corpus, tiny_embedder, opts)
    assert (again.added, again.skipped) == (0, base.added)


def test_writer_process_is_refused_for_a_store_it_cannot_serve(
    tmp_path: Path, corpus: Path, tiny_embedder
):
    pytest.importorskip("connectors.milvus")
    opts = dataclasses.replace(FAST, writer_process=True)
    with pytest.raises(UnsupportedSpecError, match="qdrant-edge"):
        _ingest(f"milvus:{tmp_path / 'm.db'}", corpus, tiny_embedder, opts)


def test_a_refused_record_fails_alone_through_the_writer_process(tmp_path: Path):
    import threading

    from connectors import Record
    from connectors.qdrant import QdrantStore
    from connectors.store_process import store_in_process
    from jina_vdb.ingest import upsert_or_isolate

    rng = np.random.default_rng(0)

    def record(rid: str, dim: int = TINY_DIM) -> Record:
        tokens = rng.standard_normal((3, 128)).astype(np.float32)
        return Record(rid, rng.standard_normal(dim).astype(np.float32), tokens, {"n": rid})

    failed: list[tuple[int, Exception]] = []
    with QdrantStore.create("c", path=tmp_path, spec=SPEC) as store:
        with store_in_process(store) as child:
            batch = [record("a"), record("bad", dim=5), record("c")]
            written = upsert_or_isolate(
                child, batch, threading.Lock(), lambda i, e: failed.append((i, e))
            )
        assert written == [0, 2] and store.count() == 2
    ((index, error),) = failed
    assert index == 1 and "'bad'" in str(error)


def test_preprocess_workers_store_bit_identical_records(
    tmp_path: Path, corpus: Path, tiny_embedder
):
    """Images and PDF pages decoded, rendered, resized and normalised in two worker
    processes (the corpus has PNGs and a PDF): the same records, bit for bit."""
    base, expected = _ingest(f"qdrant:{tmp_path / 'a'}", corpus, tiny_embedder, FAST)
    opts = dataclasses.replace(FAST, preprocess_workers=2, writer_process=True)
    summary, records = _ingest(f"qdrant:{tmp_path / 'b'}", corpus, tiny_embedder, opts)
    assert (summary.added, summary.pages, summary.failed) == (base.added, base.pages, [])
    assert base.pages == 4
    assert_same_records(records, expected)
    assert multiprocessing.active_children() == []  # the pool and the writer are gone


def test_a_worker_failure_names_the_file_and_page(tmp_path: Path, tiny_embedder, caplog):
    """A corrupt image, and a PDF broken after its pages were listed: each failure names
    the item (file; file and page) exactly as the in-process load does."""
    from jina_vdb.sources.samples import minimal_pdf

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "note.txt").write_text("a short note about trains", encoding="utf-8")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    (folder / "pages.pdf").write_bytes(minimal_pdf([["one"], ["two"]]))
    options = SourceOptions(pdf_dpi=50, pdf_text=False)
    items = list(iter_items([folder], tokenizer=tiny_embedder.tokenizer, options=options))
    (folder / "pages.pdf").write_bytes(b"%PDF-1.4 truncated")  # after listing: render fails

    def failures(workers: int, name: str) -> list[tuple[str, str]]:
        opts = dataclasses.replace(FAST, preprocess_workers=workers)
        with open_store(f"qdrant:{tmp_path / name}", "docs", spec=SPEC) as store:
            summary = ingest(items, tiny_embedder, store, opts)
        assert summary.added == 1  # the text
        return sorted((Path(f.source).name, f.reason) for f in summary.failed)

    in_process = failures(0, "a")
    with caplog.at_level("INFO", logger="jina_vdb.preprocess"):
        in_workers = failures(2, "b")
    assert "2 preprocessing worker processes started" in caplog.text
    assert in_workers == in_process
    assert [name for name, _ in in_workers] == [
        "broken.png",
        "pages.pdf#page=1",
        "pages.pdf#page=2",
    ]
    assert "cannot open PDF" in in_workers[1][1]
    assert multiprocessing.active_children() == []


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def test_cli_ctrl_c_stops_the_workers_and_the_writer(tmp_path: Path, tiny_checkpoint: Path):
    """One Ctrl-C mid-run: the worker processes and the writer process exit with the CLI,
    the store is left closed (a rerun opens it) and the rerun completes the ingest."""
    import signal
    import subprocess
    import time

    from ingest_helpers import cli_command, subprocess_env
    from PIL import Image

    folder = tmp_path / "pages"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        pixels = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i:02d}.png")
    args = (
        "ingest",
        str(folder),
        *("--store", f"qdrant:{tmp_path / 'q'}", "--model", str(tiny_checkpoint)),
        *("--device", "cpu", "--preprocess-workers", "2", "--writer-process"),
        *("--image-batch-size", "2", "-q"),
    )
    proc = subprocess.Popen(
        cli_command(*args), env=subprocess_env(), stderr=subprocess.PIPE, text=True
    )
    children: set[int] = set()
    deadline = time.monotonic() + 240
    while len(children) < 3 and time.monotonic() < deadline and proc.poll() is None:
        children |= _children(proc.pid)  # the writer, then the workers (and spawn's helpers)
        time.sleep(0.2)
    assert len(children) >= 3, f"saw children {children}"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode != 0, stderr
    time.sleep(1)
    assert not [pid for pid in children if _alive(pid)], stderr
    rerun = subprocess.run(
        cli_command(*args), env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr
    counts = re.match(r"added (\d+), skipped (\d+)", rerun.stdout)
    assert counts and int(counts[1]) + int(counts[2]) == 24, rerun.stdout


def test_a_failing_run_shuts_the_workers_and_the_writer_down(
    tmp_path: Path, corpus: Path, tiny_embedder, caplog
):
    """The encoder breaks mid-run: the error is raised, the worker processes and the writer
    process are gone, and the store is usable here again."""
    from ingest_helpers import SpyEncoder

    broken = SpyEncoder(tiny_embedder, broken=True)  # no image_preparer: workers only load
    opts = dataclasses.replace(FAST, preprocess_workers=2, writer_process=True)
    with caplog.at_level("WARNING", logger="jina_vdb.preprocess"):
        items = list(iter_items([corpus], tokenizer=tiny_embedder.tokenizer))
        with (
            open_store(f"qdrant:{tmp_path / 'q'}", "docs", spec=SPEC) as store,
            pytest.raises(Exception, match="broken"),
        ):
            ingest(items, broken, store, opts)
    assert "no image_preparer" in caplog.text
    assert multiprocessing.active_children() == []
    with open_store(f"qdrant:{tmp_path / 'q'}", "docs") as store:
        assert store.count() == 0


def _load_unless_in_a_worker(path: str) -> Any:
    """An image loader that kills the worker process it runs in (a worker dying mid-run)."""
    import os

    from jina_vdb.sources.images import load_image_checked

    if multiprocessing.parent_process() is not None:
        os._exit(3)
    return load_image_checked(path)


def test_a_dead_worker_is_warned_about_and_the_run_goes_on_in_process(
    tmp_path: Path, corpus: Path, tiny_embedder, caplog
):
    import functools

    items = list(
        iter_items([corpus], tokenizer=tiny_embedder.tokenizer, options=SourceOptions(pdf_dpi=50))
    )
    doomed = [
        dataclasses.replace(it, _loader=functools.partial(_load_unless_in_a_worker, path))
        if (path := it.payload.get("source", "")).endswith(".png")
        else it
        for it in items
    ]
    assert sum(d is not i for d, i in zip(doomed, items, strict=True)) == 2  # the PNGs

    def run(name: str, chosen: list, workers: int) -> list:
        opts = dataclasses.replace(FAST, preprocess_workers=workers)
        with open_store(f"qdrant:{tmp_path / name}", "docs", spec=SPEC) as store:
            summary = ingest(chosen, tiny_embedder, store, opts)
            assert summary.added == len(items) and not summary.failed
            return store.get([it.id for it in items], with_vectors=True)

    expected = run("a", items, 0)
    with caplog.at_level("WARNING", logger="jina_vdb.preprocess"):
        records = run("b", doomed, 2)
    assert "a preprocessing worker failed" in caplog.text
    assert "loading images in-process from now on" in caplog.text
    assert_same_records(records, expected)
    assert multiprocessing.active_children() == []

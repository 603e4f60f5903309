"""Ingest as a Ray Data job: the same records as the local pipeline, resumable after kills.

One local Ray per module (2 CPUs, no dashboard, a small object store), shut down after.
Its processes get this checkout on PYTHONPATH, so workers import the code under test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import STORES
from ingest_helpers import REPO, cli_command, run_cli, subprocess_env, write_text_corpus

from connectors.stores import open_store
from jina_vdb.cli.support import build_spec
from jina_vdb.ingest import IngestOptions, ingest
from jina_vdb.model_record import model_record, with_model
from jina_vdb.sources import SourceOptions, iter_items
from jina_vdb.sources.samples import minimal_pdf, write_sample_corpus

pytestmark = pytest.mark.slow

#: A 16-image-token budget: the 40-DPI pages (340x440) and the sample images are shrunk in
#: the load tasks, so identical records prove the shrinking changes no vector.
BUDGET = 12_544
OPTS = IngestOptions(text_batch=4, image_batch=2, check_batch=8, max_pixels=BUDGET, progress=False)
SOURCES = SourceOptions(task="auto", pdf_dpi=40)


def _require_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed; CI installs it with the 'ray' extra (in 'all')")
        pytest.skip("ray is not installed: pip install 'jina-vdb[ray]'")
    return ray


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray for this module; its GCS address (subprocess drivers connect to it)."""
    ray = _require_ray()
    saved = os.environ.get("PYTHONPATH")
    # Ray's processes inherit this: workers import this checkout (also from subprocesses).
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved) if p)
    try:
        context = ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=96 * 2**20,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        yield context.address_info["address"]
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _corpus(root: Path) -> Path:
    write_sample_corpus(root)
    write_text_corpus(root / "more", 6, words=40)
    (root / "more" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (root / "more" / "report.pdf").write_bytes(
        minimal_pdf([[f"Page {i} of a report."] for i in range(3)])
    )
    return root


def _open(url: str, embedder: Any, name: str = "docs", prefetch: str | None = None) -> Any:
    spec, _ = build_spec(embedder, dim=None, prefetch_dims=prefetch, multivector=True)
    return open_store(url, name, spec=with_model(spec, model_record(embedder, ["retrieval"])))


def _ray_ingest(
    corpus: Path, store: Any, checkpoint: Path, embedder: Any, *, server: str | None = None
) -> Any:
    from jina_vdb.distributed import RayOptions, ray_ingest

    return ray_ingest(
        [corpus],
        checkpoint,
        store,
        OPTS,
        sources=SOURCES,
        ray_options=RayOptions(workers=1, max_retries=2, writers=2 if server else None),
        store_url=server,
    )


def _records(store: Any) -> dict[Any, Any]:
    return {r.id: r for r in store.get([r.id for r in store.scan()], with_vectors=True)}


@pytest.mark.parametrize(
    ("backend", "kill"),
    [("qdrant-edge", True), ("milvus-lite", False)],
    ids=["qdrant-edge-encoder-killed", "milvus-lite"],
)
def test_ray_gives_the_local_pipelines_records_and_a_rerun_adds_nothing(
    backend: str,
    kill: bool,
    ray_address: str,
    tmp_path: Path,
    tiny_checkpoint: Path,
    tiny_embedder: Any,
) -> None:
    """With ``kill``, the encoder actor is SIGKILLed after the first write: Ray restarts it
    and retries its batch, and the records are still exactly the local pipeline's."""
    if kill and not Path("/proc").is_dir():
        pytest.skip("finds the worker's process through /proc (Linux)")
    corpus = _corpus(tmp_path / "corpus")
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    with _open(STORES[backend](tmp_path / "local"), tiny_embedder) as local:
        items = iter_items([corpus], tokenizer=tiny_embedder.tokenizer, options=SOURCES)
        expected = ingest(items, tiny_embedder, local, OPTS)
        want = _records(local)
    with _open(STORES[backend](tmp_path / "ray"), tiny_embedder) as store:
        with _killing_the_encoder(kill) as killed:
            summary = _ray_ingest(corpus, store, tiny_checkpoint, tiny_embedder)
        got = _records(store)
        again = _ray_ingest(corpus, store, tiny_checkpoint, tiny_embedder)
        assert store.count() == len(want)

    assert bool(killed) == kill, "no encoder worker process was found to kill"
    assert (summary.added, summary.skipped) == (expected.added, 0)
    assert summary.failed == expected.failed and len(summary.failed) == 1  # broken.png
    assert (summary.tokens, summary.pages) == (expected.tokens, expected.pages)
    assert sorted(got, key=str) == sorted(want, key=str)
    for record_id, record in want.items():
        assert got[record_id].payload == record.payload
        np.testing.assert_allclose(got[record_id].dense, record.dense, atol=1e-4)
        np.testing.assert_allclose(got[record_id].multivector, record.multivector, atol=3e-3)
    assert (again.added, again.skipped, again.failed) == (0, len(want), expected.failed)


def _encode_worker_pids() -> list[int]:
    """The processes of Ray Data's encoder actors (Ray titles them after the actor class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and b"EncodeWorker" in cmdline:
            pids.append(int(entry.name))
    return pids


class _KillAfterFirstWrite(logging.Handler):
    """On the driver's first "upserted" log: SIGKILL the encoder actor's process (once)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.killed: list[int] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            if self.killed or "upserted" not in record.getMessage():
                return
            for pid in _encode_worker_pids():
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)


@contextlib.contextmanager
def _killing_the_encoder(kill: bool) -> Iterator[list[int]]:
    """The pids killed (after the driver's first write) while the block runs, if ``kill``."""
    if not kill:
        yield []
        return
    killer = _KillAfterFirstWrite()
    job_logger = logging.getLogger("jina_vdb.distributed.job")
    level = job_logger.level
    job_logger.setLevel(logging.DEBUG)
    job_logger.addHandler(killer)
    try:
        yield killer.killed
    finally:
        job_logger.removeHandler(killer)
        job_logger.setLevel(level)


def test_a_killed_driver_then_a_rerun_gives_every_id_once(
    ray_address: str, tmp_path: Path, tiny_checkpoint: Path, tiny_embedder: Any
) -> None:
    corpus = tmp_path / "corpus"
    write_text_corpus(corpus, 12, words=40)
    # qdrant-edge: in-process, its writes survive SIGKILL (test_resume), no server to start.
    url = f"qdrant:{tmp_path / 'q'}"
    cmd = cli_command(
        "ingest",
        str(corpus),
        "--store",
        url,
        "--model",
        str(tiny_checkpoint),
        "--batch-size",
        "2",
        "--ray",
        ray_address,
        "--workers",
        "1",
        "--quiet",
        "--verbose",
    )
    env = subprocess_env(PYTHONPATH=os.environ["PYTHONPATH"])
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # SIGKILL right after the driver's first write
            if "upserted" in line:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    # The re-run in this process (a driver like any other, on the same cluster), with the
    # options the command line ran with.
    from jina_vdb.distributed import RayOptions, ray_ingest

    cli_sources = SourceOptions(task="retrieval")
    expected = [
        it.id for it in iter_items([corpus], tokenizer=tiny_embedder.tokenizer, options=cli_sources)
    ]
    with open_store(url, "docs") as store:
        before = store.count()
        rerun = ray_ingest(
            [corpus],
            tiny_checkpoint,
            store,
            IngestOptions(text_batch=2, progress=False),
            sources=cli_sources,
            ray_options=RayOptions(workers=1),
        )
        stored = [r.id for r in store.scan()]
    assert sorted(stored) == sorted(expected)
    assert 0 < before < len(expected)  # the killed run wrote some, not all
    assert (rerun.added, rerun.skipped, rerun.failed) == (len(expected) - before, before, [])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ("--writers", "4"),
            "error: --writers applies to server stores; qdrant:{tmp}/q is embedded and "
            "written by the driver alone (one process may open it)",
        ),
        (
            ("--device", "cpu"),
            "error: --device cannot be combined with --ray: the workers' device follows "
            "--gpus-per-worker (0: CPU workers)",
        ),
    ],
    ids=["writers-embedded", "device"],
)
def test_options_ray_cannot_honour_are_refused(
    flags: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    store = f"qdrant:{tmp_path}/q"
    proc = run_cli("ingest", str(tmp_path / "a.txt"), "--store", store, "--ray", "local", *flags)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [message.format(tmp=tmp_path)]
    assert not (tmp_path / "q").exists()  # refused before anything was opened


def test_parallel_writers_fill_a_milvus_server_with_every_item_once(
    ray_address: str, milvus_server: Any, tmp_path: Path, tiny_checkpoint: Path, tiny_embedder: Any
) -> None:
    corpus = tmp_path / "corpus"
    write_text_corpus(corpus, 12, words=40)
    items = list(iter_items([corpus], tokenizer=tiny_embedder.tokenizer, options=SOURCES))
    url = f"milvus+{milvus_server.uri}"
    # Milvus 2.3 holds one vector field: no Matryoshka prefix vector.
    with _open(url, tiny_embedder, f"ray_{uuid.uuid4().hex[:8]}", prefetch="none") as db:
        summary = _ray_ingest(corpus, db, tiny_checkpoint, tiny_embedder, server=url)
        again = _ray_ingest(corpus, db, tiny_checkpoint, tiny_embedder, server=url)
        stored = db.get([it.id for it in items])
    assert (summary.added, summary.failed) == (len(items), [])
    assert (again.added, again.skipped) == (0, len(items))
    assert {r.id: r.payload for r in stored} == {it.id: it.payload for it in items}


def test_the_load_tasks_ship_pages_shrunk_to_the_pixel_budget(
    tmp_path: Path, tiny_checkpoint: Path, tiny_embedder: Any
) -> None:
    from embedder import describe_checkpoint
    from jina_vdb.distributed import stages

    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(minimal_pdf([["A letter-size page."]]))
    options = SourceOptions(pdf_dpi=150)
    items = list(iter_items([pdf], tokenizer=tiny_embedder.tokenizer, options=options))
    batch = {
        "file_no": np.zeros(len(items), dtype=np.int64),
        "item": stages.column([stages.dumps(it) for it in items]),
        "failure": stages.column([b""] * len(items)),
    }
    fit = describe_checkpoint(tiny_checkpoint).image_fit(BUDGET)

    loaded = stages.load_rows(batch, fit=fit)

    rendered = items[0].load()
    page = stages.loads(loaded["content"][0])
    assert rendered.width * rendered.height > 4 * BUDGET  # the full 150-DPI render
    assert page.width * page.height <= BUDGET
    assert len(loaded["content"][0]) * 20 < len(stages.dumps(rendered))

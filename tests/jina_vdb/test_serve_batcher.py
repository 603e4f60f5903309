"""The server's batcher, in process, on the real tiny model: grouping by LoRA task."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from embedder.options import PromptName, Task
from jina_vdb.serve.batcher import Batcher, BatchKey, BatchStats


class Recording:
    """The real encoder, recording the LoRA task of each call; the first call waits for
    ``gate`` so that a queue builds up behind it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tasks: list[Task] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def _enter(self, task: Task) -> None:
        self.tasks.append(task)
        self.entered.set()
        assert self.gate.wait(timeout=60), "test gate never opened"

    def encode_text(self, texts: Sequence[str], **kw: Any) -> Any:
        self._enter(kw["task"])
        return self.inner.encode_text(texts, **kw)

    def encode_image(self, images: Sequence[Any], **kw: Any) -> Any:
        self._enter(kw["task"])
        return self.inner.encode_image(images, **kw)


def png(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (28, 28), color).save(buf, format="PNG")
    return buf.getvalue()


def text_key(task: Task, prompt: PromptName) -> BatchKey:
    return BatchKey("text", task, prompt, None, False)


R, C, M = Task.RETRIEVAL, Task.CODE, Task.TEXT_MATCHING
Q, P = PromptName.QUERY, PromptName.PASSAGE


def mixed_queue() -> list[tuple[BatchKey, list[Any]]]:
    """Jobs whose keys interleave tasks: in arrival order R C R C M R C (7 key changes)."""
    jobs: list[tuple[BatchKey, list[Any]]] = []
    for i in range(4):
        jobs.append((text_key(R, Q), [f"where is the station {i}"]))
        jobs.append((text_key(C, Q), [f"sort a list {i}"]))
        jobs.append((BatchKey("image", R, P, None, False), [png((40 * i, 90, 200))]))
        jobs.append((text_key(C, P), [f"def f{i}(x): return x * {i}"]))
        jobs.append((text_key(M, Q), [f"a sentence to match {i}"]))
        jobs.append((text_key(R, P), [f"a passage about trains {i}"]))
        jobs.append((BatchKey("image", C, P, None, False), [png((10, 20 * i, 30))]))
    return jobs


def run_queue(
    encoder: Recording, jobs: list[tuple[BatchKey, list[Any]]], **settings: Any
) -> tuple[list[Any], list[BatchStats]]:
    """A first retrieval job occupies the worker; ``jobs`` queue behind it, then all run."""
    stats: list[BatchStats] = []
    batcher = Batcher(encoder, max_wait_s=0.0, on_batch=stats.append, **settings)

    async def main() -> list[Any]:
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(text_key(R, Q), ["first"], 4))
        while not encoder.entered.is_set():
            await asyncio.sleep(0.01)
        pending = [asyncio.ensure_future(batcher.submit(k, items, 8)) for k, items in jobs]
        while batcher.depth < len(jobs):
            await asyncio.sleep(0.01)
        encoder.gate.set()
        await first
        return list(await asyncio.gather(*pending))

    try:
        return asyncio.run(main()), stats
    finally:
        batcher.stop(timeout=60)


def switches(tasks: list[Task]) -> int:
    return sum(a is not b for a, b in zip(tasks, tasks[1:], strict=False))


def assert_rows_correct(embedder: Any, jobs: list[tuple[BatchKey, list[Any]]], got: list[Any]):
    for (key, items), rows in zip(jobs, got, strict=True):
        if key.modality == "text":
            direct = embedder.encode_text(
                items, task=key.task, prompt_name=key.prompt, multivector=False
            )
        else:
            direct = embedder.encode_image(items, task=key.task, multivector=False)
        # batched with other lengths: equal up to padding's last bits (see batcher doc)
        np.testing.assert_allclose(rows.dense, direct.dense, rtol=0, atol=1e-6)
        assert rows.dense.shape == direct.dense.shape
        np.testing.assert_array_equal(rows.token_counts, direct.token_counts)


def test_mixed_queue_keeps_the_loaded_task(
    tiny_embedder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With retrieval loaded, every retrieval key goes first (texts, images, both prompts),
    then the oldest other task's keys: 2 switches where oldest-first order makes 6."""
    encoder = Recording(tiny_embedder)
    jobs = mixed_queue()
    with caplog.at_level(logging.DEBUG, logger="jina_vdb.serve.batcher"):
        got, stats = run_queue(encoder, jobs, task_patience_s=60.0)
    assert encoder.tasks[0] is R and switches(encoder.tasks) == 2, encoder.tasks
    assert encoder.tasks[-1] is M  # code's oldest job came before text-matching's
    assert sum(s.task_switch for s in stats) == 2
    assert sum(s.requests for s in stats) == len(jobs) + 1
    oldest_first = [k.task for k, _ in dict.fromkeys((k, None) for k, _ in jobs)]
    assert switches([R, *oldest_first]) == 6  # what taking the oldest key each time gives
    logged = [r.getMessage() for r in caplog.records if "task switch" in r.getMessage()]
    assert any("retrieval -> code" in m for m in logged), logged
    assert any("code -> text-matching" in m for m in logged), logged
    assert_rows_correct(tiny_embedder, jobs, got)


def test_another_task_waits_no_longer_than_its_patience(tiny_embedder: Any) -> None:
    """No patience: the oldest job is served next even while the loaded task has work, so
    no task starves (keys are still taken whole: each key's jobs form one batch)."""
    encoder = Recording(tiny_embedder)
    jobs = mixed_queue()
    got, stats = run_queue(encoder, jobs, task_patience_s=0.0, switch_share=1.0)
    oldest_first = [k.task for k, _ in dict.fromkeys((k, None) for k, _ in jobs)]
    assert encoder.tasks == [R, *oldest_first]
    assert len(stats) == 1 + len(oldest_first)  # one batch per key
    assert_rows_correct(tiny_embedder, jobs, got)


def test_images_of_two_tasks_get_their_own_rows(tiny_embedder: Any) -> None:
    """Each job gets its own rows back even when keys and tasks interleave."""
    encoder = Recording(tiny_embedder)
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    jobs = [(BatchKey("image", t, P, None, False), [png(c)]) for t in (R, C) for c in colors]
    got, _ = run_queue(encoder, jobs, task_patience_s=60.0)
    assert_rows_correct(tiny_embedder, jobs, got)
    assert len({r.dense.tobytes() for r in got}) == len(jobs)

"""Results do not depend on batching, task mixing or the order tasks were used in."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from embedder.batching import plan_batches

TEXTS = [
    "short",
    "a somewhat longer sentence about vector databases and embeddings",
    "Paris is the capital of France. " * 12,
    "x",
    "def f(x):\n    return x * 2\n",
    "Les modèles multilingues comprennent le français.",
    "The quick brown fox jumps over the lazy dog. " * 4,
    "SELECT id FROM documents LIMIT 10;",
]


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _assert_same(a, b, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(a.dense, b.dense, atol=atol, rtol=0)
    np.testing.assert_array_equal(a.token_counts, b.token_counts)
    for x, y in zip(a.multivectors, b.multivectors, strict=True):
        np.testing.assert_allclose(x, y, atol=atol, rtol=0)


def _concat(batches):
    dense = np.concatenate([b.dense for b in batches])
    multi = [m for b in batches for m in b.multivectors]
    counts = np.concatenate([b.token_counts for b in batches])
    return type(batches[0])(dense=dense, multivectors=multi, token_counts=counts)


def test_plan_batches_respects_budget_groups_and_covers_all() -> None:
    costs = [5, 50, 7, 30, 30, 2, 100, 9]
    groups = ["a", "b", "a", "a", "b", "b", "a", "a"]
    plan = plan_batches(costs, budget=64, groups=groups)
    seen = sorted(i for b in plan for i in b.indices)
    assert seen == list(range(len(costs)))
    for batch in plan:
        assert (
            len({groups[i] for i in batch.indices}) == 1 and batch.group == groups[batch.indices[0]]
        )
        longest = max(costs[i] for i in batch.indices)
        assert batch.padded_tokens == longest * len(batch.indices)
        assert batch.padded_tokens <= 64 or len(batch.indices) == 1  # 100 runs alone
        lengths = [costs[i] for i in batch.indices]
        assert lengths == sorted(lengths, reverse=True)
    assert plan == plan_batches(costs, budget=64, groups=groups)  # deterministic


def test_plan_batches_rejects_bad_budget() -> None:
    with pytest.raises(ValueError, match="budget"):
        plan_batches([1, 2], budget=0)


def test_text_one_by_one_equals_token_budget_batches(tiny_embedder) -> None:
    singles = _concat([tiny_embedder.encode_text([t], task="retrieval") for t in TEXTS])
    small = tiny_embedder.encode_text(TEXTS, task="retrieval", batch_tokens=120)
    one = tiny_embedder.encode_text(TEXTS, task="retrieval", batch_tokens=100_000)
    _assert_same(small, singles)
    _assert_same(one, singles)


def test_image_one_by_one_equals_batched(tiny_embedder) -> None:
    images = [_image(60, 40, 0), _image(300, 120, 1), _image(100, 200, 2), _image(56, 56, 3)]
    singles = _concat([tiny_embedder.encode_image([im], task="code") for im in images])
    batched = tiny_embedder.encode_image(images, task="code")
    _assert_same(batched, singles)


def test_output_follows_input_order(tiny_embedder) -> None:
    out = tiny_embedder.encode_text(TEXTS, task="code", batch_tokens=120)
    perm = [3, 7, 0, 5, 1, 6, 2, 4]
    shuffled = tiny_embedder.encode_text([TEXTS[i] for i in perm], task="code", batch_tokens=120)
    np.testing.assert_allclose(shuffled.dense, out.dense[perm], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(shuffled.token_counts, out.token_counts[perm])


def test_mixed_task_batch_equals_per_task_batches(tiny_embedder) -> None:
    tasks = [
        "retrieval",
        "code",
        "text-matching",
        "code",
        "retrieval",
        "retrieval",
        "code",
        "text-matching",
    ]
    mixed = tiny_embedder.encode_text(TEXTS, task=tasks, prompt_name="passage")
    for task in ("retrieval", "code", "text-matching"):
        idx = [i for i, t in enumerate(tasks) if t == task]
        alone = tiny_embedder.encode_text([TEXTS[i] for i in idx], task=task, prompt_name="passage")
        # Same items, same batches: bit-identical, not just close.
        np.testing.assert_array_equal(mixed.dense[idx], alone.dense)
        for i, m in zip(idx, alone.multivectors, strict=True):
            np.testing.assert_array_equal(mixed.multivectors[i], m)
    singles = _concat(
        [
            tiny_embedder.encode_text([t], task=k, prompt_name="passage")
            for t, k in zip(TEXTS, tasks, strict=True)
        ]
    )
    _assert_same(mixed, singles)


def test_mixed_tasks_for_images(tiny_embedder) -> None:
    images = [_image(80, 60, 5), _image(120, 90, 6)]
    mixed = tiny_embedder.encode_image(images, task=["code", "retrieval"])
    code = tiny_embedder.encode_image(images[:1], task="code")
    retrieval = tiny_embedder.encode_image(images[1:], task="retrieval")
    np.testing.assert_array_equal(mixed.dense, np.concatenate([code.dense, retrieval.dense]))


def test_switching_tasks_back_and_forth_is_bit_identical(tiny_embedder) -> None:
    first = tiny_embedder.encode_text(TEXTS, task="retrieval")
    for _ in range(3):
        tiny_embedder.encode_text(TEXTS[:2], task="code")
        tiny_embedder.encode_text(TEXTS[:2], task="text-matching")
    again = tiny_embedder.encode_text(TEXTS, task="retrieval")
    np.testing.assert_array_equal(first.dense, again.dense)
    for a, b in zip(first.multivectors, again.multivectors, strict=True):
        np.testing.assert_array_equal(a, b)


def test_progress_bar_follows_request(tiny_embedder, capsys) -> None:
    tiny_embedder.encode_text(TEXTS[:2], task="code", show_progress=True)
    assert "encode_text" in capsys.readouterr().err
    tiny_embedder.encode_text(TEXTS[:2], task="code", show_progress=False)
    assert "encode_text" not in capsys.readouterr().err

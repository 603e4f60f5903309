"""Cost-sorted token-budget batches, background preparation, order restore, progress."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Batch:
    """Positions (into the caller's inputs) of the items run together, and their group."""

    indices: tuple[int, ...]
    group: Hashable
    padded_tokens: int  # what the batch costs the model: len * longest, or the sum when packed


def plan_batches(
    costs: Sequence[int],
    budget: int,
    groups: Sequence[Hashable] | None = None,
    *,
    packed: bool = False,
) -> list[Batch]:
    """Split items into batches of one group each, at most ``budget`` tokens each.

    Items are sorted by group, then longest first, so each batch holds similar lengths
    and wastes little on padding (and the biggest batch runs first: out-of-memory shows
    at once). An item longer than the budget runs alone. The plan depends only on the
    costs and groups, so equal inputs always run in equal batches.

    Args:
        costs: Tokens per item (the padded length it needs).
        budget: Max ``batch_size * longest_item`` tokens per batch (padded), or max
            ``sum(costs)`` when ``packed``.
        groups: A label per item (e.g. the task); batches never mix labels.
        packed: The batch runs as one packed row: its size is the sum of its costs.
    """
    if budget <= 0:
        raise ValueError(f"batch token budget must be > 0, got {budget}")
    labels: Sequence[Hashable] = groups if groups is not None else [0] * len(costs)
    group_order = {g: k for k, g in enumerate(dict.fromkeys(labels))}
    order = sorted(range(len(costs)), key=lambda i: (group_order[labels[i]], -costs[i], i))
    batches: list[Batch] = []
    current: list[int] = []
    cost = 0  # of ``current``: len * longest (sorted: the first is the longest), or the sum
    for i in order:
        if current:
            grown = cost + costs[i] if packed else (len(current) + 1) * costs[current[0]]
            if labels[current[0]] == labels[i] and grown <= budget:
                current.append(i)
                cost = grown
                continue
            batches.append(Batch(tuple(current), labels[current[0]], cost))
        current, cost = [i], costs[i]
    if current:
        batches.append(Batch(tuple(current), labels[current[0]], cost))
    return batches


def progress_enabled(show_progress: bool | None, log: logging.Logger) -> bool:
    """None follows the log level: a bar when this logger would emit INFO records."""
    return log.isEnabledFor(logging.INFO) if show_progress is None else bool(show_progress)


class Pipeline(Generic[T, R]):
    """Runs ``prepare`` for batch k+1 on a worker thread while ``run`` handles batch k.

    Tokenising, image resizing and host-to-device copies then overlap the GPU's work.
    """

    def __init__(self, prepare: Callable[[Batch], T], run: Callable[[Batch, T], R]) -> None:
        self._prepare = prepare
        self._run = run

    def __call__(
        self, batches: Sequence[Batch], *, total: int, show: bool, desc: str
    ) -> Iterator[tuple[Batch, R]]:
        with tqdm(total=total, disable=not show, desc=desc, unit="item") as bar:
            if len(batches) == 1:  # nothing to overlap with: skip the thread (query latency)
                yield batches[0], self._run(batches[0], self._prepare(batches[0]))
                bar.update(len(batches[0].indices))
                return
            with ThreadPoolExecutor(1) as worker:
                pending: Future[T] | None = None
                for k, batch in enumerate(batches):
                    prepared = self._prepare(batch) if pending is None else pending.result()
                    if k + 1 < len(batches):
                        pending = worker.submit(self._prepare, batches[k + 1])
                    yield batch, self._run(batch, prepared)
                    bar.update(len(batch.indices))

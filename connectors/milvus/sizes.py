"""How many rows a restricted dense stage searches among: the inputs of ``convert.filtered_ef``.

A dense stage restricted by a filter widens its HNSW breadth by the inverse selectivity
(``filtered_ef``), so it needs the collection's row count and the filter's match count.
Sending two ``count(*)`` per filtered stage cost more than the search: Milvus Lite counts a
filter by materialising every matching row (~0.1 ms each with a 2048-d vector), so on
2,000 documents a 50% filter's counts took 119 of a 125 ms dense query and a 90% one 393 of
399 ms; on 20,000 documents a 50% filter's took 1.5-2.0 s (bench/filtered_count.py).

``Sizes`` remembers both per store:
- the row count, and each filter's match count (the last ``MAX_FILTERS`` expressions), are
  forgotten when this store writes or deletes (``forget``; a count taken meanwhile is not
  kept, as it may have missed the write) and re-counted after
  ``MAX_AGE_S`` seconds, so another writer's changes reach ``ef`` within that time. Until
  then ``ef`` is set from the old counts: wider than needed (slower) when the filter's
  matches grew, narrower (recall may drop for a selective filter) when they shrank or the
  rows grew. Results are otherwise unchanged: a filter that matched nothing is never
  remembered, so a stage is skipped as empty only on a fresh count.
- On Milvus Lite a filter is probed with ``query(limit=PROBE_ROWS)`` instead of counted: the
  probe's answer is the exact match count when shorter than the limit, and a lower bound
  (so ``ef`` an upper bound of the rule's) otherwise; its cost is bounded by the limit.
  Servers count with ``count(*)``, which they aggregate without returning rows.
- A ``pk in [...]`` candidate list needs no match count: it is the list's length.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from .convert import HNSW_MIN_EF, PK
from .layout import Target

#: Seconds a count is used before it is taken again (another writer's changes).
MAX_AGE_S = 30.0
#: Filter expressions whose match counts are remembered (least recently used dropped).
MAX_FILTERS = 256
#: Rows a Milvus Lite match probe returns at most: 2 x the smallest ef. On 2,000 documents
#: (2048-d, Lite 3.2, 2 shared cores) a probe of 256 rows takes ~19 ms and an ef of 1,000
#: (the bound for a broad filter) no more than ef 128; on 20,000 the probe takes ~50 ms and
#: a 50% filter's search ~61 ms at the bound 10,000 (~28 ms at the exact 256), against
#: 0.3-2.6 s for a 10-90% filter's count(*).
PROBE_ROWS = 2 * HNSW_MIN_EF


def count(t: Target, expr: str) -> int:
    """Rows of the documents collection matching ``expr`` (all rows for ``""``)."""
    rows = t.client.query(t.name, filter=expr, output_fields=["count(*)"], **t.read)
    return int(rows[0]["count(*)"]) if rows else 0


class Sizes:
    """Row and match counts of one store's documents collection, kept between searches."""

    def __init__(self, max_age: float = MAX_AGE_S) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        # expr -> (monotonic time taken, count); "" holds the row count.
        self._counts: OrderedDict[str, tuple[float, int]] = OrderedDict()
        # Bumped by forget(): a count taken while this store wrote is not kept.
        self._generation = 0

    def forget(self) -> None:
        """Drop every count (this store wrote or deleted rows)."""
        with self._lock:
            self._counts.clear()
            self._generation += 1

    def rows(self, t: Target) -> int:
        """The collection's row count."""
        return self._get(t, "")

    def matches(self, t: Target, expr: str) -> int:
        """The filter's match count, or at least ``PROBE_ROWS`` when a Milvus Lite probe
        filled its limit (a lower bound: ``filtered_ef`` then errs wide)."""
        return self._get(t, expr)

    def _get(self, t: Target, expr: str) -> int:
        now = time.monotonic()
        with self._lock:
            kept = self._counts.get(expr)
            if kept is not None and now - kept[0] <= self.max_age:
                self._counts.move_to_end(expr)
                return kept[1]
            generation = self._generation
        n = _probe(t, expr) if expr and t.server.lite else count(t, expr)
        # An empty answer is never reused: results must not depend on a stale 0.
        if n > 0:
            with self._lock:
                if generation != self._generation:
                    return n
                self._counts[expr] = (now, n)
                self._counts.move_to_end(expr)
                while len(self._counts) > MAX_FILTERS + 1:
                    self._counts.popitem(last=False)
        return n


def _probe(t: Target, expr: str) -> int:
    """Matches of ``expr``, counted up to ``PROBE_ROWS`` (Milvus Lite's count(*) of a filter
    materialises every matching row, so its cost grows with the matches)."""
    rows = t.client.query(t.name, filter=expr, output_fields=[PK], limit=PROBE_ROWS, **t.read)
    return len(rows)

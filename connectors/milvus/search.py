"""The search path: a SearchPlan run on the documents collection and its layout.

Every search mode runs the plan's cascades: the first stage searches the (filtered)
collection, each later stage rescores only the previous stage's candidates (a dense stage
with a ``pk in [...]`` filter, a MaxSim stage through the layout). Fusion is RRF of the
cascades' rankings: server-side ``hybrid_search`` with RRFRanker in the struct layout,
``connectors.vectors.rrf`` otherwise. Payloads are fetched only for the final hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..query import Hit, SearchMode, SearchPlan, Stage
from ..spec import CollectionSpec
from ..vectors import rrf
from . import convert as cv
from .convert import PAYLOAD, PK
from .layout import Scored, Target, TokenLayout, parse_hits
from .sizes import Sizes
from .struct_layout import StructLayout, fusion_request, maxsim_stage_request


def stage_request(
    spec: CollectionSpec,
    stage: Stage,
    vectors: dict[str, Any],
    expr: str,
    keys: list[str] | None,
    final_limit: int,
    candidate_fields: tuple[str, ...] = (),
    ef: int | None = None,
) -> dict[str, Any]:
    """``MilvusClient.search`` arguments of one server-side stage of a cascade: a dense HNSW
    stage, or (struct layout) a MaxSim stage. ``keys``: the previous stage's primary keys
    (None for a first stage, which searches the rows matching ``expr``); ``final_limit``:
    the plan's limit (a dense stage that short returns payloads, its hits may be the answer);
    ``ef``: a restricted dense stage's breadth (``Search._restricted_ef``)."""
    vector = vectors[stage.field]
    if stage.maxsim:
        return maxsim_stage_request(stage.field, vector, stage.limit, expr, keys)
    output = [PAYLOAD] if stage.limit <= final_limit else []
    return cv.dense_search_request(
        stage.field,
        vector,
        stage.limit,
        expr if keys is None else cv.in_expr(PK, keys),
        [*output, *candidate_fields],
        cv.metric(spec, stage.field),
        ef,
    )


def struct_fusion_request(
    spec: CollectionSpec,
    plan: SearchPlan,
    vectors: dict[str, Any],
    expr: str,
    candidates: list[str],
    ef: int | None = None,
) -> dict[str, Any]:
    """``hybrid_search`` arguments of a fusion plan in the struct layout: RRF (``plan.rrf_k``)
    of the dense ranking and MaxSim over ``candidates`` (the dense stage's keys)."""
    (dense_stage,) = plan.cascades[0]
    return fusion_request(
        dense_stage.field,
        vectors[dense_stage.field],
        spec.multivector_field,
        vectors[spec.multivector_field],
        candidates,
        dense_stage.limit,
        plan.limit,
        expr,
        plan.rrf_k,
        ef,
    )


@dataclass
class Search:
    """One store's search path: its target, token layout, (current) spec and the row and
    match counts it keeps between searches (sizes.py)."""

    target: Target
    layout: TokenLayout
    spec: CollectionSpec
    sizes: Sizes

    def execute(self, plan: SearchPlan, vectors: dict[str, Any], expr: str) -> list[Hit]:
        """The plan's hits; ``expr`` is its filter as a Milvus expression."""
        if plan.mode is SearchMode.FUSION and isinstance(self.layout, StructLayout):
            return self._hits(self._struct_fusion(self.layout, plan, vectors, expr))
        done: dict[tuple[Stage, ...], list[Scored]] = {}
        known: dict[str, dict[str, Any]] = {}
        rankings = [self._cascade(c, vectors, expr, done, plan.limit, known) for c in plan.cascades]
        if not plan.fused:
            return self._hits(rankings[0][: plan.limit])
        payloads = {
            key: payload
            for ranking in rankings
            for key, _, payload in ranking
            if payload is not None
        }
        fused = rrf([[key for key, _, _ in ranking] for ranking in rankings], k=plan.rrf_k)[
            : plan.limit
        ]
        return self._hits([(key, score, payloads.get(key)) for key, score in fused])

    def _cascade(
        self,
        stages: tuple[Stage, ...],
        vectors: dict[str, Any],
        expr: str,
        done: dict[tuple[Stage, ...], list[Scored]],
        limit: int,
        known: dict[str, dict[str, Any]] | None = None,
    ) -> list[Scored]:
        """Run stages in order; prefixes already run for another cascade are reused.

        Payloads come with a dense stage only when its hits can be the answer (its limit is
        the query's); candidate lists leave them to ``_hits``, which fetches the final few.
        Dense stages also return the layout's ``candidate_fields`` (into ``known``), which
        spares the MaxSim stage a request.
        """
        if stages in done:
            return done[stages]
        previous = (
            self._cascade(stages[:-1], vectors, expr, done, limit, known)
            if len(stages) > 1
            else None
        )
        stage = stages[-1]
        if previous is not None and not previous:
            result: list[Scored] = []
        elif stage.maxsim:
            tokens = vectors[stage.field]
            if previous is None:
                result = self.layout.score_all(tokens, expr, stage.limit)
            else:
                keys = [key for key, _, _ in previous]
                result = self.layout.rerank(tokens, keys, stage.limit, known)
        else:
            result = self._dense_stage(stage, vectors, expr, previous, limit, known)
        done[stages] = result
        return result

    def _dense_stage(
        self,
        stage: Stage,
        vectors: dict[str, Any],
        expr: str,
        previous: list[Scored] | None,
        limit: int,
        known: dict[str, dict[str, Any]] | None,
    ) -> list[Scored]:
        """One HNSW search: of the filtered collection (a first stage) or of the previous
        stage's candidates (``pk in [...]``), with ef widened for the restriction."""
        keys = None if previous is None else [key for key, _, _ in previous]
        ef = self._restricted_ef(stage.limit, expr, keys)
        if ef == 0:
            return []
        request = stage_request(
            self.spec,
            stage,
            vectors,
            expr,
            keys,
            limit,
            self.layout.candidate_fields,
            ef,
        )
        t = self.target
        return parse_hits(t.client.search(t.name, **request, **t.read), known)

    def _restricted_ef(self, limit: int, expr: str, keys: list[str] | None) -> int | None:
        """HNSW breadth for a dense stage searching only part of the collection (the filter's
        matches, or the previous stage's candidates), widened by the share of rows it may
        return (``convert.filtered_ef``): None when unrestricted, 0 when nothing matches.
        The counts come from ``sizes`` (kept between searches; a candidate list's is its
        length)."""
        if keys is None and not expr:
            return None
        matches = len(keys) if keys is not None else self.sizes.matches(self.target, expr)
        if matches == 0:
            return 0
        return cv.filtered_ef(limit, matches, self.sizes.rows(self.target))

    def _struct_fusion(
        self, layout: StructLayout, plan: SearchPlan, vectors: dict[str, Any], expr: str
    ) -> list[Scored]:
        """Struct layout fusion: dense candidates, then one hybrid_search (RRF on the server)."""
        (dense_stage,) = plan.cascades[0]
        candidates = self._cascade((dense_stage,), vectors, expr, {}, plan.limit)
        if not candidates:
            return []
        ef = self._restricted_ef(dense_stage.limit, expr, None)
        keys = [k for k, _, _ in candidates]
        return layout.fuse(struct_fusion_request(self.spec, plan, vectors, expr, keys, ef))

    def _hits(self, scored: list[Scored]) -> list[Hit]:
        """Hits in order, fetching the payloads the last stage did not return."""
        t = self.target
        missing = [key for key, _, payload in scored if payload is None]
        fetched = {r[PK]: r[PAYLOAD] for r in t.rows(t.name, missing, [PAYLOAD])} if missing else {}
        return [
            Hit(
                id=cv.decode_id(key),
                score=score,
                payload=payload if payload is not None else fetched.get(key, {}),
            )
            for key, score, payload in scored
        ]

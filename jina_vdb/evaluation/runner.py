"""Run a BEIR-layout dataset against a collection: ingest the corpus, search, score, time.

The modes come from ``connectors.query.SearchMode``: every mode the collection's spec can
plan (``build_plan`` refuses the others, with the reason) is run, so a mode added to the
enum is evaluated without a change here. Each query is encoded once (token vectors only
when the collection has them); the latency is the store's search call alone, per query,
after one untimed warm-up search per mode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from connectors.base import VectorStore
from connectors.errors import QueryError
from connectors.query import Hit, Query, SearchMode, build_plan
from connectors.spec import CollectionSpec

from .beir import BeirDataset, iter_corpus
from .metrics import DEFAULT_METRICS, Metric, evaluate_run, mean_metrics, percentile

logger = logging.getLogger(__name__)

#: Queries encoded per call (the encoder sub-batches by tokens itself).
QUERY_BATCH = 64


@dataclass(frozen=True)
class ModeResult:
    """One search mode's mean scores and per-query search latency (milliseconds)."""

    mode: str
    scores: dict[str, float]
    p50_ms: float
    p95_ms: float
    queries: int
    foreign_hits: int = 0  # hits whose id is not a corpus id (another corpus' records)
    # query id -> [(doc id, score)] best first; left out of the JSON report
    run: dict[str, list[tuple[str, float]]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    split: str
    store: str
    collection: str
    documents: int
    queries: int
    unjudged_queries: int
    depth: int  # results retrieved per query
    prefetch_limit: int
    encode_ms_per_query: float
    results: list[ModeResult]
    skipped_modes: dict[str, str] = field(default_factory=dict)  # mode -> why it cannot run

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for result in out["results"]:
            del result["run"]
        return out

    def trec_run_lines(self) -> Iterator[str]:
        """Every mode's rankings in the TREC run format (``qid Q0 docid rank score mode``),
        for trec_eval or any tool that reads runs."""
        for result in self.results:
            for qid, ranking in result.run.items():
                for rank, (doc, score) in enumerate(ranking, start=1):
                    yield f"{qid} Q0 {doc} {rank} {score:.6f} {result.mode}"


def plannable_modes(spec: CollectionSpec) -> tuple[list[SearchMode], dict[str, str]]:
    """The modes a collection with this spec can run, and why each other one cannot."""
    ok: list[SearchMode] = []
    refused: dict[str, str] = {}
    for mode in SearchMode:
        try:
            build_plan(spec, mode)
        except QueryError as e:
            refused[mode.value] = str(e)
        else:
            ok.append(mode)
    return ok, refused


def choose_modes(
    spec: CollectionSpec, requested: Sequence[str] | None
) -> tuple[list[SearchMode], dict[str, str]]:
    """``requested`` (None: every mode the spec can plan) checked against the spec.

    A mode asked for by name that this collection cannot run is an error, not a skip.
    """
    ok, refused = plannable_modes(spec)
    if requested is None:
        return ok, refused
    chosen = parse_modes(requested)
    for mode in chosen:
        if mode.value in refused:
            raise ValueError(
                f"mode {mode.value!r} cannot run on this collection: {refused[mode.value]}"
            )
    return chosen, {}


def parse_modes(names: Sequence[str]) -> list[SearchMode]:
    """Mode names (``--modes``) as SearchModes, repeats dropped; unknown names refused."""
    chosen: list[SearchMode] = []
    for name in names:
        try:
            mode = SearchMode(name.strip().lower())
        except ValueError:
            valid = ", ".join(m.value for m in SearchMode)
            raise ValueError(f"unknown search mode {name!r}; valid modes: {valid}") from None
        if mode not in chosen:
            chosen.append(mode)
    if not chosen:
        raise ValueError(
            f"no search mode named; valid modes: {', '.join(m.value for m in SearchMode)}"
        )
    return chosen


def corpus_items(dataset: BeirDataset, tokenizer: Any, task: str = "retrieval") -> Iterator[Any]:
    """The corpus as ingest items (``jina_vdb.sources.jsonl``): record id = the BEIR ``_id``."""
    from jina_vdb.sources import SourceOptions
    from jina_vdb.sources.jsonl import item_from_object

    options = SourceOptions(task=task)
    path = dataset.corpus_path
    for doc in iter_corpus(path):
        line: dict[str, Any] = {"id": doc.id, "text": doc.text}
        if doc.metadata:
            line["metadata"] = doc.metadata
        yield item_from_object(line, path, doc.line, tokenizer=tokenizer, options=options)


def encode_queries(
    encoder: Any, texts: Sequence[str], *, task: str, multivector: bool
) -> tuple[list[Query], float]:
    """Every query's vectors, and the mean encode time per query in milliseconds."""
    queries: list[Query] = []
    started = time.perf_counter()
    for lo in range(0, len(texts), QUERY_BATCH):
        batch = encoder.encode_text(
            list(texts[lo : lo + QUERY_BATCH]),
            task=task,
            prompt_name="query",
            multivector=multivector,
            show_progress=False,
        )
        queries += [Query.from_batch(batch, i) for i in range(len(batch.dense))]
    elapsed_ms = (time.perf_counter() - started) * 1000
    return queries, elapsed_ms / max(len(texts), 1)


def run_mode(
    db: VectorStore,
    mode: SearchMode,
    query_ids: Sequence[str],
    queries: Sequence[Query],
    dataset: BeirDataset,
    *,
    depth: int,
    prefetch_limit: int,
    metrics: Sequence[Metric] = DEFAULT_METRICS,
) -> ModeResult:
    """Search every query in one mode; score the rankings against the qrels."""
    run: dict[str, list[tuple[str, float]]] = {}
    latencies: list[float] = []

    def search(query: Query) -> list[Hit]:
        return db.search(query, mode=mode, limit=depth, prefetch_limit=prefetch_limit)

    if queries:
        search(queries[0])  # warm-up (first-use loading), not timed
    for qid, query in zip(query_ids, queries, strict=True):
        started = time.perf_counter()
        hits = search(query)
        latencies.append((time.perf_counter() - started) * 1000)
        run[qid] = _ranking(hits, dataset.corpus_ids)
    ids = {qid: [doc for doc, _ in ranking] for qid, ranking in run.items()}
    foreign = sum(doc not in dataset.corpus_ids for ranking in ids.values() for doc in ranking)
    qrels = {q: dataset.qrels[q] for q in query_ids}
    scores = mean_metrics(evaluate_run(ids, qrels, metrics))
    return ModeResult(
        mode=mode.value,
        scores=scores,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        queries=len(query_ids),
        foreign_hits=foreign,
        run=run,
    )


def corpus_id(hit: Hit, corpus_ids: frozenset[str]) -> str:
    """The BEIR id of a hit: its record id, or the ``_id`` that ``jina-vdb ingest`` of the
    corpus file keeps in ``payload["meta"]`` (a collection filled that way, with any ingest
    option); the record id when neither is a corpus id."""
    rid = str(hit.id)
    if rid in corpus_ids:
        return rid
    meta = hit.payload.get("meta")
    beir = meta.get("_id") if isinstance(meta, dict) else None
    return str(beir) if beir is not None and str(beir) in corpus_ids else rid


def _ranking(hits: Sequence[Hit], corpus_ids: frozenset[str]) -> list[tuple[str, float]]:
    """(corpus id, score) best first; a document stored twice (under two ids) counts once."""
    ranking: list[tuple[str, float]] = []
    seen: set[str] = set()
    for hit in hits:
        doc = corpus_id(hit, corpus_ids)
        if doc in seen:
            logger.warning("document %r is stored twice in the collection: ranked once", doc)
            continue
        seen.add(doc)
        ranking.append((doc, float(hit.score)))
    return ranking


def evaluate_collection(
    db: VectorStore,
    encoder: Any,
    dataset: BeirDataset,
    modes: Sequence[SearchMode],
    *,
    depth: int = 100,
    prefetch_limit: int = 100,
    task: str = "retrieval",
    metrics: Sequence[Metric] = DEFAULT_METRICS,
) -> tuple[list[ModeResult], float]:
    """Each mode's result on the dataset's queries, and the encode time per query (ms)."""
    needed = max((m.k for m in metrics), default=depth)
    if depth < needed:
        raise ValueError(f"depth {depth} is below the largest metric cutoff ({needed})")
    multivector = db.spec.multivector and any(m is not SearchMode.DENSE for m in modes)
    query_ids = list(dataset.queries)
    texts = [dataset.queries[q] for q in query_ids]
    queries, encode_ms = encode_queries(encoder, texts, task=task, multivector=multivector)
    results = []
    for mode in modes:
        logger.info("mode %s: %d queries", mode.value, len(queries))
        result = run_mode(
            db,
            mode,
            query_ids,
            queries,
            dataset,
            depth=depth,
            prefetch_limit=prefetch_limit,
            metrics=metrics,
        )
        if result.foreign_hits:
            logger.warning(
                "mode %s: %d of the hits are not documents of %s: the collection holds other "
                "records (ingested another way or from another corpus); they count as not "
                "relevant",
                mode.value,
                result.foreign_hits,
                dataset.corpus_path,
            )
        results.append(result)
    return results, encode_ms

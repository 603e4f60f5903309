"""Token-vector storage options on qdrant-edge: bytes per document and recall of exact MaxSim.

    python bench/token_options.py                       # 2k docs x 300 tokens, every option
    python bench/token_options.py --docs 500 --options float16 pool3 binary --json out.json

Not a test. For each option (``OPTIONS``: float16, token pooling 2/3/4, int8 / binary
quantization of the token vectors, combinations) a qdrant-edge collection is filled with the
same synthetic corpus and measured: bytes on disk per document (the collection folder after
a clean close, and its segments alone), write rate, and recall@10 of the multivector
(full-scan MaxSim) and hybrid (dense prefetch -> MaxSim) modes against exact float32 MaxSim
over the whole corpus, unpooled (and how often the document a query was drawn from is in
its top 10: ``source@10``).

The corpus has topic structure, so approximations can fail as on real data: a few hundred
"concepts" (token directions), topics that each draw on a handful of concepts, documents
whose tokens are noisy concepts of their topic, and queries made of a few concepts of one
document's topic. Its documents share most of their tokens with their topic's other
documents: telling them apart takes the rare tokens, which pooling and quantization blur.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import CollectionSpec, Query, Record  # noqa: E402
from connectors.qdrant import QdrantStore  # noqa: E402
from connectors.vectors import l2_normalize, maxsim_many  # noqa: E402

logger = logging.getLogger("bench.token_options")

#: option name -> the CollectionSpec fields it sets (everything else is the default spec).
OPTIONS: dict[str, dict[str, Any]] = {
    "float16": {},
    "pool2": {"token_pooling": 2},
    "pool3": {"token_pooling": 3},
    "pool4": {"token_pooling": 4},
    "int8": {"multivector_quantization": "int8"},
    "binary": {"multivector_quantization": "binary"},
    "pool3+int8": {"token_pooling": 3, "multivector_quantization": "int8"},
    "pool2+binary": {"token_pooling": 2, "multivector_quantization": "binary"},
}


@dataclass(frozen=True)
class Corpus:
    docs: list[np.ndarray]  # (t, 128) float32 unit token vectors per document
    dense: np.ndarray  # (n, dim) float32
    queries: list[Query]
    sources: list[int]  # the document each query was drawn from


def make_corpus(
    n: int, tokens: int, *, dim: int, queries: int, concepts: int = 400, seed: int = 0
) -> Corpus:
    """Documents and queries drawn from shared token concepts (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((concepts, 128)))  # (c, 128)
    topics = max(n // 20, 2)
    topic_concepts = [rng.choice(concepts, size=12, replace=False) for _ in range(topics)]
    project = rng.standard_normal((128, dim)).astype(np.float32) / np.sqrt(128)
    docs, dense = [], []
    for _ in range(n):
        topic = int(rng.integers(topics))
        # mostly the topic's concepts, some from anywhere: the rare ones tell documents apart
        own = rng.choice(topic_concepts[topic], size=tokens)
        rare = rng.integers(concepts, size=tokens)
        pick = np.where(rng.random(tokens) < 0.8, own, rare)
        noise = rng.standard_normal((tokens, 128)) / np.sqrt(128)
        doc = l2_normalize(centres[pick] + 0.6 * noise).astype(np.float32)  # (t, 128)
        docs.append(doc)
        dense.append(_dense(doc, project, rng))
    out, sources = [], []
    for _ in range(queries):
        sources.append(int(rng.integers(n)))
        doc = docs[sources[-1]]
        rows = doc[rng.choice(len(doc), size=20, replace=False)]  # (20, 128)
        noise = rng.standard_normal(rows.shape) / np.sqrt(128)
        q_tokens = l2_normalize(rows + 0.5 * noise)
        q_dense = _dense(q_tokens, project, rng)
        out.append(Query(dense=q_dense, multivector=q_tokens))
    return Corpus(docs, np.stack(dense).astype(np.float32), out, sources)


def _dense(tokens: np.ndarray, project: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dense vector that knows the tokens' mean direction, blurred (a single vector sees
    the topic, not which rare tokens a document has)."""
    mean = l2_normalize(tokens.mean(axis=0) @ project)  # (dim,)
    noise = rng.standard_normal(mean.shape) / np.sqrt(mean.shape[0])
    return l2_normalize(mean + 0.5 * noise)


def exact_top(corpus: Corpus, k: int) -> list[set[int]]:
    """The true top-k of every query: exact float32 MaxSim over every (unpooled) document."""
    return [
        set(np.argsort(-maxsim_many(q.multivector, corpus.docs), kind="stable")[:k].tolist())
        for q in corpus.queries
    ]


def folder_bytes(folder: Path, *, segments_only: bool = False) -> int:
    """Bytes the folder's files take on disk (``du``: allocated blocks; qdrant-edge's
    preallocated mmap files are sparse, their st_size overstates them)."""
    files = (p for p in folder.rglob("*") if p.is_file())
    if segments_only:
        files = (p for p in files if "segments" in p.parts)
    return sum(p.stat().st_blocks * 512 for p in files)


def run_option(
    name: str, corpus: Corpus, truth: list[set[int]], work: Path, *, k: int, batch: int
) -> dict[str, Any]:
    spec = CollectionSpec(dim=corpus.dense.shape[1], **OPTIONS[name])
    folder = work / name
    start = time.perf_counter()
    with QdrantStore.create("bench", path=folder, spec=spec) as store:
        for lo in range(0, len(corpus.docs), batch):
            store.upsert(
                Record(i, corpus.dense[i], corpus.docs[i])
                for i in range(lo, min(lo + batch, len(corpus.docs)))
            )
        store.flush()
        seconds = time.perf_counter() - start
        stored_tokens = sum(
            len(r.multivector)
            for r in store.get(list(range(min(50, len(corpus.docs)))), with_vectors=True)
        ) / min(50, len(corpus.docs))
    n = len(corpus.docs)
    result: dict[str, Any] = {
        "option": name,
        "docs": n,
        "tokens_stored_per_doc": round(stored_tokens, 1),
        "bytes_per_doc": round(folder_bytes(folder / "bench") / n),
        "segment_bytes_per_doc": round(folder_bytes(folder / "bench", segments_only=True) / n),
        "docs_per_s": round(n / seconds, 1),
    }
    with QdrantStore.open("bench", path=folder) as store:
        for mode in ("multivector", "hybrid"):
            found = [
                {h.id for h in store.search(q, mode=mode, limit=k, prefetch_limit=100)}
                for q in corpus.queries
            ]
            recall = np.mean([len(f & t) / k for f, t in zip(found, truth, strict=True)])
            result[f"recall@{k}_{mode}"] = round(float(recall), 3)
            source = np.mean([s in f for s, f in zip(corpus.sources, found, strict=True)])
            result[f"source@{k}_{mode}"] = round(float(source), 3)
    shutil.rmtree(folder)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    p.add_argument("--json", type=Path, help="Also write the rows here.")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    corpus = make_corpus(args.docs, args.tokens, dim=args.dim, queries=args.queries)
    truth = exact_top(corpus, args.k)
    rows = []
    with tempfile.TemporaryDirectory(prefix="token-options-") as tmp:
        for name in args.options:
            row = run_option(name, corpus, truth, Path(tmp), k=args.k, batch=args.batch)
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

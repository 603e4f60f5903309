"""Synthetic documents with known structure, and exact numpy answers to compare backends with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from connectors import CollectionSpec, MuveraParams, Query, Record
from connectors.filters import Filter
from connectors.muvera import encode_document, encode_query
from connectors.vectors import l2_normalize, maxsim_many, rrf

LANGS = ("en", "de", "fr")
#: A narrow MUVERA encoding (8 x 8 buckets x 16 = 1024 dims) for the contract corpus.
CONTRACT_MUVERA = MuveraParams(k_sim=3, dim_proj=16, r_reps=8, seed=3)


@dataclass
class Corpus:
    spec: CollectionSpec
    records: list[Record]

    @property
    def ids(self) -> list[int | str]:
        return [r.id for r in self.records]

    def stored_tokens(self, record: Record) -> np.ndarray:
        """Token vectors as the store keeps them (normalised, rounded to the storage dtype)."""
        dtype = np.float16 if self.spec.multivector_dtype.value == "float16" else np.float32
        return l2_normalize(record.multivector).astype(dtype).astype(np.float32)

    def subset(self, flt: Filter | None) -> list[Record]:
        return [r for r in self.records if flt is None or flt.matches(r.payload)]

    def dense_ranking(
        self, query: Query, flt: Filter | None = None
    ) -> list[tuple[int | str, float]]:
        docs = self.subset(flt)
        q = l2_normalize(np.asarray(query.dense)[: self.spec.dim])
        scores = l2_normalize(np.stack([np.asarray(r.dense)[: self.spec.dim] for r in docs])) @ q
        order = np.argsort(-scores, kind="stable")
        return [(docs[i].id, float(scores[i])) for i in order]

    def maxsim_ranking(
        self, query: Query, flt: Filter | None = None
    ) -> list[tuple[int | str, float]]:
        docs = self.subset(flt)
        scores = maxsim_many(query.multivector, [self.stored_tokens(r) for r in docs])
        order = np.argsort(-scores, kind="stable")
        return [(docs[i].id, float(scores[i])) for i in order]

    def muvera_ranking(self, query: Query) -> list[tuple[int | str, float]]:
        """Documents by the dot product of their MUVERA encoding with the query's."""
        params = self.spec.muvera
        assert params is not None, "the corpus has no MUVERA encoding"
        q = encode_query(l2_normalize(query.multivector), params)
        docs = [encode_document(l2_normalize(r.multivector), params) for r in self.records]
        scores = np.stack(docs) @ q
        order = np.argsort(-scores, kind="stable")
        return [(self.records[i].id, float(scores[i])) for i in order]

    def rrf_ranking(self, query: Query, k: int = 60) -> list[tuple[int | str, float]]:
        dense = [i for i, _ in self.dense_ranking(query)]
        multi = [i for i, _ in self.maxsim_ranking(query)]
        return rrf([dense, multi], k=k)


def make_corpus(
    n: int = 60,
    *,
    dim: int = 256,
    prefetch_dims: tuple[int, ...] = (32,),
    multivector_dtype: str = "float16",
    muvera: MuveraParams | None = None,
    seed: int = 0,
) -> Corpus:
    """``n`` random documents: half int ids, half string ids, payloads to filter on."""
    rng = np.random.default_rng(seed)
    spec = CollectionSpec(
        dim=dim, prefetch_dims=prefetch_dims, multivector_dtype=multivector_dtype, muvera=muvera
    )
    records = []
    for i in range(n):
        t = int(rng.integers(4, 25))
        records.append(
            Record(
                id=i if i % 2 == 0 else f"doc-{i}",
                dense=l2_normalize(rng.standard_normal(dim)),
                multivector=l2_normalize(rng.standard_normal((t, 128))),
                payload={
                    "lang": LANGS[i % 3],
                    "page": i % 7,
                    "kind": "even" if i % 2 == 0 else "odd",
                    "tags": [f"t{i % 4}", "all"],
                },
            )
        )
    return Corpus(spec=spec, records=records)


def planted_query(corpus: Corpus, index: int, *, noise: float = 0.3, seed: int = 1) -> Query:
    """A query close to document ``index`` in both the dense and the token space."""
    rng = np.random.default_rng(seed)
    doc = corpus.records[index]
    dense = l2_normalize(
        np.asarray(doc.dense)
        + noise * rng.standard_normal(len(doc.dense)) / np.sqrt(len(doc.dense)) * 4
    )
    tokens = np.asarray(doc.multivector)[: max(2, len(doc.multivector) // 2)]
    tokens = l2_normalize(tokens + noise * rng.standard_normal(tokens.shape) / np.sqrt(128) * 4)
    return Query(dense=dense, multivector=tokens)


def random_query(seed: int = 7, dim: int = 256, q_tokens: int = 6) -> Query:
    rng = np.random.default_rng(seed)
    return Query(
        dense=l2_normalize(rng.standard_normal(dim)),
        multivector=l2_normalize(rng.standard_normal((q_tokens, 128))),
    )

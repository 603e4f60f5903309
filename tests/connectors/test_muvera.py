"""MUVERA encodings: deterministic, asymmetric as specified, and an estimate of MaxSim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from connectors import CollectionSpec, MuveraParams, Record
from connectors.muvera import encode_document, encode_query, muvera_encoder
from connectors.records import prepare_record
from connectors.vectors import l2_normalize, maxsim_many

REPO = Path(__file__).resolve().parents[2]
SMALL = MuveraParams(k_sim=3, dim_proj=16, r_reps=8, seed=5)


def topic_corpus(
    n_docs: int = 120, n_topics: int = 40, seed: int = 0
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Documents and queries drawn from shared token clusters (topics): each document mixes
    4 topics, each query takes 2 of one document's topics. Returns (centres, docs, queries)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((n_topics, 128)))

    def tokens(topics: np.ndarray, n: int) -> np.ndarray:
        picked = centres[rng.choice(topics, n)]
        return l2_normalize(picked + 0.8 * rng.standard_normal((n, 128)) / np.sqrt(128))

    doc_topics = [rng.choice(n_topics, 4, replace=False) for _ in range(n_docs)]
    docs = [tokens(t, int(rng.integers(40, 120))) for t in doc_topics]
    queries = [tokens(doc_topics[i][:2], 8) for i in range(0, n_docs, 6)]
    return centres, docs, queries


def test_encoding_width_and_dtype():
    x = l2_normalize(np.random.default_rng(0).standard_normal((30, 128)))
    for params in (SMALL, MuveraParams(), MuveraParams(k_sim=2, dim_proj=128, r_reps=2)):
        assert params.dim == params.r_reps * 2**params.k_sim * params.dim_proj
        for fde in (encode_document(x, params), encode_query(x, params)):
            assert fde.shape == (params.dim,) and fde.dtype == np.float32
            assert np.isfinite(fde).all()


def test_encoding_is_deterministic_across_processes():
    x = l2_normalize(np.random.default_rng(1).standard_normal((25, 128)))
    here = encode_document(x, SMALL)
    muvera_encoder.cache_clear()
    assert np.array_equal(encode_document(x, SMALL), here)  # rebuilt: the same encoder
    other_seed = encode_document(x, MuveraParams(k_sim=3, dim_proj=16, r_reps=8, seed=6))
    assert not np.allclose(other_seed, here)
    code = (
        "import numpy as np, sys\n"
        "from connectors import MuveraParams\n"
        "from connectors.muvera import encode_document\n"
        "from connectors.vectors import l2_normalize\n"
        "x = l2_normalize(np.random.default_rng(1).standard_normal((25, 128)))\n"
        "p = MuveraParams(k_sim=3, dim_proj=16, r_reps=8, seed=5)\n"
        "sys.stdout.buffer.write(encode_document(x, p).tobytes())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, check=True
    ).stdout
    assert np.array_equal(np.frombuffer(out, dtype=np.float32), here)


def test_queries_sum_documents_average_and_fill_empty_buckets():
    params = MuveraParams(k_sim=3, dim_proj=128, r_reps=4, seed=2)  # no projection: raw centres
    x = l2_normalize(np.random.default_rng(3).standard_normal((3, 128)))
    twice = np.concatenate([x, x])
    # A query counts every token (sum); a document's bucket is the mean of its tokens.
    np.testing.assert_allclose(encode_query(twice, params), 2 * encode_query(x, params), atol=1e-5)
    np.testing.assert_allclose(
        encode_document(twice, params), encode_document(x, params), atol=1e-6
    )
    buckets = encode_query(x, params).reshape(params.r_reps, 2**params.k_sim, 128)
    doc = encode_document(x, params).reshape(params.r_reps, 2**params.k_sim, 128)
    empty = ~np.abs(buckets).any(axis=2)
    assert empty.sum() >= params.r_reps * (2**params.k_sim - 3)  # 3 tokens: most buckets empty
    # No document bucket is empty: each holds one of the document's own tokens (or a mean).
    assert np.abs(doc).any(axis=2).all()
    filled = doc[empty]  # (n_empty, 128): each equals one of the three tokens
    assert np.isclose(filled @ x.T, 1.0, atol=1e-5).any(axis=1).all()


def test_encoding_dot_product_estimates_maxsim_on_topic_structure():
    """Corr(FDE dot / r_reps, exact MaxSim) over all (query, document) pairs is high, and the
    exact best document is among the FDE's top 5 for most queries. Random vectors of the same
    width in place of the document encodings fail both bounds (the control)."""
    _, docs, queries = topic_corpus()
    params = MuveraParams(k_sim=4, dim_proj=16, r_reps=10, seed=1)
    fdes = np.stack([encode_document(d, params) for d in docs])  # (n, dim)
    noise = np.random.default_rng(9).standard_normal(fdes.shape).astype(np.float32)

    def bounds(encoded: np.ndarray) -> tuple[float, float]:
        estimates, exact, found = [], [], 0
        for q in queries:
            est = encoded @ encode_query(q, params) / params.r_reps
            true = maxsim_many(q, docs)
            estimates.append(est)
            exact.append(true)
            found += int(np.argmax(true) in np.argsort(-est)[:5])
        corr = float(np.corrcoef(np.concatenate(estimates), np.concatenate(exact))[0, 1])
        return corr, found / len(queries)

    corr, recall = bounds(fdes)
    assert corr >= 0.85, corr
    assert recall >= 0.9, recall
    control_corr, control_recall = bounds(noise)
    assert control_corr < 0.5 and control_recall < 0.5, (control_corr, control_recall)


def test_prepared_record_carries_the_document_encoding():
    spec = CollectionSpec(dim=8, prefetch_dims=(), muvera=SMALL)
    rng = np.random.default_rng(4)
    tokens = rng.standard_normal((7, 128)) * 3  # not unit: the record normalises first
    prepared = prepare_record(Record(1, rng.standard_normal(8), tokens), spec)
    fde = prepared.vectors[spec.muvera_field]
    np.testing.assert_allclose(fde, encode_document(l2_normalize(tokens), SMALL), atol=1e-6)
    plain = prepare_record(
        Record(1, rng.standard_normal(8), tokens), CollectionSpec(dim=8, prefetch_dims=())
    )
    assert "muvera" not in plain.vectors


def test_spec_records_the_parameters():
    spec = CollectionSpec(dim=64, prefetch_dims=(), muvera=SMALL)
    data = spec.to_dict()
    assert data["muvera"] == {"k_sim": 3, "dim_proj": 16, "r_reps": 8, "seed": 5}
    assert CollectionSpec.from_dict(data) == spec
    assert CollectionSpec.from_dict({k: v for k, v in data.items() if k != "muvera"}).muvera is None
    assert CollectionSpec(muvera=True).muvera == MuveraParams()
    assert CollectionSpec(muvera={"k_sim": 4}).muvera == MuveraParams(k_sim=4)
    assert CollectionSpec(muvera=False).muvera is None
    other = CollectionSpec(dim=64, prefetch_dims=(), muvera=MuveraParams(seed=1))
    assert any(d.startswith("muvera:") for d in spec.differences(other))
    assert any(
        d.startswith("muvera:") for d in spec.differences(CollectionSpec(dim=64, prefetch_dims=()))
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"muvera": {"k_sim": 0}}, r"muvera k_sim must be an int in \[1, 10\], got 0"),
        ({"muvera": {"dim_proj": 2.5}}, r"muvera dim_proj must be an int"),
        ({"muvera": {"r_reps": True}}, r"muvera r_reps must be an int"),
        ({"muvera": {"seed": -1}}, r"muvera seed must be an int"),
        ({"muvera": {"bits": 3}}, r"unknown muvera parameters \['bits'\]; valid: k_sim"),
        ({"muvera": "yes"}, r"muvera must be MuveraParams, a dict of its fields, True or None"),
        ({"muvera": True, "multivector": False}, r"muvera encodes the token vectors"),
        ({"muvera": {"dim_proj": 256}}, r"dim_proj \(256\) must be at most .* \(128\)"),
    ],
)
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CollectionSpec(**kwargs)


def test_bad_token_matrices_are_refused():
    with pytest.raises(ValueError, match=r"MUVERA encodes \(t, 128\) token vectors"):
        encode_query(np.zeros((0, 128), dtype=np.float32), SMALL)
    with pytest.raises(ValueError, match=r"dim_proj \(16\) must be at most the token width \(8\)"):
        encode_document(np.ones((3, 8), dtype=np.float32), SMALL)

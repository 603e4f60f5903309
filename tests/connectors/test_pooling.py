"""Token pooling (connectors/pooling.py): hierarchical clusters of a document's tokens.

The behaviour on every backend (stored pooled, queries untouched, reopening) is in
test_contract.py::test_token_pooling_pools_documents_never_queries.
"""

from __future__ import annotations

import numpy as np
import pytest

from connectors import CollectionSpec, Query, Record
from connectors.pooling import pool_tokens, pooled_count
from connectors.query import build_plan, query_vectors
from connectors.records import prepare_record
from connectors.vectors import l2_normalize


def unit(*shape: int, seed: int = 0) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal(shape))


def clustered(groups: int, per_group: int, *, spread: float = 0.2, seed: int = 0):
    """Tokens in ``groups`` groups (noise of norm ~``spread`` around unit centres), shuffled;
    returns (tokens (t, 128), group of each)."""
    rng = np.random.default_rng(seed)
    centres = unit(groups, 128, seed=seed + 1)
    group = np.repeat(np.arange(groups), per_group)
    rng.shuffle(group)
    noise = rng.standard_normal((len(group), 128)) / np.sqrt(128)
    tokens = l2_normalize(centres[group] + spread * noise)
    return tokens, group


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("t", [1, 2, 3, 7, 64, 301])
def test_shape_unit_norm_and_count(t, factor):
    pooled = pool_tokens(unit(t, 128, seed=t), factor)
    assert pooled.dtype == np.float32 and pooled.shape[1] == 128
    assert 1 <= len(pooled) <= pooled_count(t, factor) == max(t // factor, 1)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, rtol=1e-5)
    if t >= 2 * factor:  # random tokens have no ties: Ward's cut gives exactly t // factor
        assert len(pooled) == t // factor


def test_deterministic_and_input_untouched():
    tokens = unit(300, 128, seed=3) * 2.5  # not normalised: pooling normalises first
    before = tokens.copy()
    first = pool_tokens(tokens, 3)
    assert all(np.array_equal(first, pool_tokens(tokens, 3)) for _ in range(3))
    np.testing.assert_array_equal(tokens, before)


def test_each_cluster_is_the_normalised_mean_of_its_tokens():
    """Four tight groups of three tokens, factor 3: exactly the groups come back."""
    tokens, group = clustered(4, 3)
    pooled = pool_tokens(tokens, 3)
    means = l2_normalize(np.stack([tokens[group == g].mean(axis=0) for g in range(4)]))
    assert pooled.shape == (4, 128)
    # each pooled vector is one group's normalised mean (the order is scipy's label order)
    matches = pooled @ means.T  # (4, 4) cosines
    assert sorted(matches.argmax(axis=1).tolist()) == [0, 1, 2, 3]
    np.testing.assert_allclose(matches.max(axis=1), 1.0, atol=1e-5)


def test_pooling_keeps_maxsim_close_on_structured_tokens():
    tokens, _ = clustered(20, 6, spread=0.3)
    pooled = pool_tokens(tokens, 3)
    query = l2_normalize(tokens[:8] + 0.3 * unit(8, 128, seed=9))
    full = (query @ tokens.T).max(axis=1).sum()
    approx = (query @ pooled.T).max(axis=1).sum()
    assert len(pooled) == 40 and approx == pytest.approx(full, rel=0.05)


def test_tokens_that_cancel_out_keep_a_direction():
    v = unit(1, 128, seed=5)
    pooled = pool_tokens(np.concatenate([v, -v]), 2)  # one cluster whose mean is zero
    assert pooled.shape == (1, 128)
    np.testing.assert_allclose(pooled, v, atol=1e-6)


def test_bad_factor_refused():
    with pytest.raises(ValueError, match="pool factor must be >= 2"):
        pool_tokens(unit(4, 128), 1)


def test_records_are_pooled_queries_never():
    spec = CollectionSpec(dim=64, prefetch_dims=(), token_pooling=4)
    tokens = unit(40, 128, seed=2)
    prepared = prepare_record(Record(1, unit(64, seed=1), tokens), spec)
    stored = prepared.vectors[spec.multivector_field]
    assert stored.dtype == np.float16 and stored.shape == (10, 128)
    np.testing.assert_allclose(stored, pool_tokens(tokens, 4), atol=1e-3)
    assert prepared.nbytes < 64 * 4 + 40 * 128 * 2  # sized on what is stored
    query = Query(dense=unit(64, seed=4), multivector=tokens)
    plan = build_plan(spec, "multivector", limit=5, prefetch_limit=10, filter=None)
    sent = query_vectors(query, spec, plan)[spec.multivector_field]
    assert sent.shape == (40, 128)
    np.testing.assert_allclose(sent, tokens, atol=1e-6)

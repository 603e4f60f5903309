"""uint8 token vectors: the codec's algebra, and qdrant-edge scoring them as int8 MaxSim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from connectors import CollectionSpec, Query, Record
from connectors import token_codec as tc
from connectors.errors import UnsupportedSpecError
from connectors.vectors import l2_normalize


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return l2_normalize(rng.standard_normal(shape).astype(np.float32))


def int8_maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """MaxSim as the codec defines it: integer query codes x integer document codes."""
    codes = tc.encode_query(query)
    p = codes.vectors[:, : query.shape[1]].astype(np.int64) - 128  # (q, d)
    r = tc.to_codes(doc).astype(np.int64) - 128  # (t, d)
    return float((p @ r.T).max(axis=1).sum()) / codes.scale


def test_stored_rows_sum_to_one_constant_whatever_the_token():
    rng = np.random.default_rng(0)
    extremes = l2_normalize(np.stack([np.ones(128), -np.ones(128), np.eye(128)[0]]))
    tokens = np.concatenate([_unit(rng, 200, 128), extremes.astype(np.float32)])
    stored = tc.stored_bytes(tc.to_codes(tokens))
    assert stored.shape == (203, 128 + tc.EXTRA) and stored.dtype == np.uint8
    sums = stored.astype(np.int64).sum(axis=1)
    assert (sums == sums[0]).all()  # the document-dependent term cancels exactly
    assert np.array_equal(tc.codes_of_stored(stored, 128), tc.to_codes(tokens))


def test_the_raw_byte_score_is_the_int8_maxsim_plus_a_query_constant():
    rng = np.random.default_rng(1)
    query = _unit(rng, 16, 128)
    codes = tc.encode_query(query)
    assert codes.vectors.min() >= 0 and codes.vectors.max() <= 255
    assert np.array_equal(codes.vectors, np.rint(codes.vectors))  # bytes, as Qdrant casts them
    for _ in range(20):
        doc = _unit(rng, int(rng.integers(1, 40)), 128)
        stored = tc.stored_bytes(tc.to_codes(doc)).astype(np.int64)
        raw = (codes.vectors.astype(np.int64) @ stored.T).max(axis=1).sum()  # what Qdrant adds
        assert codes.maxsim(float(raw)) == pytest.approx(int8_maxsim(query, doc), abs=1e-9)
        exact = float((query @ doc.T).max(axis=1).sum())
        assert codes.maxsim(float(raw)) == pytest.approx(exact, abs=0.02)  # int8 rounding


def test_codes_read_back_within_half_a_step():
    rng = np.random.default_rng(2)
    tokens = _unit(rng, 50, 128)
    back = tc.from_codes(tc.to_codes(tokens))
    assert np.abs(back - tokens).max() <= 0.5 / 127 + 1e-6


def test_spec_checks_uint8():
    assert CollectionSpec(multivector_dtype="uint8").multivector_dtype.value == "uint8"
    with pytest.raises(ValueError, match="needs float originals"):
        CollectionSpec(multivector_dtype="uint8", multivector_quantization="int8")
    with pytest.raises(ValueError, match="dense_dtype must be"):
        CollectionSpec(dense_dtype="uint8")
    with pytest.raises(ValueError, match="at most 132-d"):
        CollectionSpec(multivector_dtype="uint8", multivector_dim=256)
    spec = CollectionSpec(multivector_dtype="uint8", dense_dtype="float16", token_pooling=3)
    assert CollectionSpec.from_dict(spec.to_dict()) == spec
    old = spec.to_dict()
    del old["dense_dtype"]  # a spec written before dense_dtype existed
    assert CollectionSpec.from_dict(old).dense_dtype.value == "float32"


def test_qdrant_edge_scores_uint8_tokens_as_int8_maxsim(tmp_path: Path):
    from connectors.qdrant import QdrantStore

    rng = np.random.default_rng(3)
    docs = [_unit(rng, int(rng.integers(3, 30)), 128) for _ in range(40)]
    dense = _unit(rng, 40, 64)
    spec = CollectionSpec(
        dim=64, prefetch_dims=(), multivector_dtype="uint8", dense_dtype="float16"
    )
    store = QdrantStore.create("u8", path=tmp_path, spec=spec)
    store.upsert([Record(i, dense[i], docs[i], {}) for i in range(40)])
    store.close()
    store = QdrantStore.open("u8", path=tmp_path)
    assert not spec.differences(store.spec)
    assert (
        store.spec.multivector_dtype.value == "uint8" and store.spec.dense_dtype.value == "float16"
    )
    query = _unit(rng, 12, 128)
    want = sorted(((int8_maxsim(query, d), i) for i, d in enumerate(docs)), reverse=True)
    hits = store.search(Query(dense=dense[0], multivector=query), mode="multivector", limit=5)
    assert [h.id for h in hits] == [i for _, i in want[:5]]
    for hit, (score, _) in zip(hits, want, strict=False):
        assert hit.score == pytest.approx(score, abs=1e-3)
    (back,) = store.get([7], with_vectors=True)
    assert back.multivector is not None and back.multivector.shape == docs[7].shape
    assert np.abs(back.multivector - docs[7]).max() <= 0.5 / 127 + 1e-6
    dense_hits = store.search(Query(dense=dense[5]), mode="dense", limit=1)
    assert dense_hits[0].id == 5 and dense_hits[0].score == pytest.approx(1.0, abs=2e-3)
    store.close()


def test_milvus_lite_refuses_half_dense_vectors_before_writing(tmp_path: Path):
    """uint8 token vectors are the packed layout's (test_milvus_packed.py); float16 dense
    vectors have no Milvus Lite type."""
    from connectors.milvus import MilvusStore

    spec = CollectionSpec(dim=64, prefetch_dims=(), dense_dtype="float16")
    uri = str(tmp_path / "m.db")
    with pytest.raises(UnsupportedSpecError, match="does not implement dense_dtype='float16'"):
        MilvusStore.create("refused", uri=uri, spec=spec)


@pytest.mark.parametrize(("preset", "factor"), [("balanced", 3), ("compact", 4)])
def test_storage_presets_pool_and_code_documents_only(tmp_path: Path, preset: str, factor: int):
    """``STORAGE_PRESETS``: a document of 30 tokens is stored as 30 // factor uint8 rows (the
    pooled tokens, coded), the reopened collection reads the preset's fields back, and a
    query's 12 tokens are all scored (MaxSim over the pooled rows, as int8 codes)."""
    from connectors.pooling import pool_tokens
    from connectors.qdrant import QdrantStore
    from connectors.spec import STORAGE_PRESETS

    rng = np.random.default_rng(5)
    docs = [_unit(rng, 30, 128) for _ in range(6)]
    dense = _unit(rng, 6, 64)
    spec = CollectionSpec(dim=64, prefetch_dims=(), **STORAGE_PRESETS[preset])
    store = QdrantStore.create(preset, path=tmp_path, spec=spec)
    store.upsert([Record(i, dense[i], docs[i], {}) for i in range(6)])
    store.close()
    store = QdrantStore.open(preset, path=tmp_path)
    assert not spec.differences(store.spec) and store.spec.token_pooling == factor
    (back,) = store.get([2], with_vectors=True)
    pooled = pool_tokens(docs[2], factor)
    assert back.multivector is not None and back.multivector.shape == (30 // factor, 128)
    assert np.abs(back.multivector - pooled).max() <= 0.5 / 127 + 1e-6
    query = _unit(rng, 12, 128)
    hits = store.search(Query(dense=dense[0], multivector=query), mode="multivector", limit=6)
    want = {i: int8_maxsim(query, pool_tokens(d, factor)) for i, d in enumerate(docs)}
    assert [h.id for h in hits] == sorted(want, key=lambda i: -want[i])
    for hit in hits:
        assert hit.score == pytest.approx(want[hit.id], abs=1e-3)
    store.close()

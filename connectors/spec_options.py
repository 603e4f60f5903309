"""The closed sets and parameter groups a ``CollectionSpec`` is made of.

Distance, vector dtypes and quantization kinds (``str`` enums), the token pooling factors,
the named storage presets, and MUVERA's parameters. ``connectors.spec`` re-exports them all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

#: Width of one late-interaction token vector (the model's multi_vector_projector output).
MULTIVECTOR_DIM = 128


class Distance(str, enum.Enum):
    COSINE = "cosine"


class VectorDtype(str, enum.Enum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    #: Token vectors only: one byte per dimension, ``round(127 * x) + 128`` of the unit vector,
    #: and no float originals (connectors/token_codec.py: why MaxSim's order survives it).
    UINT8 = "uint8"


class Quantization(str, enum.Enum):
    """How a vector field is also kept compressed, for faster scoring (originals are kept)."""

    NONE = "none"
    INT8 = "int8"  # scalar: one byte per dimension (4x smaller than float32)
    BINARY = "binary"  # one bit per dimension (32x smaller); needs rescoring with originals


#: Named bundles of storage fields (``jina-vdb ingest --storage NAME``;
#: ``CollectionSpec(**STORAGE_PRESETS[NAME])``); qdrant-edge and Qdrant servers only (Milvus
#: refuses float16 dense vectors). Both are uint8 token vectors (token_codec.py) and float16
#: dense fields after token pooling, with a binary copy of the full dense vector for the
#: dense stage (256 B at 2048-d; its HNSW walk compares bit codes instead of 4 KB vectors and
#: rescores the candidates with the float16 originals: at 100k documents the dense prefetch
#: went from ~28 ms to ~3 ms, 17 segments, recall unchanged). Figures on the scale corpus
#: (README, "At scale"), recall@10 of exhaustive MaxSim against exact float32 MaxSim:
#: - balanced: pool 3 (colpali-engine's recommended factor), 0.24x float16's bytes per
#:   document at 20k (21,648 B with the binary copy); recall 0.945 / 0.958 / 0.957 on the
#:   bench's 40 queries / 40 and 200 held-out ones at 20k (0.945 / - / 0.941 at 100k): the
#:   option that keeps <= 1/4 of the bytes at recall ~0.95 (no pooler variant measured did
#:   better beyond query-set noise: bench/pooling_recall.py).
#: - compact: pool 4, 0.20x, recall 0.94 (0.99 at 2k): the smallest.
#: ``--dense-quantization none`` (``quantization=Quantization.NONE``) drops the binary copy.
STORAGE_PRESETS: dict[str, dict[str, Any]] = {
    "balanced": {
        "token_pooling": 3,
        "multivector_dtype": "uint8",
        "dense_dtype": "float16",
        "quantization": "binary",
    },
    "compact": {
        "token_pooling": 4,
        "multivector_dtype": "uint8",
        "dense_dtype": "float16",
        "quantization": "binary",
    },
}

#: Token pooling factors a spec accepts: about 1/factor of a document's token vectors is kept.
POOLING_FACTORS = (2, 3, 4, 5, 6, 7, 8)


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"muvera {name} must be an int in [{low}, {high}], got {value!r}")
    return value


@dataclass(frozen=True)
class MuveraParams:
    """A MUVERA fixed-dimensional encoding (FDE) of the token vectors (connectors/muvera.py).

    The FDE is one dense vector of ``dim = r_reps * 2**k_sim * dim_proj`` floats whose dot
    product approximates MaxSim (Chamfer similarity); it is stored as one more dense field,
    the first stage of ``SearchMode.MUVERA``. Documents and queries must be encoded with the
    same parameters and seed, so they are part of the spec.

    Attributes:
        k_sim: SimHash bits per repetition: tokens fall into 2**k_sim buckets.
        dim_proj: width each bucket's centre is randomly projected to (<= the token width).
        r_reps: independent repetitions concatenated (more: better estimate, wider FDE).
        seed: seed of the random hyperplanes and projections.
    """

    k_sim: int = 5
    dim_proj: int = 16
    r_reps: int = 20
    seed: int = 42

    def __post_init__(self) -> None:
        _check_int("k_sim", self.k_sim, 1, 10)
        _check_int("dim_proj", self.dim_proj, 1, 4096)
        _check_int("r_reps", self.r_reps, 1, 256)
        _check_int("seed", self.seed, 0, 2**63 - 1)

    @property
    def dim(self) -> int:
        """Width of the encoding."""
        return self.r_reps * (1 << self.k_sim) * self.dim_proj  # 1 << k: an int (2**k is Any)

    @classmethod
    def from_value(cls, value: MuveraParams | dict[str, Any] | bool | None) -> MuveraParams | None:
        """``muvera=`` as given to a spec: params, their dict, True (the defaults) or None."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                valid = ", ".join(cls.__dataclass_fields__)
                raise ValueError(f"unknown muvera parameters {unknown}; valid: {valid}")
            return cls(**value)
        raise ValueError(
            f"muvera must be MuveraParams, a dict of its fields, True or None, got {value!r}"
        )

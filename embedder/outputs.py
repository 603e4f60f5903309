"""EmbeddingBatch: what the encoder returns (numpy only, in input order)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EmbeddingBatch:
    """Embeddings of one ``encode_text`` / ``encode_image`` call, in input order.

    Attributes:
        dense: (n, d) float32, L2-normalised rows; d is the hidden size (2048) or the
            requested Matryoshka ``truncate_dim``.
        multivectors: One (t_i, 128) array per item with L2-normalised rows, float32 or
            float16; every non-padding token of the model input is kept (prompt prefix,
            special and template tokens included). None when ``multivector=False``.
        token_counts: (n,) int64, tokens of each item's model input (t_i), after
            truncation; set whether or not multi-vectors were computed.
    """

    dense: np.ndarray
    multivectors: list[np.ndarray] | None
    token_counts: np.ndarray

    def __post_init__(self) -> None:
        if self.dense.ndim != 2 or self.dense.dtype != np.float32:
            raise ValueError(
                f"dense must be a 2-D float32 array, got {self.dense.dtype} {self.dense.shape}"
            )
        n = self.dense.shape[0]
        if self.token_counts.shape != (n,):
            raise ValueError(f"token_counts has shape {self.token_counts.shape}, expected ({n},)")
        if self.multivectors is not None:
            if len(self.multivectors) != n:
                raise ValueError(f"{len(self.multivectors)} multi-vector arrays for {n} items")
            for i, (mv, t) in enumerate(zip(self.multivectors, self.token_counts, strict=True)):
                if mv.ndim != 2 or mv.shape[0] != t:
                    raise ValueError(f"item {i}: multi-vectors {mv.shape} but {t} tokens")

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    @property
    def dim(self) -> int:
        """Width of the dense vectors."""
        return int(self.dense.shape[1])

    @property
    def multivector_dim(self) -> int | None:
        """Width of each multi-vector row (128), or None when they were not computed."""
        if not self.multivectors:
            return None
        return int(self.multivectors[0].shape[1])

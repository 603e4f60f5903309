"""uint8 token vectors (``CollectionSpec.multivector_dtype="uint8"``): 1 byte per dimension,
no float originals, and a MaxSim ranking that is int8 x int8 dot products, exactly.

A unit token vector ``d`` is stored as ``r + 128`` with ``r = round(127 * d)`` in
[-127, 127] (``to_codes``; ``from_codes`` reads it back as ``r / 127``). A byte is unsigned,
so a database's dot product of stored bytes with a query adds terms that depend on the
document token, not only on how well it matches:

- Qdrant's ``uint8`` datatype casts the *query* to bytes too (``x as u8`` in its
  ``PrimitiveVectorElement`` for bytes: negatives become 0, fractions are truncated), so a
  float query cannot be sent as it is. The query token ``q`` is sent as ``p + 128`` with
  ``p = round(s * q)`` (one scale ``s`` per query, so every query token keeps its weight).
- Then ``(p + 128) . (r + 128) = p . r + 128 * sum(p) + 128 * sum(r) + 128**3``: the
  ``128 * sum(r)`` term changes from token to token and would reorder them. Each stored
  token therefore carries ``EXTRA`` more bytes whose sum is ``K - sum(r + 128)``, and the
  query puts 128 in each of them, which adds ``128 * K - 128 * sum(r + 128)``: the
  document-dependent terms cancel exactly (integers), leaving
  ``p . r + 128 * (sum(p) + K)``, a per-query-token constant plus the int8 dot product.

So the max over a document's tokens picks the token int8 scoring picks, and the score
converts back to a MaxSim estimate exactly (``QueryCodes.maxsim``). The error is int8
rounding only. ``|sum(r)|`` of a unit vector is at most ``127 * sqrt(d) + d / 2``
(Cauchy-Schwarz, plus rounding) = 1,501 for 128 dims, so ``EXTRA`` = 12 bytes (up to 3,060
around ``K``'s midpoint 1,530) always hold the correction: 140 bytes per 128-d token, 0.55x
float16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Bytes of the sum correction appended to every stored token (see the module docstring).
EXTRA = 12
_OFFSET = 128
_SCALE = 127
_ROOM = 255 * EXTRA  # the most the correction bytes can hold


def _balance(dim: int) -> int:
    """``K``: the stored bytes of a token plus its correction always sum to this."""
    return _OFFSET * dim + _ROOM // 2


def check_dim(dim: int) -> None:
    """ValueError when ``EXTRA`` bytes cannot hold the correction of a ``dim``-d unit token."""
    worst = _SCALE * np.sqrt(dim) + 0.5 * dim  # |sum(r)| of a unit vector, rounding included
    if worst > _ROOM // 2:
        raise ValueError(f"uint8 token vectors are at most 132-d, got multivector_dim={dim}")


def to_codes(unit: np.ndarray) -> np.ndarray:
    """(t, d) unit float vectors -> (t, d) uint8 ``round(127 x) + 128``."""
    r = np.clip(np.rint(np.asarray(unit, dtype=np.float32) * _SCALE), -_SCALE, _SCALE)
    return (r + _OFFSET).astype(np.uint8)


def from_codes(codes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(t, d) uint8 codes -> (t, d) float32 vectors (what MaxSim on the codes scores), into
    ``out`` (float32, codes' shape) when given."""
    out = np.subtract(codes, np.float32(_OFFSET), out=out, dtype=np.float32)
    np.divide(out, np.float32(_SCALE), out=out)
    return out


def stored_bytes(codes: np.ndarray) -> np.ndarray:
    """(t, d) uint8 codes -> (t, d + EXTRA) uint8: the codes and their sum correction."""
    codes = np.asarray(codes, dtype=np.uint8)
    t, dim = codes.shape
    rest = _balance(dim) - codes.sum(axis=1, dtype=np.int64)  # (t,) in [0, _ROOM] for unit rows
    rest = np.clip(rest, 0, _ROOM)  # a non-unit row would break the bound: never cast wrap
    # Fill the correction bytes 255 at a time: (t, EXTRA), each in [0, 255], summing to rest.
    filled = np.clip(rest[:, None] - 255 * np.arange(EXTRA)[None, :], 0, 255)
    return np.concatenate([codes, filled.astype(np.uint8)], axis=1)


def codes_of_stored(stored: np.ndarray, dim: int) -> np.ndarray:
    """The codes part of a stored (t, d + EXTRA) matrix (the correction dropped)."""
    return np.asarray(stored)[:, :dim].astype(np.uint8)


@dataclass(frozen=True)
class QueryCodes:
    """A query's token vectors as sent to a uint8 field, and how to read its scores."""

    #: (q, d + EXTRA) byte values (as float32: clients send floats, Qdrant casts them).
    vectors: np.ndarray
    #: sum over the query tokens of ``128 * (sum(p) + K)``: the raw score's constant.
    offset: float
    #: ``127 * s``: raw score - offset = this x the int8 MaxSim.
    scale: float

    def maxsim(self, raw: float) -> float:
        """The MaxSim estimate of a raw uint8 MaxSim score."""
        return (raw - self.offset) / self.scale


def encode_query(unit: np.ndarray) -> QueryCodes:
    """(q, d) unit float query tokens -> QueryCodes (p = round(s q), s = 127 / max|q|)."""
    unit = np.asarray(unit, dtype=np.float32)
    q, dim = unit.shape
    peak = float(np.abs(unit).max()) or 1.0
    s = _SCALE / peak
    p = np.clip(np.rint(unit * s), -_SCALE, _SCALE)  # (q, d) integers
    extra = np.full((q, EXTRA), _OFFSET, dtype=np.float32)
    vectors = np.concatenate([p + _OFFSET, extra], axis=1).astype(np.float32)
    offset = float(_OFFSET * (p.sum() + q * _balance(dim)))
    return QueryCodes(vectors=vectors, offset=offset, scale=_SCALE * s)

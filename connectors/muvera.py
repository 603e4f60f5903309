"""MUVERA fixed-dimensional encodings (FDE): a token matrix as one dense vector whose dot
product approximates MaxSim (Chamfer similarity), after Dhulipala et al., "MUVERA:
Multi-Vector Retrieval via Fixed Dimensional Encodings" (NeurIPS 2024).

For each of ``r_reps`` repetitions, ``k_sim`` random hyperplanes (SimHash) cut the token
space into ``B = 2**k_sim`` buckets; each bucket gets one centre, the centre is randomly
projected to ``dim_proj`` dims (a +-1 matrix / sqrt(dim_proj), which keeps dot products in
expectation), and everything is concatenated: ``r_reps * B * dim_proj`` floats.

The encoding is asymmetric, so that <query FDE, document FDE> ~ sum over query tokens of
<q, the centre of the document tokens in q's bucket>, a per-bucket stand-in for "the
document token nearest to q":

- a query's bucket centre is the *sum* of its tokens there (each query token counts once);
- a document's is the *mean* of its tokens there, and an empty bucket takes the document
  token whose SimHash code is nearest (Hamming) to the bucket's, so a query token landing
  where the document has nothing still meets a similar token (the paper's fill; fastembed
  fills with a token of the nearest non-empty bucket instead).

So the FDE dot product is ~ ``r_reps`` x MaxSim: it is searched with the dot product, not
cosine (a document FDE's norm is part of the estimate).

Determinism: the hyperplanes and projections come from the raw 64-bit stream of NumPy's
PCG64 seeded by ``SeedSequence(seed)`` (both fixed algorithms), turned into normals by
Box-Muller here, so the same ``MuveraParams`` give the same encoder on any NumPy version and
machine (``Generator.normal`` does not promise a stable stream across NumPy releases).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .spec import MuveraParams

__all__ = ["MuveraEncoder", "encode_document", "encode_query", "muvera_encoder"]

_TWO_PI = 2.0 * np.pi
_MANTISSA = 2.0**-53


def _uniform(raw: np.ndarray) -> np.ndarray:
    """Uniform floats in (0, 1] from raw uint64 draws (53 high bits: exact in float64)."""
    uniform: np.ndarray = ((raw >> np.uint64(11)).astype(np.float64) + 1.0) * _MANTISSA
    return uniform


def _stream(seed: int, n: int) -> np.ndarray:
    """``n`` raw uint64 draws of PCG64(SeedSequence(seed)): fixed by the algorithms."""
    raw: np.ndarray = np.random.PCG64(np.random.SeedSequence(seed)).random_raw(n)
    return raw


@dataclass(frozen=True, eq=False)
class MuveraEncoder:
    """The random parts of one MUVERA encoding (build with ``muvera_encoder``).

    Attributes:
        params: the encoding's parameters (spec.MuveraParams).
        token_dim: width d of the token vectors it encodes.
        planes: (d, r_reps * k_sim) float32 SimHash hyperplane normals, N(0, 1).
        projections: (d, r_reps * dim_proj) float32 +-1/sqrt(dim_proj), repetition r in
            columns [r * dim_proj, (r + 1) * dim_proj); None when dim_proj == d (the centres
            are kept as they are).
    """

    params: MuveraParams
    token_dim: int
    planes: np.ndarray
    projections: np.ndarray | None

    @property
    def dim(self) -> int:
        return self.params.dim

    def encode_document(self, tokens: np.ndarray) -> np.ndarray:
        """(t, d) token vectors -> (dim,) float32: bucket means, empty buckets filled."""
        return self._encode(tokens, document=True)

    def encode_query(self, tokens: np.ndarray) -> np.ndarray:
        """(q, d) token vectors -> (dim,) float32: bucket sums, empty buckets left zero."""
        return self._encode(tokens, document=False)

    def _encode(self, tokens: np.ndarray, *, document: bool) -> np.ndarray:
        x = np.asarray(tokens, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.token_dim or len(x) == 0:
            raise ValueError(
                f"MUVERA encodes (t, {self.token_dim}) token vectors with t >= 1, got {x.shape}"
            )
        p = self.params
        t, reps, k, buckets = len(x), p.r_reps, p.k_sim, 2**p.k_sim
        bits = (x @ self.planes > 0).reshape(t, reps, k)  # (t, R, k): side of each hyperplane
        codes = bits.astype(np.int64) @ (1 << np.arange(k, dtype=np.int64))  # (t, R) bucket ids
        # Projecting is linear, so each token is projected once and the buckets are formed
        # from the projected tokens: (t, d) @ (d, R*p) instead of R*B centres times (d, p).
        if self.projections is None:
            y = np.broadcast_to(x, (reps, t, x.shape[1]))  # (R, t, d)
        else:
            y = (x @ self.projections).reshape(t, reps, -1).transpose(1, 0, 2)  # (R, t, p)
        member = np.zeros((reps, buckets, t), dtype=np.float32)  # (R, B, t) one-hot
        member[np.arange(reps)[None, :], codes, np.arange(t)[:, None]] = 1.0
        centres = member @ y  # (R, B, p): sum of each bucket's (projected) tokens
        if document:
            counts = member.sum(axis=2)  # (R, B)
            centres /= np.maximum(counts, 1.0)[..., None]
            empty = counts == 0
            if empty.any():
                # Hamming distance between every bucket id and every token's code: (R, B, t)
                popcount = np.array([bin(i).count("1") for i in range(buckets)], dtype=np.int8)
                ids = np.arange(buckets)[None, :, None]
                hamming = popcount[ids ^ codes.T[:, None, :]]
                nearest = hamming.argmin(axis=2)  # (R, B): first nearest token on ties
                rep = np.broadcast_to(np.arange(reps)[:, None], empty.shape)
                centres[empty] = y[rep[empty], nearest[empty]]
        out: np.ndarray = centres.reshape(-1).astype(np.float32, copy=False)
        return out


@functools.lru_cache(maxsize=16)
def muvera_encoder(params: MuveraParams, token_dim: int) -> MuveraEncoder:
    """The encoder for these parameters and token width (cached: every record of a collection
    and every query use the same one; it holds ~r_reps * d * (k_sim + dim_proj) floats)."""
    if isinstance(token_dim, bool) or not isinstance(token_dim, int) or token_dim <= 0:
        raise ValueError(f"token_dim must be a positive int, got {token_dim!r}")
    if params.dim_proj > token_dim:
        raise ValueError(
            f"muvera dim_proj ({params.dim_proj}) must be at most the token width ({token_dim})"
        )
    reps, k, proj = params.r_reps, params.k_sim, params.dim_proj
    n_normal = token_dim * reps * k
    n_signs = reps * token_dim * proj if proj < token_dim else 0
    half = (n_normal + 1) // 2  # Box-Muller makes two normals from two uniforms
    raw = _stream(params.seed, 2 * half + n_signs)
    radius = np.sqrt(-2.0 * np.log(_uniform(raw[:half])))
    angle = _TWO_PI * _uniform(raw[half : 2 * half])
    normals = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:n_normal]
    planes = normals.reshape(token_dim, reps * k).astype(np.float32)
    projections = None
    if n_signs:
        top = (raw[2 * half :] >> np.uint64(63)).astype(np.float32)  # the highest bit: 0 or 1
        signs = (2.0 * top - 1.0) / np.sqrt(proj)
        # drawn as (R, d, p), stored as (d, R*p) so all repetitions project in one matmul
        by_rep = signs.reshape(reps, token_dim, proj)
        projections = by_rep.transpose(1, 0, 2).reshape(token_dim, reps * proj)
        projections = np.ascontiguousarray(projections, dtype=np.float32)
    planes.flags.writeable = False
    if projections is not None:
        projections.flags.writeable = False
    return MuveraEncoder(params, token_dim, planes, projections)


def encode_document(tokens: np.ndarray, params: MuveraParams) -> np.ndarray:
    """A document's (t, d) token vectors as its (params.dim,) float32 FDE."""
    x = np.asarray(tokens)
    return muvera_encoder(params, int(x.shape[-1])).encode_document(x)


def encode_query(tokens: np.ndarray, params: MuveraParams) -> np.ndarray:
    """A query's (q, d) token vectors as its (params.dim,) float32 FDE."""
    x = np.asarray(tokens)
    return muvera_encoder(params, int(x.shape[-1])).encode_query(x)

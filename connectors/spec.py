"""CollectionSpec: what a collection stores, independent of the backend.

The closed sets its fields take (enums, presets, MUVERA parameters) are in
``spec_options.py``, re-exported here.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import token_codec
from .errors import SchemaMismatchError, UnsupportedSpecError
from .payload_index import PayloadIndexes, normalize_indexes
from .spec_options import (
    MULTIVECTOR_DIM,
    POOLING_FACTORS,
    STORAGE_PRESETS,
    Distance,
    MuveraParams,
    Quantization,
    VectorDtype,
)

__all__ = [
    "MULTIVECTOR_DIM",
    "OPTIONAL_FEATURES",
    "POOLING_FACTORS",
    "SPEC_ARG_DEFAULTS",
    "STORAGE_FIELDS",
    "STORAGE_PRESETS",
    "CollectionSpec",
    "Distance",
    "MuveraParams",
    "Quantization",
    "StoragePolicy",
    "VectorDtype",
    "check_supported",
    "reconcile_spec",
    "resolve_spec",
]


@dataclass(frozen=True)
class CollectionSpec:
    """The vectors a collection holds.

    Attributes:
        dim: width of the stored dense vector (2048, or a Matryoshka truncation of it).
        prefetch_dims: Matryoshka prefix widths stored as their own renormalised vectors
            (named ``dense_<k>``), used as cheap first stages of a funnel query.
        multivector: whether a (t, 128) token matrix is stored per document for MaxSim.
        multivector_dtype: storage dtype of the token vectors: float16 (default), float32,
            or uint8 (1 byte per dimension, no float originals: token_codec.py; qdrant-edge
            and Qdrant servers only).
        dense_dtype: storage dtype of the dense fields (the full vector and its Matryoshka
            prefixes): float32 (default) or float16 (half the bytes; qdrant-edge and Qdrant
            servers only).
        multivector_dim: width of one token vector.
        distance: similarity of every vector field.
        quantization: optional quantization of the full dense vector (int8 scalar or
            binary); searches score with the quantized copy and rescore with the originals.
        multivector_quantization: the same for the token vectors (the MaxSim field); the
            originals (``multivector_dtype``) are kept for the rescoring.
        token_pooling: pool factor of documents' token vectors at write time (None: off).
            Each document's tokens are clustered hierarchically (Ward, as colpali-engine's
            HierarchicalTokenPooler) into ``t // token_pooling`` clusters, each stored as its
            renormalised mean: ~1/factor of the token bytes. Queries are never pooled.
        multivector_on_disk: token vectors (the bulk of the bytes: ~77 KB per 300-token
            document in float16) memory-mapped from disk instead of held in RAM; a query reads
            only its candidates' pages. None: the backend's default, fixed at creation (on
            disk wherever the backend can: each backend's ``StoragePolicy``).
        dense_on_disk: the dense vectors (and their HNSW graphs) memory-mapped instead of
            held in RAM. None: the backend's default (in RAM: every dense search walks them).
        muvera: optional MUVERA encoding of the token vectors, stored as the dense field
            ``muvera`` (dot product) and searched by ``SearchMode.MUVERA``; computed from each
            record's token vectors when it is written. Needs ``multivector=True``. The field
            follows ``dense_on_disk``.
        payload_indexes: payload fields indexed for filtering and their types, given as
            ``{"kind": "keyword", "page": "integer"}`` (stored as sorted pairs). A
            performance hint: filtered results are the same without them, and a record whose
            indexed field holds another type is refused (payload_index.py). Not compared
            (two specs differing only here match); ``create()`` on an existing collection
            adds the ones it lacks.
        extra: the application's metadata about the collection (e.g. the model that made
            its vectors: jina_vdb/model_record.py), JSON; stored with the spec and read
            back by ``open()``, never compared (two specs differing only here match).

    A placement is a property of the stored collection: a backend that cannot honour an
    explicit True/False refuses it (UnsupportedSpecError), and an existing collection is
    opened with its own placement when the requested one is None.
    """

    dim: int = 2048
    prefetch_dims: tuple[int, ...] = (128,)
    multivector: bool = True
    multivector_dtype: VectorDtype = VectorDtype.FLOAT16
    dense_dtype: VectorDtype = VectorDtype.FLOAT32
    multivector_dim: int = MULTIVECTOR_DIM
    distance: Distance = Distance.COSINE
    quantization: Quantization = Quantization.NONE
    multivector_quantization: Quantization = Quantization.NONE
    token_pooling: int | None = None
    multivector_on_disk: bool | None = None
    dense_on_disk: bool | None = None
    muvera: MuveraParams | None = None
    payload_indexes: PayloadIndexes = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim <= 0:
            raise ValueError(f"dim must be a positive int, got {self.dim!r}")
        dims = tuple(self.prefetch_dims or ())
        for k in dims:
            if not isinstance(k, int) or isinstance(k, bool) or not 0 < k < self.dim:
                raise ValueError(
                    f"prefetch_dims must be ints between 1 and dim-1 ({self.dim - 1}), got {k!r} "
                    f"in {dims!r}"
                )
        if len(set(dims)) != len(dims):
            raise ValueError(f"prefetch_dims has duplicates: {dims!r}")
        object.__setattr__(self, "prefetch_dims", tuple(sorted(dims)))
        object.__setattr__(self, "payload_indexes", normalize_indexes(self.payload_indexes))
        for name in STORAGE_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be True, False or None, got {value!r}")
        if self.multivector_dim <= 0:
            raise ValueError(f"multivector_dim must be positive, got {self.multivector_dim!r}")
        for name, enum_type in (
            ("multivector_dtype", VectorDtype),
            ("dense_dtype", VectorDtype),
            ("distance", Distance),
            ("quantization", Quantization),
            ("multivector_quantization", Quantization),
        ):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum_type(value))
            except ValueError:
                valid = ", ".join(repr(v.value) for v in enum_type)
                raise ValueError(f"{name} must be one of {valid}, got {value!r}") from None
        if self.dense_dtype is VectorDtype.UINT8:
            raise ValueError("dense_dtype must be 'float32' or 'float16', got 'uint8'")
        if (
            self.multivector_dtype is VectorDtype.UINT8
            and self.multivector_quantization is not Quantization.NONE
        ):
            raise ValueError(
                "multivector_quantization needs float originals to rescore with; "
                "multivector_dtype='uint8' keeps none (use one or the other)"
            )
        if self.multivector_dtype is VectorDtype.UINT8:
            token_codec.check_dim(self.multivector_dim)
        object.__setattr__(self, "muvera", MuveraParams.from_value(self.muvera))
        if self.muvera is not None:
            if not self.multivector:
                raise ValueError("muvera encodes the token vectors: it needs multivector=True")
            if self.muvera.dim_proj > self.multivector_dim:
                raise ValueError(
                    f"muvera dim_proj ({self.muvera.dim_proj}) must be at most the token "
                    f"width multivector_dim ({self.multivector_dim})"
                )
        pool = self.token_pooling
        if pool is not None and (isinstance(pool, bool) or pool not in POOLING_FACTORS):
            raise ValueError(
                f"token_pooling must be None (off) or a pool factor in {POOLING_FACTORS}, "
                f"got {pool!r}"
            )
        if not self.multivector:
            tokens_only = {
                "token_pooling": (pool, None),
                "multivector_quantization": (self.multivector_quantization, Quantization.NONE),
            }
            for name, (value, default) in tokens_only.items():
                if value != default:
                    raise ValueError(
                        f"{name}={_plain(value)!r} needs token vectors, but multivector=False"
                    )

    # -- field names shared by every backend --------------------------------------------
    @property
    def dense_field(self) -> str:
        return "dense"

    def prefix_field(self, k: int) -> str:
        return f"dense_{k}"

    @property
    def multivector_field(self) -> str:
        return "multi"

    @property
    def muvera_field(self) -> str:
        """The dense field holding the MUVERA encoding (when ``muvera`` is set)."""
        return "muvera"

    # -- (de)serialisation, so open() can read the spec back from the database ----------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["extra"]:
            data.pop("extra")
        data["prefetch_dims"] = list(self.prefetch_dims)
        data["payload_indexes"] = {key: kind.value for key, kind in self.payload_indexes}
        for key in (
            "multivector_dtype",
            "dense_dtype",
            "distance",
            "quantization",
            "multivector_quantization",
        ):
            data[key] = getattr(self, key).value
        return data

    def with_storage(self, *, multivector_on_disk: bool, dense_on_disk: bool) -> CollectionSpec:
        """This spec with its unset (None) placements filled in by a backend's defaults."""
        tokens, dense = self.multivector_on_disk, self.dense_on_disk
        return replace(
            self,
            multivector_on_disk=multivector_on_disk if tokens is None else tokens,
            dense_on_disk=dense_on_disk if dense is None else dense,
        )

    def with_payload_indexes(self, indexes: PayloadIndexes) -> CollectionSpec:
        """This spec also indexing ``indexes`` (keys it already indexes keep their type)."""
        have = dict(self.payload_indexes)
        return replace(self, payload_indexes=tuple({**dict(indexes), **have}.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollectionSpec:
        data = dict(data)
        if "on_disk" in data and "multivector_on_disk" not in data:
            # Specs written before the placement was per field kind: on_disk was the token
            # field's, and the dense fields were always in RAM.
            data["multivector_on_disk"] = bool(data.pop("on_disk"))
            data.setdefault("dense_on_disk", False)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["extra"] = dict(known.get("extra") or {})
        if "prefetch_dims" in known:
            known["prefetch_dims"] = tuple(known["prefetch_dims"])
        return cls(**known)

    def differences(self, other: CollectionSpec) -> list[str]:
        """Human-readable list of fields that differ (empty when the specs match).

        A placement left unset (None) in this spec accepts the other's.
        """
        mine, theirs = self.to_dict(), other.to_dict()
        for key in ("extra", "payload_indexes"):  # metadata / hints: reconciled, not compared
            mine.pop(key, None)
            theirs.pop(key, None)
        return [
            f"{key}: existing={theirs[key]!r}, requested={mine[key]!r}"
            for key in mine
            if mine[key] != theirs[key] and not (key in STORAGE_FIELDS and mine[key] is None)
        ]


#: The placement fields: where each kind of vector is stored (see CollectionSpec).
STORAGE_FIELDS = ("multivector_on_disk", "dense_on_disk")

#: The spec fields every backend's ``create(...)`` also takes as keywords, with their defaults.
SPEC_ARG_DEFAULTS: dict[str, Any] = {
    "dim": 2048,
    "prefetch_dims": (128,),
    "multivector": True,
    "multivector_dtype": "float16",
    "dense_dtype": "float32",
    "quantization": "none",
    "multivector_quantization": "none",
    "token_pooling": None,
    "multivector_on_disk": None,
    "dense_on_disk": None,
    "muvera": None,
}


def resolve_spec(spec: CollectionSpec | None, **fields: Any) -> CollectionSpec:
    """The spec a ``create(...)`` call asks for: ``spec=`` or the loose fields, never both."""
    if spec is None:
        return CollectionSpec(**fields)
    if not isinstance(spec, CollectionSpec):
        raise TypeError(f"spec must be a CollectionSpec, got {type(spec).__name__}")
    changed = sorted(k for k, v in fields.items() if v != SPEC_ARG_DEFAULTS[k])
    if changed:
        raise ValueError(
            f"pass either spec= or the spec fields, not both (also given: {', '.join(changed)})"
        )
    return spec


#: Spec fields that are storage options a backend may not have: it declares the ones it
#: implements (``VectorStore.spec_features``), a field name for every value or
#: ``"field=value"`` for one; a value other than the default is refused by the others
#: instead of being accepted and ignored. (Placements are checked by each backend's
#: StoragePolicy, below; token_pooling is done before any backend sees the vectors.)
OPTIONAL_FEATURES: dict[str, Any] = {
    "multivector_dtype": VectorDtype.FLOAT16,
    "dense_dtype": VectorDtype.FLOAT32,
    "quantization": Quantization.NONE,
    "multivector_quantization": Quantization.NONE,
    "muvera": None,
}


def check_supported(
    spec: CollectionSpec, features: Collection[str], backend: str, reason: str = ""
) -> None:
    """Raise UnsupportedSpecError when ``spec`` uses an optional field ``backend`` lacks."""
    refused = []
    for key, default in OPTIONAL_FEATURES.items():
        value = _plain(getattr(spec, key))
        if value != _plain(default) and key not in features and f"{key}={value}" not in features:
            refused.append(f"{key}={value!r}")
    if refused:
        defaults = ", ".join(f"{k}={_plain(v)!r}" for k, v in OPTIONAL_FEATURES.items())
        raise UnsupportedSpecError(
            f"{backend} does not implement {', '.join(refused)}"
            f"{': ' + reason if reason else ''}; create the collection with the defaults "
            f"({defaults}) or on a backend that implements it"
        )


def reconcile_spec(
    requested: CollectionSpec, existing: CollectionSpec, *, name: str, where: str, opener: str
) -> CollectionSpec:
    """The existing spec of a collection ``create()`` found, when it is the one asked for.

    Raises SchemaMismatchError listing every differing field (nothing is changed).
    """
    diffs = requested.differences(existing)
    if diffs:
        raise SchemaMismatchError(
            f"collection {name!r} {where} exists with another spec: {'; '.join(diffs)}. "
            f"Open it with {opener}.open, or drop it first."
        )
    return existing


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


@dataclass(frozen=True)
class StoragePolicy:
    """The placements a backend can honour, and the ones it picks for unset (None) fields.

    Attributes:
        backend: named in messages.
        multivector_on_disk, dense_on_disk: the values the backend honours for each field.
        defaults: (multivector_on_disk, dense_on_disk) of a new collection that sets neither.
        reason: why a value is missing (for the refusal's message).
    """

    backend: str
    multivector_on_disk: tuple[bool, ...] = (False, True)
    dense_on_disk: tuple[bool, ...] = (False, True)
    defaults: tuple[bool, bool] = (True, False)
    reason: str = ""

    def apply(self, spec: CollectionSpec) -> CollectionSpec:
        """``spec`` with its placements resolved; an explicit one not honoured is refused."""
        for name in STORAGE_FIELDS:
            value = getattr(spec, name)
            if value is not None and value not in getattr(self, name):
                where = "on disk" if value else "in memory"
                kind = "token" if name == "multivector_on_disk" else "dense"
                raise UnsupportedSpecError(
                    f"{self.backend} cannot keep {kind} vectors {where} "
                    f"({name}={value!r}){': ' + self.reason if self.reason else ''}; leave "
                    f"{name} unset (None) for the backend's default"
                )
        tokens, dense = self.defaults
        return spec.with_storage(multivector_on_disk=tokens, dense_on_disk=dense)

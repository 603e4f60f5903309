"""CollectionSpec: what a collection stores, independent of the backend."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import SchemaMismatchError, UnsupportedSpecError

#: Width of one late-interaction token vector (the model's multi_vector_projector output).
MULTIVECTOR_DIM = 128


class Distance(str, enum.Enum):
    COSINE = "cosine"


class VectorDtype(str, enum.Enum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"


class Quantization(str, enum.Enum):
    NONE = "none"
    INT8 = "int8"


@dataclass(frozen=True)
class CollectionSpec:
    """The vectors a collection holds.

    Attributes:
        dim: width of the stored dense vector (2048, or a Matryoshka truncation of it).
        prefetch_dims: Matryoshka prefix widths stored as their own renormalised vectors
            (named ``dense_<k>``), used as cheap first stages of a funnel query.
        multivector: whether a (t, 128) token matrix is stored per document for MaxSim.
        multivector_dtype: storage dtype of the token vectors.
        multivector_dim: width of one token vector.
        distance: similarity of every vector field.
        quantization: optional scalar quantization of the full dense vector.
        on_disk: keep the token vectors (the bulk of the bytes) on disk where supported.
        extra: the application's metadata about the collection (e.g. the model that made
            its vectors: jina_vdb/model_record.py), JSON; stored with the spec and read
            back by ``open()``, never compared (two specs differing only here match).
    """

    dim: int = 2048
    prefetch_dims: tuple[int, ...] = (128,)
    multivector: bool = True
    multivector_dtype: VectorDtype = VectorDtype.FLOAT16
    multivector_dim: int = MULTIVECTOR_DIM
    distance: Distance = Distance.COSINE
    quantization: Quantization = Quantization.NONE
    on_disk: bool = False
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
        if self.multivector_dim <= 0:
            raise ValueError(f"multivector_dim must be positive, got {self.multivector_dim!r}")
        for name, enum_type in (
            ("multivector_dtype", VectorDtype),
            ("distance", Distance),
            ("quantization", Quantization),
        ):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum_type(value))
            except ValueError:
                valid = ", ".join(repr(v.value) for v in enum_type)
                raise ValueError(f"{name} must be one of {valid}, got {value!r}") from None

    # -- field names shared by every backend --------------------------------------------
    @property
    def dense_field(self) -> str:
        return "dense"

    def prefix_field(self, k: int) -> str:
        return f"dense_{k}"

    @property
    def multivector_field(self) -> str:
        return "multi"

    # -- (de)serialisation, so open() can read the spec back from the database ----------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["extra"]:
            data.pop("extra")
        data["prefetch_dims"] = list(self.prefetch_dims)
        for key in ("multivector_dtype", "distance", "quantization"):
            data[key] = getattr(self, key).value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollectionSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["extra"] = dict(known.get("extra") or {})
        if "prefetch_dims" in known:
            known["prefetch_dims"] = tuple(known["prefetch_dims"])
        return cls(**known)

    def differences(self, other: CollectionSpec) -> list[str]:
        """Human-readable list of fields that differ (empty when the specs match)."""
        mine, theirs = self.to_dict(), other.to_dict()
        mine.pop("extra", None)  # metadata, not what the collection stores
        theirs.pop("extra", None)
        return [
            f"{key}: existing={theirs[key]!r}, requested={mine[key]!r}"
            for key in mine
            if mine[key] != theirs[key]
        ]


#: The spec fields every backend's ``create(...)`` also takes as keywords, with their defaults.
SPEC_ARG_DEFAULTS: dict[str, Any] = {
    "dim": 2048,
    "prefetch_dims": (128,),
    "multivector": True,
    "multivector_dtype": "float16",
    "quantization": "none",
    "on_disk": False,
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
#: implements (``VectorStore.spec_features``); a value other than the default is refused by
#: the others instead of being accepted and ignored.
OPTIONAL_FEATURES: dict[str, Any] = {"quantization": Quantization.NONE, "on_disk": False}


def check_supported(spec: CollectionSpec, features: Collection[str], backend: str) -> None:
    """Raise UnsupportedSpecError when ``spec`` uses an optional field ``backend`` lacks."""
    refused = [
        f"{key}={_plain(getattr(spec, key))!r}"
        for key, default in OPTIONAL_FEATURES.items()
        if key not in features and getattr(spec, key) != default
    ]
    if refused:
        defaults = ", ".join(f"{k}={_plain(v)!r}" for k, v in OPTIONAL_FEATURES.items())
        raise UnsupportedSpecError(
            f"{backend} does not implement {', '.join(refused)}; create the collection with "
            f"the defaults ({defaults}) or on a backend that implements it"
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

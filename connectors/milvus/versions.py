"""Which Milvus is on the other end, and what it can do: decided once per connection.

Supported: Milvus Lite (``*.db`` files) and Milvus servers >= 2.3.0 (the first with
``upsert``). What changes with the version:

============================  ==========  ==========  ===========  ========
feature                       Lite        2.3         2.4 - 2.6.3  >= 2.6.4
============================  ==========  ==========  ===========  ========
layout (token vectors)        packed      packed      packed       struct
vector fields per collection  several     one         several      several
VARCHAR scalar index          INVERTED    Trie        INVERTED     INVERTED
============================  ==========  ==========  ===========  ========

One vector field means ``dense`` only: a spec with Matryoshka ``prefetch_dims`` (``dense_<k>``
fields) or a MUVERA encoding (``muvera``) is refused at create time on 2.3, naming the
server's version and the minimum.

Lite is recognised by the URI (a ``.db`` path) or, for a client passed in, by the version
Lite reports (``milvus_lite-<x>``). Never by "lite" anywhere in the string: the PyPI
``milvus`` package's real 2.3.5 server reports ``v2.3.5-lite``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ..errors import UnsupportedSpecError
from ..spec import CollectionSpec, StoragePolicy, VectorDtype
from .convert import Layout

logger = logging.getLogger(__name__)

Release = tuple[int, int, int]

#: The oldest server release supported (``upsert`` appeared in 2.3).
MIN_SERVER = (2, 3, 0)
#: Several vector fields in one collection (``dense`` + ``dense_<k>``) and INVERTED indexes.
MULTI_VECTOR_MIN = (2, 4, 0)
#: Array of Structs with a MAX_SIM index (the struct layout).
STRUCT_MIN = (2, 6, 4)
#: Memory mapping set per collection / field (``mmap.enabled``); 2.3 maps only server-wide.
MMAP_PROPERTY_MIN = (2, 4, 0)
LITE_PREFIX = "milvus_lite"


def parse_version(text: str) -> Release | None:
    """``v2.6.4`` / ``2.6.4-rc1`` / ``... Milvus 2.6`` -> (2, 6, 4) / (2, 6, 0); None if absent."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def dotted(release: Release) -> str:
    return ".".join(map(str, release))


@dataclass(frozen=True)
class ServerInfo:
    """The version string a server reported and whether it is Milvus Lite."""

    version: str
    lite: bool

    @classmethod
    def detect(cls, version: str, *, lite_uri: bool) -> ServerInfo:
        """``lite_uri``: the store was opened on a ``.db`` path (pymilvus runs Lite for it)."""
        return cls(version, lite_uri or version.strip().lower().startswith(LITE_PREFIX))

    @property
    def release(self) -> Release | None:
        """The server release; None for Lite (its own numbering) or an unreadable string."""
        return None if self.lite else parse_version(self.version)

    def at_least(self, minimum: Release) -> bool:
        """Lite and unreadable versions count as new (Lite has the pre-struct features)."""
        release = self.release
        return release is None or release >= minimum

    @property
    def multiple_vector_fields(self) -> bool:
        return self.at_least(MULTI_VECTOR_MIN)

    @property
    def varchar_index(self) -> str:
        """The scalar index type a VARCHAR field takes (2.3 has no INVERTED)."""
        return "INVERTED" if self.at_least(MULTI_VECTOR_MIN) else "Trie"

    def storage_policy(self) -> StoragePolicy:
        """Placements through this connector: in RAM only; the refusal says what the user can do.

        Lite has no memory mapping. 2.3 maps only server-wide (``queryNode.mmapDirPath`` in
        milvus.yaml, read at start-up: every loaded collection is then mapped), so no request
        for one collection can be honoured. >= 2.4 maps per collection or field
        (``mmap.enabled``), which this connector does not set: no such server to test it here.
        """
        if self.lite:
            backend, reason = "Milvus Lite", "it keeps loaded collections in RAM (no mmap)"
        else:
            backend = f"Milvus server {self.version}"
            release = self.release
            if release is not None and release < MMAP_PROPERTY_MIN:
                reason = (
                    f"Milvus < {dotted(MMAP_PROPERTY_MIN)} memory-maps only server-wide "
                    "(queryNode.mmapDirPath in the server's milvus.yaml, set before it starts; "
                    "every loaded collection is then mapped), never one collection"
                )
            else:
                reason = (
                    "this connector sets no Milvus mmap property; map the token vectors on "
                    "the server yourself after creating the collection: release it, then "
                    "MilvusClient.alter_collection_properties('<name>__tokens', "
                    "{'mmap.enabled': True}) (the companion collection holding the token "
                    "vectors, packed or one row per token; alter_collection_field maps one "
                    "field), or queryNode.mmap.scalarField / queryNode.mmap.vectorField: true "
                    "in milvus.yaml for every collection"
                )
        return StoragePolicy(
            backend,
            multivector_on_disk=(False,),
            dense_on_disk=(False,),
            defaults=(False, False),
            reason=reason,
        )

    def check_supported(self, spec: CollectionSpec, name: str) -> None:
        """Refuse a server older than ``MIN_SERVER`` or a spec it cannot hold, before creating."""
        release = self.release
        if release is not None and release < MIN_SERVER:
            raise UnsupportedSpecError(
                f"Milvus server {self.version} is too old for collection {name!r}: "
                f"jina-vdb needs Milvus >= {dotted(MIN_SERVER)} (upsert)"
            )
        fields = [spec.dense_field, *(spec.prefix_field(k) for k in spec.prefetch_dims)]
        if spec.muvera is not None:
            fields.append(spec.muvera_field)
        if len(fields) > 1 and not self.multiple_vector_fields:
            without = [
                *(["prefetch_dims=() (no funnel mode)"] if spec.prefetch_dims else []),
                *(["muvera=None (no muvera mode)"] if spec.muvera is not None else []),
            ]
            raise UnsupportedSpecError(
                f"collection {name!r} needs {len(fields)} vector fields ({', '.join(fields)}) "
                f"but Milvus server {self.version} allows one per collection; several vector "
                f"fields need Milvus >= {dotted(MULTI_VECTOR_MIN)}: create it with "
                f"{' and '.join(without)} or use a newer server"
            )


def choose_layout(info: ServerInfo) -> tuple[Layout, str]:
    """The multivector layout a server supports, with the reason (logged by the store)."""
    if info.lite:
        return Layout.PACKED, f"{info.version} is Milvus Lite (no Array of Structs / MAX_SIM)"
    release = info.release
    if release is None:
        return (
            Layout.PACKED,
            f"server version {info.version!r} is not recognised; assuming no Array of Structs",
        )
    needed = dotted(STRUCT_MIN)
    if release >= STRUCT_MIN:
        return Layout.STRUCT, f"server {info.version} >= {needed} supports Array of Structs"
    return Layout.PACKED, f"server {info.version} < {needed} has no Array of Structs"


def resolve_layout(server: ServerInfo, spec: CollectionSpec, wanted: Layout) -> Layout:
    """The layout a new collection gets; the choice and its reason are logged."""
    if not spec.multivector:
        return Layout.NONE
    if wanted is Layout.STRUCT and not server.lite and not server.at_least(STRUCT_MIN):
        raise UnsupportedSpecError(
            f"layout 'struct' needs Milvus >= {dotted(STRUCT_MIN)} (Array of Structs with "
            f"MAX_SIM); server {server.version} is older: use layout='packed' or 'auto'"
        )
    if wanted is not Layout.AUTO:
        logger.info("Milvus %s: layout %r as requested", server.version, wanted.value)
        return wanted
    chosen, reason = choose_layout(server)
    log = logger.warning if "not recognised" in reason else logger.info
    log("Milvus multivector layout %r: %s", chosen.value, reason)
    return chosen


def check_layout_dtype(layout: Layout, spec: CollectionSpec, name: str) -> None:
    """Refuse uint8 token vectors outside the packed layout (its rows hold any bytes; the
    struct and token-row layouts store float vectors), before anything is created."""
    if spec.multivector and spec.multivector_dtype is VectorDtype.UINT8:
        if layout is not Layout.PACKED:
            raise UnsupportedSpecError(
                f"collection {name!r}: multivector_dtype='uint8' needs the packed layout, not "
                f"{layout.value!r}; create it with layout='packed' (or 'auto' on Milvus Lite "
                "and servers < 2.6.4) or with multivector_dtype='float16'"
            )

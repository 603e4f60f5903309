"""Collection names every backend accepts, checked before a collection is created.

A name a backend would refuse deep inside its client (or, worse, accept in one flavour and
refuse in another: Milvus Lite takes ``demo-tiny``, Milvus servers do not) is refused up
front with the rule that failed and whose rule it is. Existing collections are opened by
any name their backend holds.
"""

from __future__ import annotations

import re
from typing import Literal

Backend = Literal["milvus", "qdrant"]

#: Milvus servers: letters, digits and "_", the first not a digit (Milvus Lite is laxer).
MILVUS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Milvus servers' default ``proxy.maxNameLength``.
MILVUS_MAX_LENGTH = 255
#: Suffix of the token-row layout's companion collection (``<name>__tokens``).
MILVUS_COMPANION_SUFFIX = "__tokens"
#: Qdrant: a server refuses longer names; qdrant-edge makes the name a folder.
QDRANT_MAX_LENGTH = 255
QDRANT_FORBIDDEN = set('/\\:*?"<>|\0')


def check_collection_name(name: object, backend: Backend) -> str:
    """``name`` if ``backend`` accepts it as a new collection's name; ValueError saying why not."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"collection name must be a non-empty string, got {name!r}")
    if backend == "milvus":
        longest = MILVUS_MAX_LENGTH - len(MILVUS_COMPANION_SUFFIX)
        if not MILVUS_NAME.fullmatch(name):
            raise ValueError(
                f"collection name {name!r} is not valid on Milvus servers: letters, digits and "
                "'_' only, not starting with a digit (Milvus Lite is laxer, but such a "
                f"collection could never move to a server); e.g. {_milvus_like(name)!r}"
            )
        if len(name) > longest:
            raise ValueError(
                f"collection name is {len(name)} characters; Milvus allows {longest} here "
                f"({MILVUS_MAX_LENGTH} minus the token collection's {MILVUS_COMPANION_SUFFIX!r})"
            )
        return name
    bad = sorted(set(name) & QDRANT_FORBIDDEN)
    if bad or name in (".", "..") or name != name.strip():
        why = f"characters {''.join(bad)!r}" if bad else "a path component or edge spaces"
        raise ValueError(
            f"collection name {name!r} is not valid on Qdrant: it has {why} "
            "(qdrant-edge makes the name a folder; servers refuse them too)"
        )
    if len(name) > QDRANT_MAX_LENGTH:
        raise ValueError(
            f"collection name is {len(name)} characters; Qdrant allows {QDRANT_MAX_LENGTH}"
        )
    return name


def _milvus_like(name: str) -> str:
    """A suggestion: ``demo-tiny`` -> ``demo_tiny``."""
    fixed = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return fixed if MILVUS_NAME.fullmatch(fixed) else f"_{fixed}"

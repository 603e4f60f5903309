"""Payload validation: refuse what any engine would refuse, corrupt or silently change.

Limits measured on this project's engines (2-core machine, 2026-11-30; qdrant-edge-py 0.9.0,
qdrant-client 1.20 local mode, milvus-lite 3.2.2, the ``milvus`` 2.3.5 server, pymilvus 3.0.2):

- **Nesting depth.** qdrant-edge accepts any depth at upsert but its readers use serde_json's
  recursion limit: a payload 124 containers deep (the top-level dict counts as 1) is written
  to the WAL and can never be read back (``EdgeShard.load`` fails: "failed to read WAL entry
  ... RecursionLimitExceeded", the whole collection is lost); from ~128 levels filtered
  count/search panic at once ("Payload storage is corrupted"). 123 levels round-trip. Milvus
  Lite and the Milvus 2.3.5 server round-trip 300 levels; pymilvus' encoder fails near
  1,000 (Python recursion). A Qdrant server decodes gRPC payloads with prost (at most 100
  nested messages, and each JSON level is Value -> Struct -> map entry), so ~32 levels is
  what every transport carries (derived, no server here). Limit: ``MAX_DEPTH`` = 32.
- **Integers.** qdrant-edge keeps ints in [-2**63, 2**64) and turns others into floats
  silently (2**70 comes back as 1.1805916207174113e+21); Milvus (orjson in pymilvus) refuses
  ints outside [-2**63, 2**64) with ``DataNotMatchException``; Qdrant's gRPC payload
  integers are int64. Limit: signed 64-bit, [-2**63, 2**63).
- **Non-finite floats.** qdrant-edge: "failed to convert NaN into payload number type";
  JSON has no NaN/inf. Refused.
- **Strings and keys** must be valid Unicode (no lone surrogates): qdrant-edge raises
  ``TypeError: failed to extract enum Helper``, pymilvus "str is not valid UTF-8: surrogates
  not allowed" - for values and keys alike. NUL and other control characters round-trip on
  every engine; the Milvus server cannot address a key holding a control character other than
  tab/CR/LF in a filter (``exists payload["a\\x00"]`` matches nothing), which filters never
  ask for (filter keys are identifiers, see filters.py), so such keys are stored as given.
- **Float precision.** qdrant-edge gives about one float in five back one ulp off
  (relative error <= 2.4e-16: 1053 of 4998 random doubles): its JSON reader does not
  round-trip every double. Not refusable; exact values that matter belong in ints or strings.
- **qdrant-client local mode** pickles payloads: it keeps 2**70, lone surrogates and NaN as
  given (a Qdrant server would refuse or change them: local mode stands in for a server, so
  the server's limits apply) and fails from ~500 levels (RecursionError while pickling).
- **Types**: dict (string keys), list/tuple, str, int, float, bool, None. Anything else
  (bytes, numpy scalars, sets) is refused: engines turn bytes into lists of ints or refuse
  them.
- **Size.** The Milvus server refuses a JSON field above 65,536 bytes of compact UTF-8 JSON
  ("the length (65544) of json field (payload) exceeds max length (65536)"); Milvus Lite and
  qdrant-edge stored 70 MB / 64 MB. A Qdrant server refuses requests above 32 MiB. Each
  ``MAX_PAYLOAD_BYTES`` (16 MiB) holds everywhere; Milvus stores refuse more than 65,536
  (Lite too, so a Lite collection can move to a server).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

#: Most nested containers in a payload (the payload dict itself is level 1).
MAX_DEPTH = 32
#: Largest payload of one record on every store (one request; a Qdrant server takes 32 MiB).
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


class PayloadError(ValueError):
    """A payload value no engine can store faithfully; the message names its path."""


def _path(parts: tuple[str | int, ...]) -> str:
    return "payload" + "".join(f"[{p!r}]" for p in parts)


def _check_text(text: str, parts: tuple[str | int, ...], what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PayloadError(
            f"{_path(parts)}: {what} has a lone surrogate {text[e.start]!r} at position "
            f"{e.start} (not valid Unicode; no engine can store it)"
        ) from None


def check_payload_values(payload: Mapping[str, Any]) -> None:
    """Walk a payload iteratively; raise PayloadError naming the first bad value's path."""
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(payload, (), 1)]
    while stack:
        value, parts, depth = stack.pop()
        if isinstance(value, Mapping):
            if depth > MAX_DEPTH:
                raise PayloadError(
                    f"{_path(parts)}: nested {depth} levels deep; at most {MAX_DEPTH} "
                    "(deeper payloads corrupt qdrant-edge collections)"
                )
            for key, item in value.items():
                if not isinstance(key, str):
                    raise PayloadError(
                        f"{_path(parts)}: keys must be strings, got {type(key).__name__} {key!r}"
                    )
                _check_text(key, parts, f"key {key!r}")
                stack.append((item, (*parts, key), depth + 1))
        elif isinstance(value, list | tuple):
            if depth > MAX_DEPTH:
                raise PayloadError(
                    f"{_path(parts)}: nested {depth} levels deep; at most {MAX_DEPTH} "
                    "(deeper payloads corrupt qdrant-edge collections)"
                )
            stack.extend((item, (*parts, i), depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, parts, "string")
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not INT_MIN <= value <= INT_MAX:
                raise PayloadError(
                    f"{_path(parts)}: integer {value} is outside the signed 64-bit range "
                    "[-2**63, 2**63) (engines refuse it or turn it into a float); "
                    "store it as a string"
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise PayloadError(f"{_path(parts)}: {value} is not a finite number")
        else:
            raise PayloadError(
                f"{_path(parts)}: {type(value).__name__} is not a JSON value "
                "(use dict, list, str, int, float, bool or None)"
            )


def payload_nbytes(payload: Mapping[str, Any]) -> int:
    """Bytes of the payload as compact UTF-8 JSON (what Milvus measures against its limit)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(text.encode("utf-8", "surrogatepass"))  # a size, even of what is refused

"""The filter language as JSON (``/v1/collections/{name}/search``), or the CLI's strings.

{"key": "kind", "eq": "text"}                   payload.kind == "text"
{"key": "kind", "any": ["text", "image"]}       one of
{"key": "page", "gte": 2, "lt": 10}             numeric range (gt, gte, lt, lte)
{"and": [F, ...]}  {"or": [F, ...]}  {"not": F}
["kind=text", "page>=2"]                        the CLI's -f strings (AND)
"""

from __future__ import annotations

from typing import Any

from connectors.filters import And, AnyOf, Eq, Filter, Not, Or, Range, parse_filter_args

_RANGE = ("gt", "gte", "lt", "lte")


class FilterSyntaxError(ValueError):
    """A JSON filter that is not in the language; the message names where (``filter.and[1]``)."""


def parse_filter(raw: dict[str, Any] | list[str] | None, where: str = "filter") -> Filter | None:
    """A request's ``filter`` field -> a connectors Filter (None: no filter)."""
    if raw is None:
        return None
    if isinstance(raw, list):
        try:
            return parse_filter_args(raw)
        except ValueError as e:
            raise FilterSyntaxError(f"{where}: {e}") from None
    return _node(raw, where)


def _node(raw: object, where: str) -> Filter:
    if not isinstance(raw, dict):
        raise FilterSyntaxError(f"{where}: expected an object, got {raw!r}")
    try:
        if "and" in raw or "or" in raw:
            op = "and" if "and" in raw else "or"
            _only(raw, {op}, where)
            children = raw[op]
            if not isinstance(children, list) or not children:
                raise FilterSyntaxError(f"{where}.{op}: expected a non-empty list of filters")
            nodes = tuple(_node(c, f"{where}.{op}[{i}]") for i, c in enumerate(children))
            return And(nodes) if op == "and" else Or(nodes)
        if "not" in raw:
            _only(raw, {"not"}, where)
            return Not(_node(raw["not"], f"{where}.not"))
        if "key" not in raw:
            raise FilterSyntaxError(
                f"{where}: expected 'key' with 'eq', 'any' or a range (gt, gte, lt, lte), or "
                f"'and' / 'or' / 'not'; got keys {sorted(raw)}"
            )
        key = raw["key"]
        if "eq" in raw:
            _only(raw, {"key", "eq"}, where)
            return Eq(key, raw["eq"])
        if "any" in raw:
            _only(raw, {"key", "any"}, where)
            return AnyOf(key, tuple(raw["any"]) if isinstance(raw["any"], list) else raw["any"])
        _only(raw, {"key", *_RANGE}, where)
        return Range(key, **{k: raw[k] for k in _RANGE if k in raw})
    except FilterSyntaxError:
        raise
    except (ValueError, TypeError) as e:
        raise FilterSyntaxError(f"{where}: {e}") from None


def _only(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise FilterSyntaxError(f"{where}: unexpected {extra} next to {sorted(allowed)}")

"""A small backend-neutral filter language over payload fields.

    Eq("lang", "en") & Range("page", gte=2) & ~AnyOf("kind", ["draft", "spam"])

Each backend translates a filter tree into its own syntax; ``matches`` evaluates one in
Python (the reference the contract tests compare every backend against).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import QueryError
from .payload import INT_MAX, INT_MIN, PayloadError, check_payload_values
from .payload_index import lookup

Scalar = str | int | bool

_VALUE_PATH = "payload['value']: "
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(
            f"filter key must be a payload field name like 'lang' or 'meta.page' "
            f"(letters, digits, _ and dots), got {key!r}"
        )
    return key


def _check_scalar(value: object, where: str) -> Scalar:
    if not isinstance(value, str | int | bool):
        raise ValueError(
            f"{where}: values must be str, int or bool, got {type(value).__name__} {value!r}"
        )
    try:  # the same limits as payload values: a stored value can never match anything else
        check_payload_values({"value": value})
    except PayloadError as e:
        raise ValueError(f"{where}: {str(e).removeprefix(_VALUE_PATH)}") from None
    return value


def _check_number(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: bounds must be finite numbers, got {value!r}")
    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{where}: int bounds must fit in signed 64 bits, got {value}")
    return value


class Filter:
    """Base of every filter node; combine with ``&``, ``|`` and ``~``."""

    def __and__(self, other: Filter) -> Filter:
        return And((self, other))

    def __or__(self, other: Filter) -> Filter:
        return Or((self, other))

    def __invert__(self) -> Filter:
        return Not(self)

    def matches(self, payload: Mapping[str, Any]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


def _values(payload: Mapping[str, Any], key: str) -> list[Any]:
    """A payload value as a list: a list field matches if any element matches (as in the DBs)."""
    value = lookup(payload, key)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


@dataclass(frozen=True)
class Eq(Filter):
    """payload[key] == value."""

    key: str
    value: Scalar

    def __post_init__(self) -> None:
        _check_key(self.key)
        _check_scalar(self.value, f"Eq({self.key!r})")

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return any(_same(v, self.value) for v in _values(payload, self.key))


@dataclass(frozen=True)
class AnyOf(Filter):
    """payload[key] is one of values."""

    key: str
    values: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        _check_key(self.key)
        if isinstance(self.values, str | bytes) or not isinstance(self.values, Sequence):
            raise ValueError(f"AnyOf({self.key!r}): values must be a list, got {self.values!r}")
        if not self.values:
            raise ValueError(f"AnyOf({self.key!r}): values must not be empty")
        vals = tuple(_check_scalar(v, f"AnyOf({self.key!r})") for v in self.values)
        if len({type(v) for v in vals}) > 1:
            raise ValueError(f"AnyOf({self.key!r}): values must all have one type, got {vals!r}")
        object.__setattr__(self, "values", vals)

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return any(_same(v, w) for v in _values(payload, self.key) for w in self.values)


@dataclass(frozen=True)
class Range(Filter):
    """Numeric range on payload[key]; any of gt/gte/lt/lte, at least one."""

    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def __post_init__(self) -> None:
        _check_key(self.key)
        for name in ("gt", "gte", "lt", "lte"):
            _check_number(getattr(self, name), f"Range({self.key!r}).{name}")
        if all(getattr(self, n) is None for n in ("gt", "gte", "lt", "lte")):
            raise ValueError(f"Range({self.key!r}) needs at least one of gt, gte, lt, lte")

    def matches(self, payload: Mapping[str, Any]) -> bool:
        for v in _values(payload, self.key):
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if self.gt is not None and not v > self.gt:
                continue
            if self.gte is not None and not v >= self.gte:
                continue
            if self.lt is not None and not v < self.lt:
                continue
            if self.lte is not None and not v <= self.lte:
                continue
            return True
        return False


def _check_children(name: str, children: object) -> tuple[Filter, ...]:
    if not isinstance(children, Sequence) or not children:
        raise ValueError(f"{name} needs a non-empty list of filters, got {children!r}")
    for c in children:
        if not isinstance(c, Filter):
            raise ValueError(f"{name}: every condition must be a Filter, got {c!r}")
    return tuple(children)


@dataclass(frozen=True)
class And(Filter):
    conditions: tuple[Filter, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", _check_children("And", self.conditions))

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return all(c.matches(payload) for c in self.conditions)


@dataclass(frozen=True)
class Or(Filter):
    conditions: tuple[Filter, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", _check_children("Or", self.conditions))

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return any(c.matches(payload) for c in self.conditions)


@dataclass(frozen=True)
class Not(Filter):
    condition: Filter

    def __post_init__(self) -> None:
        if not isinstance(self.condition, Filter):
            raise ValueError(f"Not: the condition must be a Filter, got {self.condition!r}")

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return not self.condition.matches(payload)


def parse_filter_args(items: Sequence[str]) -> Filter | None:
    """CLI form: ``key=value`` (repeat for AND); ``key=a,b`` any-of; ``key>=3``, ``key<10`` ranges.

    Values that look like ints become ints; ``true``/``false`` become bools. A value in
    double quotes is taken as it is, commas included, and stays a string
    (``source="notes, v1.md"``, ``page="3"``); outside quotes a backslash escapes the next
    character (``name=a\\,b``). ``filter_keys`` lists the keys a filter reads.
    """
    conditions: list[Filter] = []
    for item in items:
        m = re.match(r"^\s*([^=<>!\s]+)\s*(>=|<=|>|<|=)\s*(.*?)\s*$", item)
        if not m or not m.group(3):
            raise ValueError(
                f"cannot parse filter {item!r}: expected key=value, key=a,b, key>=n or key<n"
            )
        key, op, raw = m.groups()
        if op == "=":
            values = _split_values(raw, item)
            conditions.append(Eq(key, values[0]) if len(values) == 1 else AnyOf(key, tuple(values)))
        else:
            try:
                number = float(raw) if any(c in raw for c in ".eE") else int(raw)
            except ValueError:
                raise ValueError(f"filter {item!r}: {raw!r} is not a number") from None
            name = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}[op]
            conditions.append(Range(key, **{name: number}))
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else And(tuple(conditions))


def _split_values(raw: str, item: str) -> list[Scalar]:
    """``a,"b, c",d\\,e`` -> ["a", "b, c", "d,e"]: commas split outside quotes."""
    values: list[Scalar] = []
    current: list[str] = []
    quoted = in_quotes = False
    chars = iter(raw)
    for c in chars:
        if c == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError(f"filter {item!r}: a backslash at the end escapes nothing")
            current.append(escaped)
        elif c == '"':
            if not in_quotes and not "".join(current).strip():
                current = []  # spaces before an opening quote are not part of the value
            in_quotes, quoted = not in_quotes, True
        elif c.isspace() and quoted and not in_quotes:
            continue  # nor are spaces after the closing one
        elif c == "," and not in_quotes:
            values.append(_value("".join(current), quoted, item))
            current, quoted = [], False
        else:
            current.append(c)
    if in_quotes:
        raise ValueError(f"filter {item!r}: a double quote is not closed")
    values.append(_value("".join(current), quoted, item))
    return values


def _value(text: str, quoted: bool, item: str) -> Scalar:
    if quoted:
        return text
    text = text.strip()
    if not text:
        raise ValueError(f'filter {item!r}: an empty value (quote it to match "")')
    return _coerce(text)


def filter_keys(flt: Filter | None) -> list[str]:
    """The payload keys a filter reads, in order, each once."""
    if flt is None:
        return []
    if isinstance(flt, And | Or):
        keys = [k for c in flt.conditions for k in filter_keys(c)]
    elif isinstance(flt, Not):
        keys = filter_keys(flt.condition)
    else:
        keys = [flt.key]  # type: ignore[attr-defined]
    return list(dict.fromkeys(keys))


def _coerce(raw: str) -> Scalar:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    return raw


def check_filter(flt: object) -> Filter | None:
    """``flt`` when it is a Filter (or None); anything else is a QueryError saying what it is."""
    if flt is not None and not isinstance(flt, Filter):
        raise QueryError(f"filter must be a connectors.filters.Filter, got {type(flt).__name__}")
    return flt

"""Meter filters: which usage events a meter counts, decided by their metadata.

A filter is ``{"conjunction": "and" | "or", "clauses": [...]}``; its clauses are
either all conditions ``{"key", "operator", "value"}`` or all nested filters,
nested at most three levels deep (the top filter is level 1).

How a condition reads an event's metadata value:

- ``equals`` / ``not_equals`` compare like with like: a string clause value
  compares strings exactly (case-sensitive), a boolean compares booleans, a
  number compares numbers exactly (``1`` equals ``Decimal("1.0")``).
- The ordering operators compare numbers and need a number as clause value.
- ``contains`` / ``does_not_contain`` test for a substring and need a string.
- A string that looks like a number (``"5"``) is a string, and a boolean is
  never a number (``True`` is not ``1``).
- A condition about a key the event lacks, or whose value is of another kind
  than the clause value, is false for every operator, ``not_equals`` and
  ``does_not_contain`` included: such an event does not count for the meter.
  It is never an error.

Definitions that break these rules are refused with ``InvalidMeterError``,
whose message starts with the path of the offending part.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, NoReturn, TypeVar

from domain.errors import InvalidMeterError
from domain.metadata import MAX_KEY_LENGTH, MAX_STRING_LENGTH, MetadataValue
from domain.text import is_storable

MAX_FILTER_DEPTH = 3
Predicate = Callable[[Mapping[str, MetadataValue]], bool]
NUMBER_TYPES = (int, Decimal)  # matched with type(), so a bool is never a number
Choice = TypeVar("Choice", bound=StrEnum)


class Conjunction(StrEnum):
    AND = "and"
    OR = "or"


class Operator(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    GREATER_THAN = "greater_than"
    GREATER_THAN_OR_EQUALS = "greater_than_or_equals"
    LESS_THAN = "less_than"
    LESS_THAN_OR_EQUALS = "less_than_or_equals"
    CONTAINS = "contains"
    DOES_NOT_CONTAIN = "does_not_contain"

    def needs_number(self) -> bool:
        return self.value in _ORDERINGS

    def needs_string(self) -> bool:
        return self in {Operator.CONTAINS, Operator.DOES_NOT_CONTAIN}


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "greater_than": operator.gt,
    "greater_than_or_equals": operator.ge,
    "less_than": operator.lt,
    "less_than_or_equals": operator.le,
}


def value_kind(value: object) -> str | None:
    """``"string"``, ``"boolean"`` or ``"number"``; None for anything else."""
    kind = type(value)
    if kind is str:
        return "string"
    if kind is bool:
        return "boolean"
    return "number" if kind in NUMBER_TYPES else None


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    operator: Operator
    value: MetadataValue
    # Part of equality so that ``True`` and ``1`` (equal in Python) stay different.
    kind: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", value_kind(self.value))

    def to_wire(self) -> dict[str, Any]:
        return {"key": self.key, "operator": self.operator.value, "value": self.value}


@dataclass(frozen=True, slots=True)
class Filter:
    conjunction: Conjunction
    clauses: tuple[Condition, ...] | tuple[Filter, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "conjunction": self.conjunction.value,
            "clauses": [clause.to_wire() for clause in self.clauses],
        }


def parse_filter(raw: object, path: str = "filter") -> Filter | None:
    """The filter described by the wire structure ``raw`` (None: no filter)."""
    return None if raw is None else _parse_filter(raw, path, 1)


def compile_filter(filter_: Filter) -> Predicate:
    """A plain function of an event's metadata: does the event pass ``filter_``?"""
    tests = tuple(
        compile_filter(c) if isinstance(c, Filter) else _compile_condition(c)
        for c in filter_.clauses
    )
    if len(tests) == 1:
        return tests[0]
    if filter_.conjunction is Conjunction.AND:

        def every(metadata: Mapping[str, MetadataValue]) -> bool:
            for test in tests:  # noqa: SIM110  (a loop: no generator per event)
                if not test(metadata):
                    return False
            return True

        return every

    def some(metadata: Mapping[str, MetadataValue]) -> bool:
        for test in tests:  # noqa: SIM110  (a loop: no generator per event)
            if test(metadata):
                return True
        return False

    return some


def refuse(path: str, problem: str) -> NoReturn:
    error = InvalidMeterError(f"{path}: {problem}")
    error.detail = {"path": path}
    raise error


def parse_choice(kind: type[Choice], raw: object, path: str) -> Choice:
    if isinstance(raw, str) and raw in kind._value2member_map_:
        return kind(raw)
    expected = ", ".join(member.value for member in kind)
    refuse(path, f"{_show(raw)} is not one of: {expected}")


def check_key(raw: object, path: str) -> str:
    if not isinstance(raw, str) or not raw:
        refuse(path, "a metadata key (a non-empty string) is required")
    if len(raw) > MAX_KEY_LENGTH:
        refuse(path, f"is longer than {MAX_KEY_LENGTH} characters")
    if not is_storable(raw):
        refuse(path, "must not contain the NUL character (U+0000)")
    return raw


def fields_of(raw: object, path: str, allowed: frozenset[str]) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        refuse(path, f"must be an object, not {_show(raw)}")
    unknown = sorted(str(name) for name in raw if name not in allowed)
    if unknown:
        refuse(path, f"unknown field {unknown[0]!r}; expected {', '.join(sorted(allowed))}")
    return raw


_FILTER_FIELDS = frozenset({"conjunction", "clauses"})
_CONDITION_FIELDS = frozenset({"key", "operator", "value"})


def _parse_filter(raw: object, path: str, level: int) -> Filter:
    if level > MAX_FILTER_DEPTH:
        refuse(path, f"filters nest at most {MAX_FILTER_DEPTH} levels deep; this is level {level}")
    fields = fields_of(raw, path, _FILTER_FIELDS)
    conjunction = parse_choice(Conjunction, fields.get("conjunction"), f"{path}.conjunction")
    clauses = fields.get("clauses")
    if not isinstance(clauses, list | tuple) or not clauses:
        refuse(f"{path}.clauses", "must be a non-empty list of conditions or of filters")
    paths = [f"{path}.clauses[{i}]" for i in range(len(clauses))]
    nested = [_is_filter(clause, at) for clause, at in zip(clauses, paths, strict=True)]
    if any(nested) and not all(nested):
        refuse(f"{path}.clauses", "mixes conditions and nested filters; use one kind per list")
    pairs = zip(clauses, paths, strict=True)
    if nested[0]:
        return Filter(conjunction, tuple(_parse_filter(c, at, level + 1) for c, at in pairs))
    return Filter(conjunction, tuple(_parse_condition(c, at) for c, at in pairs))


def _is_filter(clause: object, path: str) -> bool:
    if not isinstance(clause, Mapping):
        refuse(path, f"must be an object, not {_show(clause)}")
    return "clauses" in clause or "conjunction" in clause


def _parse_condition(raw: object, path: str) -> Condition:
    fields = fields_of(raw, path, _CONDITION_FIELDS)
    key = check_key(fields.get("key"), f"{path}.key")
    op = parse_choice(Operator, fields.get("operator"), f"{path}.operator")
    value = _check_value(fields.get("value"), f"{path}.value")
    if op.needs_number() and value_kind(value) != "number":
        refuse(f"{path}.value", f"{op.value} compares numbers; {_show(value)} is not a number")
    if op.needs_string() and not isinstance(value, str):
        refuse(f"{path}.value", f"{op.value} looks for text; {_show(value)} is not a string")
    return Condition(key, op, value)


def _check_value(raw: object, path: str) -> MetadataValue:
    if type(raw) is str:
        if len(raw) > MAX_STRING_LENGTH:
            refuse(path, f"is longer than {MAX_STRING_LENGTH} characters")
        if not is_storable(raw):
            refuse(path, "must not contain the NUL character (U+0000)")
        return raw
    if type(raw) is bool or type(raw) is int:
        return raw
    if type(raw) is Decimal:
        if not raw.is_finite():
            refuse(path, f"{raw} is not a finite number")
        return raw
    if isinstance(raw, float):
        refuse(path, "is a float; numbers must arrive as int or Decimal")
    refuse(path, f"must be a string, number or boolean, not {_show(raw)}")


def _compile_condition(condition: Condition) -> Predicate:
    key, value, op = condition.key, condition.value, condition.operator
    if op.needs_string():
        return _substring(key, str(value), expected=op is Operator.CONTAINS)
    if op.needs_number():
        return _ordering(key, value, _ORDERINGS[op.value])
    same = op is Operator.EQUALS
    if isinstance(value, bool):
        return lambda m: type(x := m.get(key)) is bool and (x is value) is same
    if isinstance(value, str):
        return lambda m: type(x := m.get(key)) is str and (x == value) is same
    return lambda m: type(x := m.get(key)) in NUMBER_TYPES and (x == value) is same


def _substring(key: str, text: str, expected: bool) -> Predicate:
    return lambda m: type(x := m.get(key)) is str and (text in x) is expected


def _ordering(key: str, bound: object, compare: Callable[[Any, Any], bool]) -> Predicate:
    return lambda m: type(x := m.get(key)) in NUMBER_TYPES and compare(x, bound)


def _show(raw: object) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, str | bool | int | Decimal):
        text = repr(raw) if isinstance(raw, str) else str(raw).lower()
        return text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(raw).__name__}"

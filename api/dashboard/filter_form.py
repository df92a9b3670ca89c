"""The meter filter builder's form: its fields, its buttons, and the meter filter wire shape.

The builder works without JavaScript: the form's fields encode the tree by path,
the root group being ``0`` and a group's clauses numbered from 0 under it
(``filter.0.conjunction``, ``filter.0.1.key``, ``filter.0.1.operator``,
``filter.0.1.value``, ``filter.0.1.kind``; a nested group ``filter.0.2.conjunction``
and its conditions ``filter.0.2.0.key``...). Buttons named ``action`` change the
tree and the page is shown again with every value kept: ``add-condition:PATH``,
``add-group:PATH`` (refused past ``MAX_FILTER_DEPTH`` levels), ``remove:PATH``.

Turning the form into the wire shape (``{"conjunction", "clauses"}``, as the
dodopayments SDK's ``MeterFilter``):

- a condition whose key and value are both blank is left out, and so is a group
  left with nothing; a root with nothing is no filter at all;
- the wire never mixes conditions and groups in one list, the form may: a group
  holding both sends its conditions as one nested group of the same conjunction,
  first (``a and b and (c or d)`` is ``(a and b) and (c or d)``), which never
  needs a deeper level than the form already has;
- a value is read by its kind: ``text``, ``number`` (an integer or a decimal, kept
  exact), ``boolean`` (``true``/``false``), or ``auto``: a number for the ordering
  operators, text for contains, and for equals a number or boolean when it reads
  as one, else text. What the domain refuses it refuses with its own message;
  ``WireFilter.paths`` finds the form field a wire path names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from domain.filters import MAX_FILTER_DEPTH, Operator
from domain.meter import canonical_number

MAX_NODES = 100  # conditions and groups one form may hold
KINDS = ("auto", "text", "number", "boolean")
OPERATORS = tuple(op.value for op in Operator)
ROOT = (0,)
_FIELD = re.compile(r"filter\.((?:\d{1,3}\.){1,12})(conjunction|key|operator|value|kind)")
# wide enough to read back every number ``from_wire`` writes (the domain checks the range)
_INTEGER = re.compile(r"-?\d{1,120}")
_DECIMAL = re.compile(r"-?\d{1,120}(\.\d{1,120})?([eE][-+]?\d{1,3})?")
Path = tuple[int, ...]


class FilterFormError(Exception):
    """The builder refuses the form or an action; ``field`` is where to say so."""

    def __init__(self, message: str, field: str = "filter") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class ConditionForm:
    key: str = ""
    operator: str = "equals"
    value: str = ""
    kind: str = "auto"

    def is_blank(self) -> bool:
        return not self.key.strip() and not self.value


@dataclass(frozen=True, slots=True)
class GroupForm:
    conjunction: str = "and"
    clauses: tuple[ConditionForm | GroupForm, ...] = ()

    def is_empty(self) -> bool:
        return all(c.is_empty() if isinstance(c, GroupForm) else c.is_blank() for c in self.clauses)


BLANK = GroupForm(clauses=(ConditionForm(),))  # a new meter's builder: one empty condition


def name(path: Path) -> str:
    """The field prefix of the node at ``path``: ``filter.0.1``."""
    return "filter." + ".".join(str(part) for part in path)


def parse(form: Mapping[str, str]) -> GroupForm:
    """The builder's tree from the posted fields (``BLANK`` when it sent none)."""
    nodes: dict[Path, dict[str, str]] = {}
    for field, value in form.items():
        found = _FIELD.fullmatch(field)
        if found is None:
            continue
        path = tuple(int(part) for part in found.group(1).rstrip(".").split("."))
        if path[0] != 0:
            continue
        nodes.setdefault(path, {})[found.group(2)] = value
    if not nodes:
        return BLANK
    if len(nodes) > MAX_NODES:
        raise FilterFormError(f"a filter holds at most {MAX_NODES} conditions and groups")
    groups = {p for p, fields in nodes.items() if "conjunction" in fields}
    groups |= {p[:end] for p in nodes for end in range(1, len(p))}  # every ancestor
    too_deep = [p for p in groups if len(p) > MAX_FILTER_DEPTH]
    if too_deep:
        raise FilterFormError(_depth_message(), name(min(too_deep)))
    return _group(ROOT, nodes, groups)


def _group(path: Path, nodes: Mapping[Path, dict[str, str]], groups: set[Path]) -> GroupForm:
    fields = nodes.get(path, {})
    children = sorted(
        p for p in nodes.keys() | groups if len(p) == len(path) + 1 and p[:-1] == path
    )
    clauses: list[ConditionForm | GroupForm] = []
    for child in children:
        if child in groups:
            clauses.append(_group(child, nodes, groups))
        else:
            clauses.append(_condition(nodes[child]))
    return GroupForm(fields.get("conjunction", "and"), tuple(clauses))


def _condition(fields: Mapping[str, str]) -> ConditionForm:
    return ConditionForm(
        fields.get("key", ""),
        fields.get("operator", "equals"),
        fields.get("value", ""),
        fields.get("kind", "auto"),
    )


def to_fields(root: GroupForm) -> dict[str, str]:
    """The form fields that ``parse`` reads back as ``root``."""
    fields: dict[str, str] = {}

    def walk(group: GroupForm, path: Path) -> None:
        fields[f"{name(path)}.conjunction"] = group.conjunction
        for index, clause in enumerate(group.clauses):
            at = (*path, index)
            if isinstance(clause, GroupForm):
                walk(clause, at)
                continue
            for part in ("key", "operator", "value", "kind"):
                fields[f"{name(at)}.{part}"] = getattr(clause, part)

    walk(root, ROOT)
    return fields


def apply(root: GroupForm, action: str) -> GroupForm:
    """The tree after one of the builder's buttons (``add-condition:0.1`` etc.)."""
    verb, _, where = action.partition(":")
    if not re.fullmatch(r"0(\.\d{1,3}){0,12}", where):
        raise FilterFormError(f"unknown builder action {action[:60]!r}")
    path = tuple(int(part) for part in where.split("."))
    if verb in {"add-condition", "add-group"} and _size(root) >= MAX_NODES:
        raise FilterFormError(
            f"a filter holds at most {MAX_NODES} conditions and groups", name(path)
        )
    if verb == "add-condition":
        return _change(root, path, lambda g: replace(g, clauses=(*g.clauses, ConditionForm())))
    if verb == "add-group":
        if len(path) >= MAX_FILTER_DEPTH:
            raise FilterFormError(_depth_message(), name(path))
        return _change(root, path, lambda g: replace(g, clauses=(*g.clauses, BLANK)))
    if verb == "remove":
        if path == ROOT:
            return GroupForm(root.conjunction)
        return _change(root, path[:-1], lambda g: _without(g, path[-1]))
    raise FilterFormError(f"unknown builder action {action[:60]!r}")


def _size(group: GroupForm) -> int:
    """How many conditions and groups the tree holds, itself included."""
    return 1 + sum(_size(c) if isinstance(c, GroupForm) else 1 for c in group.clauses)


def _depth_message() -> str:
    return (
        f"filters nest at most {MAX_FILTER_DEPTH} levels deep: "
        "a group cannot be added inside a group of the third level"
    )


def _without(group: GroupForm, index: int) -> GroupForm:
    if index >= len(group.clauses):
        raise FilterFormError("that part of the filter is already gone")
    return replace(group, clauses=group.clauses[:index] + group.clauses[index + 1 :])


def _change(root: GroupForm, path: Path, change: Any) -> GroupForm:
    """``root`` with the group at ``path`` replaced by ``change(group)``."""
    if len(path) == 1:
        return change(root)  # type: ignore[no-any-return]
    index = path[1]
    child = root.clauses[index] if index < len(root.clauses) else None
    if not isinstance(child, GroupForm):
        raise FilterFormError("that group of the filter is gone")
    updated = _change(child, path[1:], change)
    return replace(root, clauses=(*root.clauses[:index], updated, *root.clauses[index + 1 :]))


@dataclass(frozen=True, slots=True)
class WireFilter:
    filter: dict[str, Any] | None
    paths: dict[str, str]  # wire path (``filter.clauses[1]``) -> field prefix (``filter.0.1``)

    def field_of(self, wire_path: str) -> str:
        """The form field a domain error's path names (the builder if none closer)."""
        at, _, part = wire_path.rpartition(".")
        if at in self.paths and part in {"key", "operator", "value", "conjunction"}:
            return f"{self.paths[at]}.{part}"
        return self.paths.get(wire_path, "filter")


def to_wire(root: GroupForm) -> WireFilter:
    """The wire shape of the builder's tree; ``FilterFormError`` for an unreadable value."""
    paths: dict[str, str] = {}
    return WireFilter(_group_wire(root, ROOT, "filter", paths), paths)


def _group_wire(
    group: GroupForm, path: Path, at: str, paths: dict[str, str]
) -> dict[str, Any] | None:
    indexed = list(enumerate(group.clauses))
    conditions = [
        ((*path, i), c) for i, c in indexed if isinstance(c, ConditionForm) and not c.is_blank()
    ]
    nested = [((*path, i), g) for i, g in indexed if isinstance(g, GroupForm) and not g.is_empty()]
    if not conditions and not nested:
        return None
    paths[at] = name(path)
    clauses: list[dict[str, Any]] = []
    holder, into = (f"{at}.clauses[0]", []) if conditions and nested else (at, clauses)
    for index, (where, condition) in enumerate(conditions):
        paths[f"{holder}.clauses[{index}]"] = name(where)
        into.append(_condition_wire(condition, name(where)))
    if into is not clauses:
        paths[holder] = name(path)
        clauses.append({"conjunction": group.conjunction, "clauses": into})
    for where, sub in nested:
        wire = _group_wire(sub, where, f"{at}.clauses[{len(clauses)}]", paths)
        clauses.append(wire or {})
    return {"conjunction": group.conjunction, "clauses": clauses}


def _condition_wire(condition: ConditionForm, field: str) -> dict[str, Any]:
    return {
        "key": condition.key,  # as typed: " region " is a key of its own to the API
        "operator": condition.operator,
        "value": _value(condition, f"{field}.value"),
    }


def _value(condition: ConditionForm, field: str) -> str | bool | int | Decimal:
    text, kind = condition.value, condition.kind
    number, flag = _number(text), _boolean(text)
    if kind == "number":
        if number is None:
            raise FilterFormError(f"{text[:40]!r} is not a number", field)
        return number
    if kind == "boolean":
        if flag is None:
            raise FilterFormError(f"{text[:40]!r} is neither true nor false", field)
        return flag
    if kind == "text" or condition.operator in {"contains", "does_not_contain"}:
        return text
    if condition.operator in {"equals", "not_equals"} and number is None and flag is not None:
        return flag
    return text if number is None else number


def _number(text: str) -> int | Decimal | None:
    text = text.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    return Decimal(text) if _DECIMAL.fullmatch(text) else None


def _boolean(text: str) -> bool | None:
    word = text.strip().lower()
    return word == "true" if word in {"true", "false"} else None


def from_wire(wire: Mapping[str, Any] | None) -> GroupForm:
    """The builder's tree showing a stored filter (``BLANK`` for none)."""
    if not wire:
        return BLANK
    clauses = tuple(
        from_wire(c) if "clauses" in c else _condition_form(c) for c in wire.get("clauses", ())
    )
    return GroupForm(str(wire.get("conjunction", "and")), clauses)


def _condition_form(wire: Mapping[str, Any]) -> ConditionForm:
    value = wire.get("value")
    if isinstance(value, bool):
        text, kind = ("true" if value else "false"), "boolean"
    elif isinstance(value, int | Decimal):
        text, kind = format(canonical_number(value), "f"), "number"
    else:
        text, kind = str(value), "text"
    return ConditionForm(str(wire.get("key", "")), str(wire.get("operator", "")), text, kind)


@dataclass(frozen=True, slots=True)
class ConditionRow:
    """A condition as the template draws it: its field prefix and its number on the page."""

    name: str
    path: str
    ordinal: int
    condition: ConditionForm
    is_group = False

    def label(self, part: str) -> str:
        """``Filter key`` for the first condition, ``Condition 2 key`` for the next (no label
        holds another, so a browser test finds each by its label)."""
        if self.ordinal == 1:
            return "Value kind" if part == "kind" else f"Filter {part}"
        return f"Condition {self.ordinal} {part}"


@dataclass(frozen=True, slots=True)
class GroupRow:
    name: str
    path: str
    ordinal: int
    level: int
    conjunction: str
    clauses: tuple[GroupRow | ConditionRow, ...]
    can_nest: bool  # a group may be added inside
    is_group = True

    @property
    def label(self) -> str:
        return "Match" if self.ordinal == 1 else f"Group {self.ordinal} conjunction"


def layout(root: GroupForm) -> GroupRow:
    """The tree numbered in page order, for the template."""
    counts = {"group": 0, "condition": 0}

    def row(node: GroupForm | ConditionForm, path: Path) -> GroupRow | ConditionRow:
        dotted = ".".join(str(part) for part in path)
        if isinstance(node, ConditionForm):
            counts["condition"] += 1
            return ConditionRow(name(path), dotted, counts["condition"], node)
        counts["group"] += 1
        ordinal = counts["group"]
        clauses = tuple(row(c, (*path, i)) for i, c in enumerate(node.clauses))
        nests = len(path) < MAX_FILTER_DEPTH
        return GroupRow(name(path), dotted, ordinal, len(path), node.conjunction, clauses, nests)

    top = row(root, ROOT)
    assert isinstance(top, GroupRow)
    return top

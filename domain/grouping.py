"""Grouping a meter's events by one metadata key: a ``Tally`` per value of the key.

An event the meter counts goes to the group named by the *group value* of its
metadata under the key: a string as it is, a number in its canonical spelling
(``1``, ``1.0`` and ``1E0`` are the group ``"1"``), a boolean ``"true"`` or
``"false"``. The text is all that names a group, so the string ``"1"`` and the
number ``1`` share one, as do ``"true"`` and ``True``: a group is what a person
reading the value would call it. An event that lacks the key goes to the group
``None``.

Tallies merge, so merging every group's tally gives the ungrouped tally, for
every aggregation; and a group ``other`` standing for "all groups but the top
ones" is the merge of those groups' tallies, whose result is right whatever the
aggregation (a sum of sums, the max of maxima, the distinct values of the union).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce
from typing import TypeVar

from domain.errors import DomainError
from domain.metadata import MetadataValue
from domain.meter import Aggregation, MeterSpec, Tally, UsageRecord, canonical_number

GroupValue = str | None
"""A group's name: the group value of the key, or None for events lacking it."""
Group = TypeVar("Group", bound=Hashable)


class GroupBoundError(DomainError):
    """More distinct groups than a caller's bound: refused rather than approximated."""

    code = "too_many_groups"

    def __init__(self, max_groups: int) -> None:
        super().__init__(f"the events fall in more than {max_groups:,} groups")
        self.max_groups = max_groups


def group_value(value: MetadataValue) -> str:
    """The text that names ``value``'s group: ``"abc"``, ``"1.5"``, ``"true"``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return format(canonical_number(value), "f")


def group_of(key: str, metadata: Mapping[str, MetadataValue]) -> GroupValue:
    """The group an event with ``metadata`` falls in when grouped by ``key``."""
    value = metadata.get(key)
    return None if value is None else group_value(value)


def group_tallies(
    spec: MeterSpec,
    key: str,
    records: Iterable[UsageRecord],
    *,
    max_groups: int | None = None,
) -> dict[str | None, Tally]:
    """A tally per group value of ``key``, of the events ``spec`` counts; empty groups absent.

    With ``max_groups``, ``GroupBoundError`` as soon as one more group appears.
    """
    keyed = ((group_of(key, record[3]), record) for record in records)
    return tally_by_group(spec, keyed, max_groups=max_groups)


def group_chunk(spec: MeterSpec, key: str, chunk: Sequence[UsageRecord]) -> dict[GroupValue, Tally]:
    """``group_tallies`` of a bounded chunk (a list in memory already): the events are
    parted by group first and each part is tallied by the meter's own batch fold, which
    is about twice as fast as adding event by event."""
    parts: dict[GroupValue, list[UsageRecord]] = {}
    for record in chunk:
        parts.setdefault(group_of(key, record[3]), []).append(record)
    tallied = {value: spec.tally(part) for value, part in parts.items()}
    return {value: tally for value, tally in tallied.items() if tally.count}


def tally_by_group(
    spec: MeterSpec,
    grouped: Iterable[tuple[Group, UsageRecord]],
    *,
    max_groups: int | None = None,
) -> dict[Group, Tally]:
    """A tally per group of the events ``spec`` counts, each event given with its group
    (a customer's id, a window and a rank: whatever the caller groups by)."""
    groups: dict[Group, Tally] = {}
    empty = Tally()
    for group, (at, event_id, event_name, metadata) in grouped:
        measurement = spec.measure(event_name, metadata)
        if measurement is None:
            continue
        tally = groups.get(group)
        if tally is None:
            if max_groups is not None and len(groups) >= max_groups:
                raise GroupBoundError(max_groups)
            tally = empty
        groups[group] = tally.add(measurement, at, event_id)
    return groups


def merge_all(tallies: Iterable[Tally]) -> Tally:
    """The merge of ``tallies``; ``Tally()`` if there are none."""
    return reduce(Tally.merge, tallies, Tally())


@dataclass(frozen=True, slots=True)
class Ranking:
    """The top groups, best first, and the merge of all the others (``rest``)."""

    top: tuple[GroupValue, ...]
    rest: frozenset[GroupValue]

    @property
    def has_rest(self) -> bool:
        return bool(self.rest)


def rank_groups(
    totals: Mapping[GroupValue, Tally], aggregation: Aggregation, limit: int
) -> Ranking:
    """The ``limit`` groups of greatest result, ties by value text (None last), and the rest."""
    ordered = sorted(totals, key=lambda group: _rank_key(totals[group], group, aggregation))
    return Ranking(tuple(ordered[:limit]), frozenset(ordered[limit:]))


def _rank_key(
    tally: Tally, group: GroupValue, aggregation: Aggregation
) -> tuple[Decimal, bool, str]:
    return (-tally.result(aggregation), group is None, group or "")

"""Grouped usage queries: a meter's value per window and per group, the top groups only.

``group_by`` names a metadata key, whose values name the groups
(``domain.grouping``: canonical text, ``None`` for events lacking the key), or
is ``customer_id``, the event's customer (a metadata key of that name cannot be
grouped by). The ``limit`` groups of greatest value over the whole range are
kept, ties by group text (``None`` last); the rest are merged into one group
``other``, whose tallies merge, so its value is right for every aggregation.

Bounds and cost:

- ``customer_id`` comes from the hourly buckets, which are per customer, and the
  usage log for the partial first and last hour: the cost of the ungrouped query.
- A metadata key is not in the buckets: the range's events are streamed from the
  usage log twice at one log position, once to rank the groups (a tally per
  group) and once to split the top ones by window. The cost follows the events.
- At most ``MAX_GROUPS`` distinct groups over the range, or the query is refused
  (``TooManyGroupsError``, 422): an exact answer or none, never an approximate
  ranking. At most ``MAX_GROUPED_WINDOWS`` windows. Memory stays within a tally
  per group plus one per window and top group.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from application.errors import InvalidParameterError, InvalidRequestError, UnavailableError
from application.ledger import Ledger
from application.measure import DefinitionMovedError
from application.reads import USAGE, USAGE_LOG, Reads
from application.usage_report import (
    UsageReport,
    UsageWindow,
    Window,
    usage_report,
    window_bounds,
    window_index,
)
from domain.grouping import (
    GroupBoundError,
    GroupValue,
    Ranking,
    group_of,
    group_tallies,
    merge_all,
    rank_groups,
    tally_by_group,
)
from domain.metadata import MAX_KEY_LENGTH
from domain.meter import MeterSpec, Tally, UsageRecord
from domain.text import is_storable

CUSTOMER = "customer_id"  # group_by this: by the event's customer, not a metadata key
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_GROUPS = 10_000  # distinct groups a range may hold
MAX_GROUPED_WINDOWS = 1_000  # so an answer holds at most 1,000 x 101 window groups
MAX_ATTEMPTS = 3
EMPTY = Tally()
Bounds = list[tuple[datetime, datetime]]
Cells = dict[tuple[int, int], Tally]  # (window index, rank; the rest after the top) -> tally
Grouped = tuple[dict[GroupValue, Tally], Ranking, Cells]


@dataclass(frozen=True, slots=True)
class Usage:
    value: Decimal
    events: int

    @classmethod
    def of(cls, tally: Tally, spec: MeterSpec) -> Usage:
        return cls(tally.result(spec.aggregation), tally.count)


@dataclass(frozen=True, slots=True)
class GroupUsage:
    group: GroupValue
    usage: Usage


@dataclass(frozen=True, slots=True)
class GroupedWindow:
    start: datetime
    end: datetime
    usage: Usage  # of every group
    groups: tuple[GroupUsage, ...]  # the top groups, in rank order, each in every window
    other: Usage | None  # None when there is no rest


@dataclass(frozen=True, slots=True)
class GroupQuery:
    business_id: str
    meter_id: str
    customer_id: str | None
    start: datetime
    end: datetime
    window: Window
    group_by: str
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        key = self.group_by
        if not key or len(key) > MAX_KEY_LENGTH or not is_storable(key):
            raise InvalidParameterError(
                f"group_by must be a metadata key of 1 to {MAX_KEY_LENGTH} characters "
                "(without NUL), or customer_id",
                parameter="group_by",
            )
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidParameterError(
                f"limit must be 1 to {MAX_LIMIT}", parameter="limit", maximum=MAX_LIMIT
            )


@dataclass(frozen=True, slots=True)
class GroupedReport:
    query: GroupQuery
    groups: tuple[GroupUsage, ...]  # over the whole range, best first
    other: Usage | None  # the rest merged; None when there is no rest
    other_groups: int  # how many groups ``other`` merges
    windows: tuple[GroupedWindow, ...]
    usage: Usage  # of every group over the whole range


class TooManyGroupsError(InvalidRequestError):
    code = "too_many_groups"


def grouped_usage(
    ledger: Ledger, reads: Reads, query: GroupQuery
) -> tuple[MeterSpec, GroupedReport]:
    """The meter's value per window and top group over the query's range, and its definition."""
    reads.fresh(USAGE_LOG, USAGE)
    for _ in range(MAX_ATTEMPTS):
        spec = ledger.meter_spec(query.business_id, query.meter_id)
        try:
            return spec, _report(reads, spec, query)
        except DefinitionMovedError:  # redefined meanwhile: read it again
            continue
    raise UnavailableError(f"meter {query.meter_id!r} keeps being redefined; try again")


def usage_and_top_customers(
    ledger: Ledger, reads: Reads, query: GroupQuery
) -> tuple[UsageReport, GroupedReport]:
    """The meter's usage per window of the query (every customer) and its top customers,
    from one read of the buckets: the grouped report's windows merge every group's tallies,
    so each is the window's value for any aggregation. Beyond ``MAX_GROUPED_WINDOWS``
    windows the customers are ranked over month windows and the usage read apart."""
    ranked = replace(query, group_by=CUSTOMER, customer_id=None)
    if len(window_bounds(query.start, query.end, query.window)) > MAX_GROUPED_WINDOWS:
        _, grouped = grouped_usage(ledger, reads, replace(ranked, window=Window.MONTH))
        _, report = _ungrouped(ledger, reads, query)
        return report, grouped
    _, grouped = grouped_usage(ledger, reads, ranked)
    windows = tuple(
        UsageWindow(w.start, w.end, w.usage.value, w.usage.events) for w in grouped.windows
    )
    report = UsageReport(
        meter_id=query.meter_id,
        customer_id=None,
        start=query.start,
        end=query.end,
        window=query.window,
        windows=windows,
        total=grouped.usage.value,
        events=grouped.usage.events,
    )
    return report, grouped


def _ungrouped(ledger: Ledger, reads: Reads, query: GroupQuery) -> tuple[MeterSpec, UsageReport]:
    reads.fresh(USAGE_LOG, USAGE)
    for _ in range(MAX_ATTEMPTS):
        spec = ledger.meter_spec(query.business_id, query.meter_id)
        try:
            return spec, usage_report(
                reads.measure,
                business_id=query.business_id,
                meter_id=query.meter_id,
                spec=spec,
                customer_id=None,
                start=query.start,
                end=query.end,
                window=query.window,
            )
        except DefinitionMovedError:  # redefined meanwhile: read it again
            continue
    raise UnavailableError(f"meter {query.meter_id!r} keeps being redefined; try again")


def _report(reads: Reads, spec: MeterSpec, query: GroupQuery) -> GroupedReport:
    bounds = window_bounds(query.start, query.end, query.window, MAX_GROUPED_WINDOWS)
    if query.group_by == CUSTOMER:
        totals, ranking, cells = _by_customer(reads, spec, query, bounds)
    else:
        totals, ranking, cells = _by_key(reads, spec, query, bounds)
    return _assemble(spec, query, bounds, totals, ranking, cells)


def _by_key(reads: Reads, spec: MeterSpec, query: GroupQuery, bounds: Bounds) -> Grouped:
    log, key = reads.usage_log, query.group_by
    cut = log.max_tracking_id(reads.application_name) or 0  # both passes read one state

    def records() -> Iterator[UsageRecord]:
        return log.stream_records(
            query.business_id, spec.event_name, query.customer_id, query.start, query.end, cut
        )

    try:
        totals = group_tallies(spec, key, records(), max_groups=MAX_GROUPS)
    except GroupBoundError:
        raise TooManyGroupsError(
            f"the events of the range hold more than {MAX_GROUPS:,} values of {key!r}; "
            "choose a shorter range, one customer or a key of fewer values",
            parameter="group_by",
            max_groups=MAX_GROUPS,
        ) from None
    ranking = rank_groups(totals, spec.aggregation, query.limit)
    slots = _slots(ranking)
    if len(bounds) == 1:  # the totals are the window's: no second pass
        return totals, ranking, _cells(bounds, slots, ((query.start, *g) for g in totals.items()))
    other = len(ranking.top)
    keyed = (
        ((window_index(bounds, r[0]), slots.get(group_of(key, r[3]), other)), r) for r in records()
    )
    return totals, ranking, tally_by_group(spec, keyed)


def _by_customer(reads: Reads, spec: MeterSpec, query: GroupQuery, bounds: Bounds) -> Grouped:
    parts = reads.measure.customer_parts(
        query.business_id, query.meter_id, spec, query.customer_id, query.start, query.end
    )
    totals: dict[GroupValue, Tally] = {}
    for part in parts:
        totals[part.customer_id] = totals.get(part.customer_id, EMPTY).merge(part.tally)
    ranking = rank_groups(totals, spec.aggregation, query.limit)
    cells = _cells(bounds, _slots(ranking), ((p.start, p.customer_id, p.tally) for p in parts))
    return totals, ranking, cells


def _slots(ranking: Ranking) -> dict[GroupValue, int]:
    return {group: rank for rank, group in enumerate(ranking.top)}


def _cells(
    bounds: Bounds,
    slots: Mapping[GroupValue, int],
    parts: Iterable[tuple[datetime, GroupValue, Tally]],
) -> Cells:
    """Parts merged per window and top group; the other groups' into one slot after them."""
    cells: Cells = {}
    other = len(slots)
    for start, group, tally in parts:
        cell = (window_index(bounds, start), slots.get(group, other))
        cells[cell] = cells.get(cell, EMPTY).merge(tally)
    return cells


def _assemble(
    spec: MeterSpec,
    query: GroupQuery,
    bounds: Bounds,
    totals: Mapping[GroupValue, Tally],
    ranking: Ranking,
    cells: Cells,
) -> GroupedReport:
    top, other = ranking.top, len(ranking.top)
    windows = []
    for index, (start, end) in enumerate(bounds):
        slots = [cells.get((index, slot), EMPTY) for slot in range(other)]
        rest = cells.get((index, other), EMPTY)
        windows.append(
            GroupedWindow(
                start,
                end,
                Usage.of(merge_all([*slots, rest]), spec),
                tuple(GroupUsage(g, Usage.of(t, spec)) for g, t in zip(top, slots, strict=True)),
                Usage.of(rest, spec) if ranking.has_rest else None,
            )
        )
    rest_total = merge_all(totals[group] for group in ranking.rest)
    return GroupedReport(
        query=query,
        groups=tuple(GroupUsage(group, Usage.of(totals[group], spec)) for group in top),
        other=Usage.of(rest_total, spec) if ranking.has_rest else None,
        other_groups=len(ranking.rest),
        windows=tuple(windows),
        usage=Usage.of(merge_all(totals.values()), spec),
    )

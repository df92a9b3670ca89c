"""The usage projection and usage queries: each meter's tally per customer per UTC hour.

A meter measures every matching event in the log, including those recorded
before it was defined. The projection keeps, per (meter, customer, hour), the
``Tally`` of the events of that hour (``domain.meter``); tallies merge, so any
range of whole hours is the merge of its buckets. A query whose start or end
falls inside an hour folds that hour's part from the event index, so every
range, and so every billing cycle, is answered exactly.

How the projection follows the log, batch by batch:

- usage events of the batch are tallied for the meters known before the batch
  and merged into their buckets;
- a meter created or redefined in the batch is measured afresh over the whole
  log up to the batch's last position (its old buckets are replaced), so the
  incremental step skips it for this batch;
- the buckets, the meters' definitions and the log position are written in one
  transaction (invariant 7): dropping the tables and following the log again
  gives the same rows.

An archived meter keeps being measured: archiving hides it from the catalogue;
its history stays queryable.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic

from application.errors import InvalidParameterError
from application.follower import DomainEvent
from application.ports import TrackedView, UsageEventView
from domain.meter import Meter, MeterSpec, Tally
from domain.usage import UsageEvent

HOUR = timedelta(hours=1)
MAX_WINDOWS = 10_000
USAGE_TOPIC = get_topic(UsageEvent.Recorded)

MeterKey = tuple[str, str]  # (business_id, meter_id)
BucketKey = tuple[str, str, str, datetime]  # (business_id, meter_id, customer_id, hour)


@dataclass(frozen=True, slots=True)
class MeterDefinition:
    aggregate_id: UUID
    business_id: str
    meter_id: str
    definition: dict[str, Any]  # MeterSpec.to_wire()


@dataclass(slots=True)
class UsageChanges:
    """What one batch changes, written with its tracking position in one transaction."""

    definitions: list[MeterDefinition] = field(default_factory=list)
    replaced: dict[MeterKey, dict[tuple[str, datetime], Tally]] = field(default_factory=dict)
    added: dict[BucketKey, Tally] = field(default_factory=dict)


class UsageStore(TrackedView, Protocol):
    """The usage read model."""

    def definitions(self) -> list[MeterDefinition]: ...

    def apply(self, changes: UsageChanges, tracking: Tracking) -> None: ...

    def buckets(
        self,
        business_id: str,
        meter_id: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
    ) -> list[tuple[str, datetime, Tally]]:
        """(customer, hour, tally) of the hours in ``[start, end)``; both whole hours."""
        ...

    def all_buckets(self) -> Iterator[tuple[BucketKey, Tally]]:
        """Every bucket in key order: for comparing a rebuild with the live rows."""
        ...


History = Callable[[int], Iterable[UsageEvent.Recorded]]


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def log_history(app: Application[Any], batch_size: int = 5000) -> History:
    """The usage events of ``app``'s log up to a position, read in batches."""

    def history(stop: int) -> Iterator[UsageEvent.Recorded]:
        position = 0
        to_domain_event = app.mapper.to_domain_event
        while position < stop:
            notifications = app.recorder.select_notifications(
                start=position,
                limit=batch_size,
                stop=stop,
                topics=[USAGE_TOPIC],
                inclusive_of_start=False,
            )
            if not notifications:
                return
            for notification in notifications:
                recorded = to_domain_event(notification)
                assert isinstance(recorded, UsageEvent.Recorded)
                yield recorded
            position = notifications[-1].id

    return history


class UsageProjection:
    """Keeps every meter's hourly tallies up to date with the log."""

    name = "usage"

    def __init__(self, view: UsageStore, history: History) -> None:
        self._view = view
        self._history = history
        self._by_id: dict[UUID, MeterDefinition] = {}
        # business -> event name -> [(meter_id, spec)]
        self._specs: dict[str, dict[str, list[tuple[str, MeterSpec]]]] = {}
        for definition in view.definitions():
            self._learn(definition)

    @property
    def view(self) -> UsageStore:
        return self._view

    def _learn(self, definition: MeterDefinition) -> None:
        old = self._by_id.get(definition.aggregate_id)
        if old is not None:
            names = self._specs[old.business_id]
            for meters in names.values():
                meters[:] = [(m, s) for m, s in meters if m != old.meter_id]
        self._by_id[definition.aggregate_id] = definition
        raw = definition.definition
        spec = MeterSpec.parse(raw["event_name"], raw["aggregation"], raw["filter"])
        names = self._specs.setdefault(definition.business_id, {})
        names.setdefault(spec.event_name, []).append((definition.meter_id, spec))

    def process(self, events: Sequence[DomainEvent], tracking: Tracking) -> None:
        changes = UsageChanges()
        redefined: dict[UUID, MeterDefinition] = {}
        usage: list[UsageEvent.Recorded] = []
        for domain_event in events:
            if isinstance(domain_event, UsageEvent.Recorded):
                usage.append(domain_event)
            elif isinstance(domain_event, Meter.Created | Meter.DefinitionChanged):
                definition = self._definition(domain_event)
                self._learn(definition)
                redefined[domain_event.originator_id] = definition
        # Meters (re)defined in this batch are measured afresh below, not added to.
        skip = {(d.business_id, d.meter_id) for d in redefined.values()}
        self._add(usage, skip, changes.added)
        changes.definitions.extend(redefined.values())
        if redefined:
            changes.replaced = self._measure_afresh(
                list(redefined.values()), tracking.notification_id
            )
        self._view.apply(changes, tracking)

    def _definition(self, domain_event: Meter.Created | Meter.DefinitionChanged) -> MeterDefinition:
        if isinstance(domain_event, Meter.Created):
            business_id, meter_id = domain_event.business_id, domain_event.meter_id
        else:
            known = self._by_id[domain_event.originator_id]
            business_id, meter_id = known.business_id, known.meter_id
        spec = MeterSpec.parse(
            domain_event.event_name, domain_event.aggregation, domain_event.filter
        )
        return MeterDefinition(domain_event.originator_id, business_id, meter_id, spec.to_wire())

    def _add(
        self,
        usage: Sequence[UsageEvent.Recorded],
        skip: set[MeterKey],
        added: dict[BucketKey, Tally],
    ) -> None:
        groups: dict[tuple[str, str, str, datetime], list[Any]] = {}
        specs = self._specs
        for e in usage:
            names = specs.get(e.business_id)
            if names is None or e.event_name not in names:
                continue
            key = (e.business_id, e.event_name, e.customer_id, hour_of(e.timestamp))
            record = (e.timestamp, e.event_id, e.event_name, e.metadata)
            group = groups.get(key)
            if group is None:
                groups[key] = [record]
            else:
                group.append(record)
        for (business_id, event_name, customer_id, hour), records in groups.items():
            for meter_id, spec in specs[business_id][event_name]:
                if (business_id, meter_id) in skip:
                    continue
                tally = spec.tally(records)
                if tally.count:
                    bucket = (business_id, meter_id, customer_id, hour)
                    before = added.get(bucket)
                    added[bucket] = tally if before is None else before.merge(tally)

    def _measure_afresh(
        self, definitions: list[MeterDefinition], stop: int
    ) -> dict[MeterKey, dict[tuple[str, datetime], Tally]]:
        """Each meter's buckets over the whole log up to ``stop``, in one pass."""
        wanted: dict[tuple[str, str], list[tuple[MeterKey, MeterSpec]]] = {}
        result: dict[MeterKey, dict[tuple[str, datetime], Tally]] = {}
        for d in definitions:
            raw = d.definition
            spec = MeterSpec.parse(raw["event_name"], raw["aggregation"], raw["filter"])
            meter_key = (d.business_id, d.meter_id)
            wanted.setdefault((d.business_id, spec.event_name), []).append((meter_key, spec))
            result[meter_key] = {}
        chunk: dict[tuple[str, str, str, datetime], list[Any]] = {}
        pending = 0
        for e in self._history(stop):
            if (e.business_id, e.event_name) not in wanted:
                continue
            bucket = (e.business_id, e.event_name, e.customer_id, hour_of(e.timestamp))
            chunk.setdefault(bucket, []).append((e.timestamp, e.event_id, e.event_name, e.metadata))
            pending += 1
            if pending >= 10_000:  # fold as we go: memory follows buckets, not events
                _fold_into(chunk, wanted, result)
                chunk, pending = {}, 0
        _fold_into(chunk, wanted, result)
        return result


def _fold_into(
    chunk: dict[tuple[str, str, str, datetime], list[Any]],
    wanted: dict[tuple[str, str], list[tuple[MeterKey, MeterSpec]]],
    result: dict[MeterKey, dict[tuple[str, datetime], Tally]],
) -> None:
    for (business_id, event_name, customer_id, hour), records in chunk.items():
        for meter_key, spec in wanted[(business_id, event_name)]:
            tally = spec.tally(records)
            if tally.count:
                buckets = result[meter_key]
                before = buckets.get((customer_id, hour))
                buckets[customer_id, hour] = tally if before is None else before.merge(tally)


# Queries


class Window(StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"

    def floor(self, moment: datetime) -> datetime:
        hour = hour_of(moment)
        if self is Window.HOUR:
            return hour
        day = hour.replace(hour=0)
        return day if self is Window.DAY else day.replace(day=1)

    def next(self, boundary: datetime) -> datetime:
        if self is Window.HOUR:
            return boundary + HOUR
        if self is Window.DAY:
            return boundary + timedelta(days=1)
        days = calendar.monthrange(boundary.year, boundary.month)[1]
        return boundary + timedelta(days=days)


@dataclass(frozen=True, slots=True)
class UsageWindow:
    start: datetime
    end: datetime
    value: Decimal
    events: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    meter_id: str
    customer_id: str | None
    start: datetime
    end: datetime
    window: Window
    windows: tuple[UsageWindow, ...]
    total: Decimal
    events: int


EdgeEvents = Callable[[str, str, str | None, datetime, datetime], Iterable[UsageEventView]]


def usage_report(
    store: UsageStore,
    edge_events: EdgeEvents,
    *,
    business_id: str,
    meter_id: str,
    spec: MeterSpec,
    customer_id: str | None,
    start: datetime,
    end: datetime,
    window: Window,
) -> UsageReport:
    """The meter's value per window over ``[start, end)`` and in total, exactly."""
    if end <= start:
        raise InvalidParameterError("end must be after start")
    bounds = _windows(start, end, window)
    tallies = [Tally() for _ in bounds]
    first_hour = hour_of(start) if hour_of(start) == start else hour_of(start) + HOUR
    last_hour = hour_of(end)
    pieces: list[tuple[datetime, datetime]] = []
    if first_hour < last_hour:
        rows = store.buckets(business_id, meter_id, customer_id, first_hour, last_hour)
        for _, hour, tally in rows:
            index = _window_index(bounds, hour)
            tallies[index] = tallies[index].merge(tally)
        pieces = [(start, first_hour), (last_hour, end)]
    else:
        pieces = [(start, end)]
    for piece_start, piece_end in pieces:
        if piece_start >= piece_end:
            continue
        records = [
            (e.timestamp, e.event_id, e.event_name, e.metadata)
            for e in edge_events(business_id, spec.event_name, customer_id, piece_start, piece_end)
        ]
        index = _window_index(bounds, piece_start)
        tallies[index] = tallies[index].merge(spec.tally(records))
    everything = Tally()
    for tally in tallies:
        everything = everything.merge(tally)
    return UsageReport(
        meter_id=meter_id,
        customer_id=customer_id,
        start=start,
        end=end,
        window=window,
        windows=tuple(
            UsageWindow(s, e, t.result(spec.aggregation), t.count)
            for (s, e), t in zip(bounds, tallies, strict=True)
        ),
        total=everything.result(spec.aggregation),
        events=everything.count,
    )


def _windows(start: datetime, end: datetime, window: Window) -> list[tuple[datetime, datetime]]:
    bounds: list[tuple[datetime, datetime]] = []
    cursor = start
    boundary = window.floor(start)
    while cursor < end:
        boundary = window.next(boundary)
        bounds.append((cursor, min(boundary, end)))
        cursor = boundary
        if len(bounds) > MAX_WINDOWS:
            raise InvalidParameterError(
                f"the range holds more than {MAX_WINDOWS:,} {window} windows; "
                "choose a wider window or a shorter range"
            )
    return bounds


def _window_index(bounds: list[tuple[datetime, datetime]], moment: datetime) -> int:
    low, high = 0, len(bounds) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if bounds[middle][0] <= moment:
            low = middle
        else:
            high = middle - 1
    return low


def as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)

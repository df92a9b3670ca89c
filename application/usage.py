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
- a void in the batch makes the hour of the voided event stale for every meter
  of its name: max, min, last and distinct values cannot be subtracted, so
  those buckets are tallied again from the events that count in that hour at
  the batch's last position. The event index answers that (it records each
  event's and each void's position); the projection waits until the index has
  reached the batch, so the answer is exactly the log's, whichever follower
  asks and whenever. The batch's own events of those hours are in the answer
  and are not added again;
- the buckets, the meters' definitions and the log position are written in one
  transaction (invariant 7): dropping the tables and following the log again
  gives the same rows.

An archived meter keeps being measured: archiving hides it from the catalogue;
its history stays queryable.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.utils import get_topic

from application.errors import InvalidParameterError
from application.follower import DomainEvent
from application.ports import TrackedView, UsageEventView
from domain.meter import Meter, MeterSpec, Tally
from domain.usage import UsageEvent

HOUR = timedelta(hours=1)
MAX_WINDOWS = 10_000
# The last moment whose month still has a successor datetime can represent.
LATEST = datetime(9999, 12, 1, tzinfo=UTC)
USAGE_TOPIC = get_topic(UsageEvent.Recorded)
VOID_TOPIC = get_topic(UsageEvent.Voided)

MeterKey = tuple[str, str]  # (business_id, meter_id)
BucketKey = tuple[str, str, str, datetime]  # (business_id, meter_id, customer_id, hour)
HourKey = tuple[str, str, str, datetime]  # (business_id, event_name, customer_id, hour)
Tallies = dict[MeterKey, dict[tuple[str, datetime], Tally]]  # per meter: (customer, hour)


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
    replaced: Tallies = field(default_factory=dict)
    added: dict[BucketKey, Tally] = field(default_factory=dict)
    # Buckets tallied again after a void: written as they are; an empty one is removed.
    recounted: dict[BucketKey, Tally] = field(default_factory=dict)


class IndexBehindError(Exception):
    """The event index has not reached the position a recount must be read at (yet)."""


class UsageStore(TrackedView, Protocol):
    """The usage read model."""

    def definitions(self) -> list[MeterDefinition]: ...

    def apply(self, changes: UsageChanges, tracking: Tracking, after: int) -> None:
        """Write ``changes`` and ``tracking`` in one transaction, if the view is at ``after``.

        Raises ``PositionMovedError`` (writing nothing) when another process
        moved the view since; concurrent calls are serialised.
        """
        ...

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

    def counted_in_hours(
        self, hours: Collection[HourKey], up_to: int, application_name: str
    ) -> dict[HourKey, list[UsageEventView]]:
        """The usage events that count at log position ``up_to`` in each hour.

        Read from the event index once it has reached ``up_to`` (waiting a
        little); ``IndexBehindError`` if it does not.
        """
        ...


class History(Protocol):
    """The usage events of the log, and which of them are voided."""

    def __call__(self, after: int, stop: int) -> Iterable[UsageEvent.Recorded]:
        """The usage events recorded after position ``after`` up to ``stop``, in log order."""
        ...

    def voided(self, stop: int) -> frozenset[UUID]:
        """The aggregate ids of the usage events voided at or before ``stop``."""
        ...


METER_TOPICS = (get_topic(Meter.Created), get_topic(Meter.DefinitionChanged))


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


class LogHistory:
    """The usage events of ``app``'s log after one position up to another, in batches.

    Each batch is "the next ``batch_size`` after this id", and the topic and the
    upper bound are checked here: with an upper bound or a topic in the query,
    PostgreSQL (its statistics stale after a bulk load) chose to sort the whole
    remaining range for every batch, which made a scan quadratic.
    """

    def __init__(self, app: Application[Any], batch_size: int = 5000) -> None:
        self._app = app
        self._batch_size = batch_size

    def __call__(self, after: int, stop: int) -> Iterator[UsageEvent.Recorded]:
        app, batch_size = self._app, self._batch_size
        to_domain_event = app.mapper.to_domain_event
        while after < stop:
            notifications = app.recorder.select_notifications(
                start=after, limit=batch_size, inclusive_of_start=False
            )
            for notification in notifications:
                if notification.id > stop:
                    return
                if notification.topic == USAGE_TOPIC:
                    recorded = to_domain_event(notification)
                    assert isinstance(recorded, UsageEvent.Recorded)
                    yield recorded
            if len(notifications) < batch_size:
                return
            after = notifications[-1].id

    def voided(self, stop: int) -> frozenset[UUID]:
        """Voids are few, like meter events: one query with no page limit reads them all."""
        notifications = self._app.recorder.select_notifications(
            start=0, limit=2**62, stop=stop, topics=[VOID_TOPIC], inclusive_of_start=False
        )
        return frozenset(
            i if isinstance(i, UUID) else UUID(str(i))
            for i in (n.originator_id for n in notifications)
        )


def log_history(app: Application[Any], batch_size: int = 5000) -> LogHistory:
    return LogHistory(app, batch_size)


def definitions_at(app: Application[Any], stop: int) -> list[MeterDefinition]:
    """Every meter's definition as it stands at log position ``stop``.

    Meter events are few: one query with no page limit reads them all.
    """
    found: dict[UUID, MeterDefinition] = {}
    notifications = app.recorder.select_notifications(
        start=0, limit=2**62, stop=stop, topics=list(METER_TOPICS), inclusive_of_start=False
    )
    for notification in notifications:
        domain_event = app.mapper.to_domain_event(notification)
        assert isinstance(domain_event, Meter.Created | Meter.DefinitionChanged)
        found[domain_event.originator_id] = definition_of(domain_event, found)
    return list(found.values())


def definition_of(
    domain_event: Meter.Created | Meter.DefinitionChanged, known: Mapping[UUID, MeterDefinition]
) -> MeterDefinition:
    """The definition a meter has after ``domain_event``; ``known`` holds the earlier ones."""
    if isinstance(domain_event, Meter.Created):
        business_id, meter_id = domain_event.business_id, domain_event.meter_id
    else:
        before = known[domain_event.originator_id]
        business_id, meter_id = before.business_id, before.meter_id
    spec = MeterSpec.parse(domain_event.event_name, domain_event.aggregation, domain_event.filter)
    return MeterDefinition(domain_event.originator_id, business_id, meter_id, spec.to_wire())


def tally_history(
    events: Iterable[UsageEvent.Recorded],
    definitions: Sequence[MeterDefinition],
    voided: Collection[UUID] = frozenset(),
) -> Tallies:
    """Each meter's hourly tallies over ``events`` but ``voided``; memory follows buckets."""
    wanted: dict[tuple[str, str], list[tuple[MeterKey, MeterSpec]]] = {}
    result: Tallies = {}
    for d in definitions:
        raw = d.definition
        spec = MeterSpec.parse(raw["event_name"], raw["aggregation"], raw["filter"])
        meter_key = (d.business_id, d.meter_id)
        wanted.setdefault((d.business_id, spec.event_name), []).append((meter_key, spec))
        result[meter_key] = {}
    chunk: dict[tuple[str, str, str, datetime], list[Any]] = {}
    pending = 0
    for e in events:
        if (e.business_id, e.event_name) not in wanted or e.originator_id in voided:
            continue
        bucket = (e.business_id, e.event_name, e.customer_id, hour_of(e.timestamp))
        chunk.setdefault(bucket, []).append((e.timestamp, e.event_id, e.event_name, e.metadata))
        pending += 1
        if pending >= 10_000:
            _fold_into(chunk, wanted, result)
            chunk, pending = {}, 0
    _fold_into(chunk, wanted, result)
    return result


def merge_tallies(
    parts: Iterable[Tallies],
) -> Tallies:
    """Tallies of disjoint parts of the log, merged (merging is associative and commutative)."""
    merged: Tallies = {}
    for part in parts:
        for meter_key, buckets in part.items():
            into = merged.setdefault(meter_key, {})
            for bucket, tally in buckets.items():
                before = into.get(bucket)
                into[bucket] = tally if before is None else before.merge(tally)
    return merged


class UsageProjection:
    """Keeps every meter's hourly tallies up to date with the log."""

    name = "usage"

    def __init__(
        self, view: UsageStore, history: History, application_name: str = "ledger"
    ) -> None:
        self._view = view
        self._history = history
        self._application_name = application_name
        self._position: int | None = None  # the view's position as this process last knew it
        self._by_id: dict[UUID, MeterDefinition] = {}
        # business -> event name -> [(meter_id, spec)]; read from the view by the
        # first batch (see process)
        self._specs: dict[str, dict[str, list[tuple[str, MeterSpec]]]] = {}

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

    def _reload(self) -> None:
        """Forget what this process knew; read the meters' definitions from the view."""
        self._by_id.clear()
        self._specs.clear()
        for definition in self._view.definitions():
            self._learn(definition)

    def process(
        self,
        events: Sequence[DomainEvent],
        tracking: Tracking,
        after: int,
        positions: Sequence[int] = (),  # noqa: ARG002 - tallies need no single position
        notifications: Sequence[Notification] = (),  # noqa: ARG002
    ) -> None:
        """Apply one batch read after ``after``; refused if the view is no longer there.

        Another process may follow the same projection (two ``serve`` instances,
        say). Its batches moved the view's position and taught it meters this
        process never saw: then the definitions are read again, and the view's
        ``apply`` checks, under a lock, that its position is still ``after``.
        """
        if after != self._position:
            self._reload()
            self._position = after
        try:
            self._process(events, tracking, after)
        except BaseException:
            self._position = None  # what was learnt in memory may not have been written
            raise
        self._position = tracking.notification_id

    def _process(self, events: Sequence[DomainEvent], tracking: Tracking, after: int) -> None:
        changes = UsageChanges()
        redefined: dict[UUID, MeterDefinition] = {}
        usage: list[UsageEvent.Recorded] = []
        voids: list[UsageEvent.Voided] = []
        for domain_event in events:
            if isinstance(domain_event, UsageEvent.Recorded):
                usage.append(domain_event)
            elif isinstance(domain_event, UsageEvent.Voided):
                voids.append(domain_event)
            elif isinstance(domain_event, Meter.Created | Meter.DefinitionChanged):
                definition = self._definition(domain_event)
                self._learn(definition)
                redefined[domain_event.originator_id] = definition
        # Meters (re)defined in this batch are measured afresh below, not added to.
        skip = {(d.business_id, d.meter_id) for d in redefined.values()}
        self._add(usage, skip, changes.added)
        if voids:
            changes.recounted = self._recount(voids, skip, tracking.notification_id)
            for bucket in changes.recounted:
                changes.added.pop(bucket, None)  # the recount has this batch's events
        changes.definitions.extend(redefined.values())
        if redefined:
            changes.replaced = self._measure_afresh(
                list(redefined.values()), tracking.notification_id
            )
        self._view.apply(changes, tracking, after)

    def _definition(self, domain_event: Meter.Created | Meter.DefinitionChanged) -> MeterDefinition:
        return definition_of(domain_event, self._by_id)

    def restore(
        self,
        definitions: Sequence[MeterDefinition],
        tallies: Tallies,
        position: int,
    ) -> None:
        """Write a rebuilt state (e.g. tallied in parallel) as of log ``position``."""
        for definition in definitions:
            self._learn(definition)
        changes = UsageChanges(definitions=list(definitions), replaced=tallies)
        self._view.apply(changes, Tracking(self._application_name, position), 0)
        self._position = position

    def _add(
        self,
        usage: Sequence[UsageEvent.Recorded],
        skip: set[MeterKey],
        added: dict[BucketKey, Tally],
    ) -> None:
        # Grouped by (business, name, customer, year, month, day, hour): plain ints are
        # much cheaper per event than building each event's hour as a datetime.
        groups: dict[tuple[str, str, str, int, int, int, int], list[Any]] = {}
        specs = self._specs
        for e in usage:
            names = specs.get(e.business_id)
            if names is None or e.event_name not in names:
                continue
            at = e.timestamp
            key = (e.business_id, e.event_name, e.customer_id, at.year, at.month, at.day, at.hour)
            record = (at, e.event_id, e.event_name, e.metadata)
            group = groups.get(key)
            if group is None:
                groups[key] = [record]
            else:
                group.append(record)
        for (business_id, event_name, customer_id, y, m, d, h), records in groups.items():
            hour = datetime(y, m, d, h, tzinfo=UTC)
            for meter_id, spec in specs[business_id][event_name]:
                if (business_id, meter_id) in skip:
                    continue
                tally = spec.tally(records)
                if tally.count:
                    bucket = (business_id, meter_id, customer_id, hour)
                    before = added.get(bucket)
                    added[bucket] = tally if before is None else before.merge(tally)

    def _measure_afresh(self, definitions: list[MeterDefinition], stop: int) -> Tallies:
        """Each meter's buckets over the whole log up to ``stop``, in one pass."""
        return tally_history(self._history(0, stop), definitions, self._history.voided(stop))

    def _recount(
        self, voids: Sequence[UsageEvent.Voided], skip: set[MeterKey], stop: int
    ) -> dict[BucketKey, Tally]:
        """Each bucket a void touches, tallied again from what counts at ``stop``."""
        hours: dict[HourKey, list[tuple[str, MeterSpec]]] = {}
        for v in voids:
            meters = [
                (meter_id, spec)
                for meter_id, spec in self._specs.get(v.business_id, {}).get(v.event_name, [])
                if (v.business_id, meter_id) not in skip
            ]
            if meters:
                key = (v.business_id, v.event_name, v.customer_id, hour_of(v.event_timestamp))
                hours[key] = meters
        if not hours:
            return {}
        counted = self._view.counted_in_hours(list(hours), stop, self._application_name)
        recounted: dict[BucketKey, Tally] = {}
        for key, meters in hours.items():
            business_id, _, customer_id, hour = key
            records = [(e.timestamp, e.event_id, e.event_name, e.metadata) for e in counted[key]]
            for meter_id, spec in meters:
                recounted[business_id, meter_id, customer_id, hour] = spec.tally(records)
        return recounted


def _fold_into(
    chunk: dict[tuple[str, str, str, datetime], list[Any]],
    wanted: dict[tuple[str, str], list[tuple[MeterKey, MeterSpec]]],
    result: Tallies,
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
    if end > LATEST:
        raise InvalidParameterError(f"end must not be after {LATEST.isoformat()}")
    bounds = _windows(start, end, window)
    tallies = [Tally() for _ in bounds]
    first_hour = hour_of(start) if hour_of(start) == start else hour_of(start) + HOUR
    last_hour = hour_of(end)
    pieces: list[tuple[datetime, datetime]] = []
    # No whole hour inside (first_hour > last_hour) means start and end share one
    # hour, which no window boundary splits; otherwise the two partial hours lie on
    # either side of the whole ones (possibly none) and each is in one window.
    if first_hour <= last_hour:
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

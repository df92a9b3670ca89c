"""The usage projection: each meter's tally per customer per UTC hour (``application.tally``).

A meter measures every matching event in the log, including those recorded
before it was defined. How the projection follows the log, batch by batch:

- usage events of the batch are tallied for the meters known before the batch
  and merged into their buckets;
- a meter created or redefined in the batch is measured afresh from the usage
  log (every event of its name up to the batch's last position; its old
  buckets are replaced), so the incremental step skips it for this batch;
- a void makes its event's hour stale for every meter of its name: max, min,
  last and distinct values cannot be subtracted, so those buckets are tallied
  again from the events that count in that hour at the batch's last position,
  read from the usage log (which records each event's and each void's position);
- the buckets, the meters' definitions and the log position are written in one
  transaction (invariant 7), and only if the view is still where the batch was
  read: two processes following it never count an event twice.

The usage log must have reached the batch before it is read: the projector
applies it first; a usage log kept by another process is waited for.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Tracking

from application.ports import TrackedView
from application.projection import Batch
from application.tally import (
    Bucket,
    BucketKey,
    HourKey,
    MeterDefinition,
    MeterKey,
    Tallies,
    definition_of,
    hour_of,
    tally_history,
)
from application.usage_log import UsageLogStore
from domain.meter import Meter, MeterSpec, UsageRecord
from domain.usage import UsageEvent

LOG_WAIT_SECONDS = 10.0  # how long a recount waits for the usage log to reach its batch


class LogBehindError(Exception):
    """The usage log has not reached the position a recount must be read at (yet)."""


@dataclass(slots=True)
class UsageChanges:
    """What one batch changes, written with its tracking position in one transaction."""

    definitions: list[MeterDefinition] = field(default_factory=list)
    replaced: Tallies = field(default_factory=dict)
    added: dict[BucketKey, Bucket] = field(default_factory=dict)  # merged into the stored
    # Tallied again after a void: the tally replaces the stored one; changed_at only grows.
    recounted: dict[BucketKey, Bucket] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HourBucket:
    customer_id: str
    hour: datetime
    bucket: Bucket


@dataclass(frozen=True, slots=True)
class TallySnapshot:
    """Some meters' buckets and the definitions they were tallied by, at ``position``."""

    position: int
    definitions: dict[str, dict[str, Any]]  # meter_id -> MeterSpec.to_wire()
    buckets: dict[str, list[HourBucket]]  # meter_id -> buckets, by hour


class UsageStore(TrackedView, Protocol):
    def definitions(self) -> list[MeterDefinition]: ...

    def apply(self, changes: UsageChanges, tracking: Tracking, after: int) -> None:
        """Write ``changes`` and ``tracking`` in one transaction, if the view is at ``after``.

        Raises ``PositionMovedError`` (writing nothing) when another process
        moved the view since; concurrent calls are serialised.
        """
        ...

    def snapshot(
        self,
        business_id: str,
        meter_ids: Collection[str],
        customer_id: str | None,
        start: datetime,
        end: datetime,
        application_name: str = "ledger",
    ) -> TallySnapshot:
        """The buckets of the whole hours in ``[start, end)`` and the view's position,
        read in one snapshot."""
        ...

    def changed_since(
        self, business_id: str, customer_id: str, after: int, before: datetime
    ) -> list[tuple[str, datetime]]:
        """(meter_id, hour) of the customer's buckets of hours before ``before`` that
        changed after log position ``after``."""
        ...

    def all_buckets(self) -> Iterator[tuple[BucketKey, Bucket]]:
        """Every bucket in key order: for comparing a rebuild with the live rows."""
        ...


class UsageProjection:
    """Keeps every meter's hourly buckets up to date with the log."""

    name = "usage"

    def __init__(
        self, view: UsageStore, log: UsageLogStore, application_name: str = "ledger"
    ) -> None:
        self._view = view
        self._log = log
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
            for meters in self._specs[old.business_id].values():
                meters[:] = [(m, s) for m, s in meters if m != old.meter_id]
        self._by_id[definition.aggregate_id] = definition
        spec = definition.spec
        names = self._specs.setdefault(definition.business_id, {})
        names.setdefault(spec.event_name, []).append((definition.meter_id, spec))

    def _reload(self) -> None:
        """Forget what this process knew; read the meters' definitions from the view."""
        self._by_id.clear()
        self._specs.clear()
        for definition in self._view.definitions():
            self._learn(definition)

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        """Apply one batch read after ``after``; refused if the view is no longer there.

        Another process may follow the same projection. Its batches moved the
        view's position and taught it meters this process never saw: then the
        definitions are read again, and the view's ``apply`` checks, under a
        lock, that its position is still ``after``.
        """
        if after != self._position:
            self._reload()
            self._position = after
        try:
            self._process(batch, tracking, after)
        except BaseException:
            self._position = None  # what was learnt in memory may not have been written
            raise
        self._position = tracking.notification_id

    def _process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        changes = UsageChanges()
        redefined: dict[UUID, MeterDefinition] = {}
        usage: list[tuple[int, UsageEvent.Recorded]] = batch.of(UsageEvent.Recorded)
        voids: list[tuple[int, UsageEvent.Voided]] = batch.of(UsageEvent.Voided)
        for _, domain_event in batch.of(Meter.Created, Meter.DefinitionChanged):
            definition = definition_of(domain_event, self._by_id)
            self._learn(definition)
            redefined[domain_event.originator_id] = definition
        # Meters (re)defined in this batch are measured afresh below, not added to.
        skip = {(d.business_id, d.meter_id) for d in redefined.values()}
        stop = tracking.notification_id
        self._add(usage, skip, changes.added)
        if voids:
            changes.recounted = self._recount(voids, skip, stop)
            for key, bucket in changes.recounted.items():
                added = changes.added.pop(key, None)  # the recount has this batch's events
                if added is not None:
                    changed = max(bucket.changed_at, added.changed_at)
                    changes.recounted[key] = Bucket(bucket.tally, changed)
        changes.definitions.extend(redefined.values())
        if redefined:
            changes.replaced = self._measure_afresh(list(redefined.values()), stop)
        self._view.apply(changes, tracking, after)

    def restore(
        self, definitions: Sequence[MeterDefinition], tallies: Tallies, position: int
    ) -> None:
        """Write a rebuilt state (e.g. tallied in parallel) as of log ``position``."""
        for definition in definitions:
            self._learn(definition)
        changes = UsageChanges(definitions=list(definitions), replaced=tallies)
        self._view.apply(changes, Tracking(self._application_name, position), 0)
        self._position = position

    def _add(
        self,
        usage: Sequence[tuple[int, UsageEvent.Recorded]],
        skip: set[MeterKey],
        added: dict[BucketKey, Bucket],
    ) -> None:
        # Grouped by (business, name, customer, year, month, day, hour): plain ints are
        # much cheaper per event than building each event's hour as a datetime.
        groups: dict[tuple[str, str, str, int, int, int, int], tuple[list[UsageRecord], int]] = {}
        specs = self._specs
        for position, e in usage:
            names = specs.get(e.business_id)
            if names is None or e.event_name not in names:
                continue
            at = e.timestamp
            key = (e.business_id, e.event_name, e.customer_id, at.year, at.month, at.day, at.hour)
            record = (at, e.event_id, e.event_name, e.metadata)
            group = groups.get(key)
            if group is None:
                groups[key] = ([record], position)
            else:
                group[0].append(record)
                groups[key] = (group[0], position)  # log order: the last is the latest
        for (business_id, event_name, customer_id, y, m, d, h), (
            records,
            changed,
        ) in groups.items():
            hour = datetime(y, m, d, h, tzinfo=UTC)
            for meter_id, spec in specs[business_id][event_name]:
                if (business_id, meter_id) in skip:
                    continue
                bucket = Bucket(spec.tally(records), changed)
                bucket_key = (business_id, meter_id, customer_id, hour)
                before = added.get(bucket_key)
                added[bucket_key] = bucket if before is None else before.merge(bucket)

    def _measure_afresh(self, definitions: list[MeterDefinition], stop: int) -> Tallies:
        """Each meter's buckets over every event of its name up to ``stop``."""
        self._wait_for_log(stop)
        tallies: Tallies = {}
        for definition in definitions:
            name = definition.spec.event_name
            history = self._log.name_history(definition.business_id, name, stop)
            tallies.update(tally_history(history, [definition]))
        return tallies

    def _recount(
        self, voids: Sequence[tuple[int, UsageEvent.Voided]], skip: set[MeterKey], stop: int
    ) -> dict[BucketKey, Bucket]:
        """Each bucket a void touches, tallied again from what counts at ``stop``."""
        hours: dict[HourKey, tuple[list[tuple[str, MeterSpec]], int]] = {}
        for position, v in voids:
            meters = [
                (meter_id, spec)
                for meter_id, spec in self._specs.get(v.business_id, {}).get(v.event_name, [])
                if (v.business_id, meter_id) not in skip
            ]
            if meters:
                key = (v.business_id, v.event_name, v.customer_id, hour_of(v.event_timestamp))
                hours[key] = (meters, position)  # log order: the last is the latest
        if not hours:
            return {}
        counted = self._counted_in_hours(list(hours), stop)
        recounted: dict[BucketKey, Bucket] = {}
        for key, (meters, changed) in hours.items():
            business_id, _, customer_id, hour = key
            for meter_id, spec in meters:
                bucket = Bucket(spec.tally(counted[key]), changed)
                recounted[business_id, meter_id, customer_id, hour] = bucket
        return recounted

    def _counted_in_hours(
        self, hours: Collection[HourKey], stop: int
    ) -> dict[HourKey, list[UsageRecord]]:
        deadline = time.monotonic() + LOG_WAIT_SECONDS
        while (found := self._log.counted_in_hours(hours, stop, self._application_name)) is None:
            self._pause(deadline, stop)
        return found

    def _wait_for_log(self, stop: int) -> None:
        deadline = time.monotonic() + LOG_WAIT_SECONDS
        while (self._log.max_tracking_id(self._application_name) or 0) < stop:
            self._pause(deadline, stop)

    def _pause(self, deadline: float, stop: int) -> None:
        if time.monotonic() > deadline:
            raise LogBehindError(
                f"the usage log has not reached position {stop} in {LOG_WAIT_SECONDS:g} s; "
                "the usage projection reads it to measure a meter or recount an hour after "
                "a void (is the usage log projection running?)"
            )
        time.sleep(0.02)

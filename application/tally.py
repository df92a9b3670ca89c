"""Tallying usage into hourly buckets: the arithmetic the usage projection keeps.

A bucket is one meter's ``Tally`` of one customer's events in one UTC hour,
with ``changed_at``: the last log position at which an event of the meter's
name in that hour was recorded or voided. A bucket exists for every hour that
has such an event, even one the meter's filter leaves out (its tally is then
empty): so a fold at an earlier position knows which hours it may take from the
buckets as they are (``changed_at`` at or before it) and which it must read
from the usage log. ``changed_at`` depends on the log alone, never on how it
was cut into batches, so a rebuild, sequential or parallel, writes the same.

``tally_history`` tallies a stream of events (the whole log, for a rebuild, or
one name's events from the usage log, for a meter defined later); buckets of
disjoint parts merge (``Bucket.merge`` is associative and commutative).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.utils import get_topic

from domain.meter import Meter, MeterSpec, Tally, UsageRecord
from domain.usage import UsageEvent

USAGE_TOPIC = get_topic(UsageEvent.Recorded)
VOID_TOPIC = get_topic(UsageEvent.Voided)
METER_TOPICS = (get_topic(Meter.Created), get_topic(Meter.DefinitionChanged))
CHUNK = 10_000  # records grouped before they are tallied: bounds memory

MeterKey = tuple[str, str]  # (business_id, meter_id)
BucketKey = tuple[str, str, str, datetime]  # (business_id, meter_id, customer_id, hour)
HourKey = tuple[str, str, str, datetime]  # (business_id, event_name, customer_id, hour)


@dataclass(frozen=True, slots=True)
class Bucket:
    tally: Tally
    changed_at: int

    def merge(self, other: Bucket) -> Bucket:
        return Bucket(self.tally.merge(other.tally), max(self.changed_at, other.changed_at))


Tallies = dict[MeterKey, dict[tuple[str, datetime], Bucket]]  # per meter: (customer, hour)


@dataclass(frozen=True, slots=True)
class MeterDefinition:
    aggregate_id: UUID
    business_id: str
    meter_id: str
    definition: dict[str, Any]  # MeterSpec.to_wire()

    @property
    def spec(self) -> MeterSpec:
        raw = self.definition
        return MeterSpec.parse(raw["event_name"], raw["aggregation"], raw["filter"])


@dataclass(frozen=True, slots=True)
class Recorded:
    """A usage event as tallying needs it: where it is in the log and when it was voided."""

    position: int
    business_id: str
    customer_id: str
    record: UsageRecord  # (timestamp, event_id, event_name, metadata)
    voided_at: int | None = None  # the void's position, if it counts


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def tally_history(events: Iterable[Recorded], definitions: Sequence[MeterDefinition]) -> Tallies:
    """Each meter's buckets over ``events`` (a voided one counts for no tally, but its
    position and its void's mark the hour changed); memory follows the buckets."""
    wanted: dict[tuple[str, str], list[tuple[MeterKey, MeterSpec]]] = {}
    result: Tallies = {}
    for d in definitions:
        spec = d.spec
        meter_key = (d.business_id, d.meter_id)
        wanted.setdefault((d.business_id, spec.event_name), []).append((meter_key, spec))
        result[meter_key] = {}
    chunk: dict[HourKey, tuple[list[UsageRecord], int]] = {}
    pending = 0
    for e in events:
        name = e.record[2]
        if (e.business_id, name) not in wanted:
            continue
        key = (e.business_id, name, e.customer_id, hour_of(e.record[0]))
        records, changed = chunk.get(key, ([], 0))
        if e.voided_at is None:
            records.append(e.record)
        chunk[key] = (records, max(changed, e.position, e.voided_at or 0))
        pending += 1
        if pending >= CHUNK:
            _fold_into(chunk, wanted, result)
            chunk, pending = {}, 0
    _fold_into(chunk, wanted, result)
    return result


def _fold_into(
    chunk: Mapping[HourKey, tuple[list[UsageRecord], int]],
    wanted: Mapping[tuple[str, str], list[tuple[MeterKey, MeterSpec]]],
    result: Tallies,
) -> None:
    for (business_id, event_name, customer_id, hour), (records, changed) in chunk.items():
        for meter_key, spec in wanted[(business_id, event_name)]:
            bucket = Bucket(spec.tally(records), changed)
            buckets = result[meter_key]
            before = buckets.get((customer_id, hour))
            buckets[customer_id, hour] = bucket if before is None else before.merge(bucket)


def merge_tallies(parts: Iterable[Tallies]) -> Tallies:
    """Tallies of disjoint parts of the log, merged."""
    merged: Tallies = {}
    for part in parts:
        for meter_key, buckets in part.items():
            into = merged.setdefault(meter_key, {})
            for bucket_key, bucket in buckets.items():
                before = into.get(bucket_key)
                into[bucket_key] = bucket if before is None else before.merge(bucket)
    return merged


class LogHistory:
    """The usage events of ``app``'s log between two positions, in batches (for a rebuild).

    Each batch is "the next ``batch_size`` after this id", and the topic and the
    upper bound are checked here: with an upper bound or a topic in the query,
    PostgreSQL (its statistics stale after a bulk load) chose to sort the whole
    remaining range for every batch, which made a scan quadratic.
    """

    def __init__(self, app: Application[Any], batch_size: int = 5000) -> None:
        self._app = app
        self._batch_size = batch_size

    def __call__(
        self, after: int, stop: int, voided: Mapping[UUID, int] | None = None
    ) -> Iterator[Recorded]:
        """The usage events recorded after ``after`` up to ``stop``, in log order;
        ``voided`` maps an aggregate id to the position of its void."""
        app, batch_size = self._app, self._batch_size
        to_domain_event = app.mapper.to_domain_event
        voided = voided or {}
        while after < stop:
            notifications = app.recorder.select_notifications(
                start=after, limit=batch_size, inclusive_of_start=False
            )
            for notification in notifications:
                if notification.id > stop:
                    return
                if notification.topic == USAGE_TOPIC:
                    e = to_domain_event(notification)
                    assert isinstance(e, UsageEvent.Recorded)
                    record = (e.timestamp, e.event_id, e.event_name, e.metadata)
                    void = voided.get(e.originator_id)
                    yield Recorded(notification.id, e.business_id, e.customer_id, record, void)
            if len(notifications) < batch_size:
                return
            after = notifications[-1].id

    def voided(self, stop: int) -> dict[UUID, int]:
        """The position of the void of each usage event voided up to ``stop``.

        Voids are few, like meter events: one query with no page limit reads them all.
        """
        notifications = self._app.recorder.select_notifications(
            start=0, limit=2**62, stop=stop, topics=[VOID_TOPIC], inclusive_of_start=False
        )
        return {
            i if isinstance(i, UUID) else UUID(str(i)): n.id
            for n in notifications
            for i in (n.originator_id,)
        }

    def definitions(self, stop: int) -> list[MeterDefinition]:
        """Every meter's definition as it stands at log position ``stop``."""
        found: dict[UUID, MeterDefinition] = {}
        notifications = self._app.recorder.select_notifications(
            start=0, limit=2**62, stop=stop, topics=list(METER_TOPICS), inclusive_of_start=False
        )
        for notification in notifications:
            domain_event = self._app.mapper.to_domain_event(notification)
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

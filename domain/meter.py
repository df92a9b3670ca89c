"""Meters: which usage events count, and how they add up to a billable quantity.

A meter measures the events named ``event_name`` that pass its filter (see
``domain.filters``) and aggregates them:

- ``count``: the number of such events. It takes no ``key``; one is refused.
- ``sum``, ``max``, ``min``, ``last``: the number under ``key``. An event whose
  key is missing or holds a string or boolean does not count (never an error).
  ``last`` is the value of the event with the greatest ``(timestamp, event_id)``
  (then the greater value, so merging stays commutative), whatever the order in
  which events arrive.
- ``unique_count``: how many distinct values ``key`` takes. Any scalar counts;
  values are compared by kind and value: ``1`` and ``Decimal("1.0")`` are one
  value, ``"1"``, ``1`` and ``True`` are three.

A meter that counted no event measures 0, whatever its aggregation (as Dodo
bills no usage as 0). Arithmetic is Decimal, never float, and never rounds:
sums run in a 1,000-digit context that traps ``Inexact``; metadata numbers (at
most 40 digits within 1e±40) need fewer than 200. Results are canonical, one
spelling per value: no trailing fractional zeros, whole numbers with exponent 0
(``1.50 + 2`` is ``3.5``; ``1E+3`` is ``1000``).

A ``Tally`` is a partial aggregate of some events; tallies merge associatively
and commutatively (``Tally()`` is the identity), so a projection can keep one
per bucket and merge buckets for any range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from enum import StrEnum
from typing import Any, TypeVar, cast
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import MeterDefinitionLockedError
from domain.filters import (
    NUMBER_TYPES,
    Filter,
    check_key,
    compile_filter,
    fields_of,
    parse_choice,
    parse_filter,
    refuse,
)
from domain.metadata import MetadataValue
from domain.text import is_storable

METER_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/meter")
MAX_NAME_LENGTH = 255
MAX_UNIT_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 1000

_EXACT = Context(prec=1000, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_ZERO = Decimal(0)
_AGGREGATION_FIELDS = frozenset({"type", "key"})

UsageRecord = tuple[datetime, str, str, Mapping[str, MetadataValue]]
"""One usage event as a meter sees it: (timestamp, event_id, event_name, metadata)."""
Measurement = int | Decimal | str
"""What one event contributes: a number, or the canonical text of a distinct value."""
Measure = Callable[[str, Mapping[str, MetadataValue]], Measurement | None]
_Number = int | Decimal
_T = TypeVar("_T", Decimal, "Last")


class AggregationKind(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    MIN = "min"
    LAST = "last"
    UNIQUE_COUNT = "unique_count"

    def needs_key(self) -> bool:
        return self is not AggregationKind.COUNT

    def counts_distinct(self) -> bool:
        return self is AggregationKind.UNIQUE_COUNT

    def is_order_free(self) -> bool:
        return self is not AggregationKind.LAST

    def is_additive(self) -> bool:
        """The value of a union of events is the sum of its parts' values."""
        return self in (AggregationKind.COUNT, AggregationKind.SUM)


@dataclass(frozen=True, slots=True)
class Aggregation:
    kind: AggregationKind
    key: str | None = None

    def __post_init__(self) -> None:
        if self.key is None and self.kind.needs_key():
            refuse("aggregation.key", f"{self.kind} needs the metadata key it aggregates")
        if self.key is not None and not self.kind.needs_key():
            refuse("aggregation.key", f"{self.kind} counts events and takes no key; remove it")

    @classmethod
    def parse(cls, raw: object) -> Aggregation:
        fields = fields_of(raw, "aggregation", _AGGREGATION_FIELDS)
        kind = parse_choice(AggregationKind, fields.get("type"), "aggregation.type")
        key = fields.get("key")
        if key is not None and kind.needs_key():
            key = check_key(key, "aggregation.key")
        return cls(kind, cast("str | None", key))

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.kind.value, "key": self.key}


def canonical_number(number: _Number) -> Decimal:
    """``number`` spelled one way per value: ``1``, ``1.0`` and ``1E0`` all become ``1``."""
    if isinstance(number, int):
        return Decimal(number)
    if number == number.to_integral_value():
        return Decimal(int(number))
    return number.normalize(_EXACT)


def canonical_value(value: MetadataValue) -> str:
    """A distinct value as JSON-safe text: ``n:1``, ``s:abc``, ``b:true``."""
    if isinstance(value, str):
        return "s:" + value
    if isinstance(value, bool):
        return "b:true" if value else "b:false"
    if isinstance(value, int):
        return f"n:{value}"
    return "n:" + format(canonical_number(value), "f")


@dataclass(frozen=True, slots=True, order=True)
class Last:
    """The latest measured event; ordered by ``(timestamp, event_id, value)``."""

    timestamp: datetime
    event_id: str
    value: Decimal


@dataclass(frozen=True, slots=True)
class Tally:
    """A partial aggregate: everything every aggregation needs, of some events."""

    count: int = 0
    total: Decimal = _ZERO
    maximum: Decimal | None = None
    minimum: Decimal | None = None
    last: Last | None = None
    distinct: frozenset[str] = frozenset()

    @classmethod
    def of(cls, measurement: Measurement, timestamp: datetime, event_id: str) -> Tally:
        """The tally of one event that measured ``measurement``."""
        if isinstance(measurement, str):
            return cls(1, distinct=frozenset((measurement,)))
        number = canonical_number(measurement)
        return cls(1, number, number, number, Last(timestamp, event_id, number))

    def add(self, measurement: Measurement, timestamp: datetime, event_id: str) -> Tally:
        """This tally and one more event: ``self.merge(Tally.of(...))``, with less copying."""
        if isinstance(measurement, str):
            seen = self.distinct
            distinct = seen if measurement in seen else seen | {measurement}
            return Tally(
                self.count + 1, self.total, self.maximum, self.minimum, self.last, distinct
            )
        if not self.count:
            return Tally.of(measurement, timestamp, event_id)
        number = canonical_number(measurement)
        return Tally(
            self.count + 1,
            canonical_number(_EXACT.add(self.total, number)),
            _pick(max, self.maximum, number),
            _pick(min, self.minimum, number),
            _pick(max, self.last, Last(timestamp, event_id, number)),
            self.distinct,
        )

    def merge(self, other: Tally) -> Tally:
        if not other.count:
            return self
        if not self.count:
            return other
        return Tally(
            self.count + other.count,
            canonical_number(_EXACT.add(self.total, other.total)),
            _pick(max, self.maximum, other.maximum),
            _pick(min, self.minimum, other.minimum),
            _pick(max, self.last, other.last),
            self.distinct | other.distinct,
        )

    def result(self, aggregation: Aggregation) -> Decimal:
        """The measured quantity; 0 when no event counted."""
        match aggregation.kind:
            case AggregationKind.COUNT:
                return Decimal(self.count)
            case AggregationKind.UNIQUE_COUNT:
                return Decimal(len(self.distinct))
            case AggregationKind.SUM:
                return self.total
            case AggregationKind.MAX:
                return _ZERO if self.maximum is None else self.maximum
            case AggregationKind.MIN:
                return _ZERO if self.minimum is None else self.minimum
        return _ZERO if self.last is None else self.last.value


def _pick(choose: Callable[[_T, _T], _T], one: _T | None, other: _T | None) -> _T | None:
    if one is None or other is None:
        return other if one is None else one
    return choose(one, other)


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """A meter's definition, compiled once into a plain function per event."""

    event_name: str
    aggregation: Aggregation
    filter: Filter | None = None
    _measure: Measure = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_measure", _compile(self))

    @classmethod
    def parse(cls, event_name: str, aggregation: object, filter_: object) -> MeterSpec:
        """The spec from wire structures; ``InvalidMeterError`` if they are malformed."""
        _check_text("event_name", event_name, MAX_NAME_LENGTH)
        return cls(event_name, Aggregation.parse(aggregation), parse_filter(filter_))

    def to_wire(self) -> dict[str, Any]:
        return {
            "event_name": self.event_name,
            "aggregation": self.aggregation.to_wire(),
            "filter": None if self.filter is None else self.filter.to_wire(),
        }

    def measure(self, event_name: str, metadata: Mapping[str, MetadataValue]) -> Measurement | None:
        """What the event contributes (1 for ``count``); None if it does not count."""
        return self._measure(event_name, metadata)

    def tally(self, events: Iterable[UsageRecord]) -> Tally:
        if self.aggregation.kind.counts_distinct():
            return _tally_distinct(cast("Callable[..., str | None]", self._measure), events)
        return _tally_numbers(cast("Callable[..., _Number | None]", self._measure), events)


def fold(spec: MeterSpec, events: Iterable[UsageRecord]) -> Decimal:
    """The quantity ``spec`` measures over ``events``, in any order."""
    return spec.tally(events).result(spec.aggregation)


def _compile(spec: MeterSpec) -> Measure:
    wanted = spec.event_name
    passes = None if spec.filter is None else compile_filter(spec.filter)
    value_of = _value_reader(spec.aggregation)

    def measure(event_name: str, metadata: Mapping[str, MetadataValue]) -> Measurement | None:
        if event_name != wanted or (passes is not None and not passes(metadata)):
            return None
        return value_of(metadata)

    return measure


def _value_reader(
    aggregation: Aggregation,
) -> Callable[[Mapping[str, MetadataValue]], Measurement | None]:
    key = aggregation.key
    if key is None:
        return lambda _: 1
    if aggregation.kind.counts_distinct():
        return lambda m: None if (x := m.get(key)) is None else canonical_value(x)
    return lambda m: x if type(x := m.get(key)) in NUMBER_TYPES else None


def _tally_numbers(measure: Callable[..., _Number | None], events: Iterable[UsageRecord]) -> Tally:
    count, total, add = 0, cast("_Number", 0), _EXACT.add
    high = low = last_value = cast("_Number", 0)
    last_at, last_id = cast("datetime", None), ""
    for at, event_id, event_name, metadata in events:
        value = measure(event_name, metadata)
        if value is None:
            continue
        if not count:
            high = low = last_value = value
            last_at, last_id = at, event_id
        elif value > high:
            high = value
        elif value < low:
            low = value
        if at > last_at or (
            at == last_at and (event_id > last_id or (event_id == last_id and value > last_value))
        ):
            last_at, last_id, last_value = at, event_id, value
        count += 1
        # Python ints add exactly and fast; Decimals go through the exact context.
        total = total + value if type(total) is int and type(value) is int else add(total, value)
    if not count:
        return Tally()
    last = Last(last_at, last_id, canonical_number(last_value))
    high, low = canonical_number(high), canonical_number(low)
    return Tally(count, canonical_number(total), high, low, last)


def _tally_distinct(measure: Callable[..., str | None], events: Iterable[UsageRecord]) -> Tally:
    count, seen = 0, set()
    for _, _, event_name, metadata in events:
        value = measure(event_name, metadata)
        if value is not None:
            count += 1
            seen.add(value)
    return Tally(count, distinct=frozenset(seen))


def meter_aggregate_id(business_id: str, meter_id: str) -> UUID:
    """The aggregate id of ``meter_id`` within ``business_id``."""
    return uuid5(METER_NAMESPACE, f"{business_id}\x1f{meter_id}")


def check_meter_details(name: str, description: str | None, measurement_unit: str) -> None:
    _check_text("name", name, MAX_NAME_LENGTH)
    _check_text("measurement_unit", measurement_unit, MAX_UNIT_LENGTH)
    if description is None:
        return
    if not isinstance(description, str):
        refuse("description", "must be a string or null")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        refuse("description", f"is longer than {MAX_DESCRIPTION_LENGTH} characters")
    if not is_storable(description):
        refuse("description", "must not contain the NUL character (U+0000)")


def _check_text(path: str, text: object, limit: int) -> None:
    if not isinstance(text, str) or not text.strip() or len(text) > limit:
        refuse(path, f"must be 1 to {limit} characters, not blank")
    if not is_storable(text):
        refuse(path, "must not contain the NUL character (U+0000)")


class Meter(Aggregate):
    """A business's meter. Its definition is stored as plain wire structures."""

    class Created(Aggregate.Created):
        business_id: str
        meter_id: str
        name: str
        description: str | None
        event_name: str
        measurement_unit: str
        aggregation: dict[str, Any]
        filter: dict[str, Any] | None
        created_at: datetime

    class Updated(Aggregate.Event):
        name: str
        description: str | None
        measurement_unit: str
        updated_at: datetime

    class DefinitionChanged(Aggregate.Event):
        event_name: str
        aggregation: dict[str, Any]
        filter: dict[str, Any] | None
        updated_at: datetime

    class Archived(Aggregate.Event):
        archived_at: datetime

    class Unarchived(Aggregate.Event):
        unarchived_at: datetime

    class DefinitionLocked(Aggregate.Event):
        """Billing has used the meter; ``reason`` names what (e.g. an invoice)."""

        reason: str
        locked_at: datetime

    class PricedPerValue(Aggregate.Event):
        """A product prices the meter per value of a metadata key (``product_id``): from
        now on its values must add up, so its aggregation stays count or sum."""

        product_id: str
        priced_at: datetime

    @event(Created)
    def __init__(
        self,
        business_id: str,
        meter_id: str,
        name: str,
        description: str | None,
        event_name: str,
        measurement_unit: str,
        aggregation: dict[str, Any],
        filter: dict[str, Any] | None,
        created_at: datetime,
    ) -> None:
        self.business_id = business_id
        self.meter_id = meter_id
        self.name = name
        self.description = description
        self.event_name = event_name
        self.measurement_unit = measurement_unit
        self.aggregation = aggregation
        self.filter = filter
        self.created_at = created_at
        self.updated_at = created_at
        self.archived_at: datetime | None = None
        self.locked_by: str | None = None
        self.priced_per_value_by: str | None = None

    @classmethod
    def define(
        cls,
        business_id: str,
        meter_id: str,
        *,
        name: str,
        description: str | None,
        measurement_unit: str,
        spec: MeterSpec,
        created_at: datetime,
    ) -> Meter:
        """A new meter; ``InvalidMeterError`` if its details are malformed."""
        check_meter_details(name, description, measurement_unit)
        wire = spec.to_wire()
        return cls(
            business_id=business_id,
            meter_id=meter_id,
            name=name,
            description=description,
            event_name=spec.event_name,
            measurement_unit=measurement_unit,
            aggregation=wire["aggregation"],
            filter=wire["filter"],
            created_at=created_at,
        )

    @staticmethod
    def create_id(business_id: str, meter_id: str) -> UUID:
        return meter_aggregate_id(business_id, meter_id)

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def spec(self) -> MeterSpec:
        """The compiled definition (compiled on each access: keep it for a batch)."""
        return MeterSpec.parse(self.event_name, self.aggregation, self.filter)

    def update(
        self, name: str, description: str | None, measurement_unit: str, at: datetime
    ) -> None:
        """Rename or redescribe the meter; no event if nothing changes."""
        check_meter_details(name, description, measurement_unit)
        if (name, description, measurement_unit) != (
            self.name,
            self.description,
            self.measurement_unit,
        ):
            self._on_updated(name, description, measurement_unit, at)

    def change_definition(self, spec: MeterSpec, at: datetime) -> None:
        """Measure something else; no event if the definition is the same.

        Refused once events have been billed against the meter (see ``lock``):
        a billed quantity must stay explainable, so a new meter is made instead.
        """
        if spec != self.spec:
            if self.locked_by is not None:
                raise MeterDefinitionLockedError(
                    f"meter {self.meter_id!r} has been billed ({self.locked_by}); its "
                    "event_name, aggregation and filter cannot change: create a new meter"
                )
            self.check_additive(spec)
            wire = spec.to_wire()
            self._on_definition_changed(spec.event_name, wire["aggregation"], wire["filter"], at)

    def check_additive(self, spec: MeterSpec) -> None:
        """A meter a product prices per value keeps an aggregation whose values add up."""
        kind = spec.aggregation.kind
        if self.priced_per_value_by is not None and not kind.is_additive():
            raise MeterDefinitionLockedError(
                f"meter {self.meter_id!r} is priced per value by product "
                f"{self.priced_per_value_by!r}; its aggregation stays count or sum, not {kind}"
            )

    def price_per_value(self, product_id: str, at: datetime) -> None:
        """Mark the meter as priced per value (once: the first product is named)."""
        if self.priced_per_value_by is None:
            self._on_priced_per_value(product_id, at)

    @event(PricedPerValue)
    def _on_priced_per_value(self, product_id: str, priced_at: datetime) -> None:
        self.priced_per_value_by = product_id
        self.updated_at = priced_at

    def lock(self, reason: str, at: datetime) -> None:
        """Freeze what the meter measures; billing calls this when it first bills it."""
        if self.locked_by is None:
            self._on_locked(reason, at)

    @event(DefinitionLocked)
    def _on_locked(self, reason: str, locked_at: datetime) -> None:
        self.locked_by = reason
        self.updated_at = locked_at

    def archive(self, at: datetime) -> None:
        """Stop metering; archiving an archived meter changes nothing."""
        if not self.is_archived:
            self._on_archived(at)

    def unarchive(self, at: datetime) -> None:
        """Meter again; unarchiving an active meter changes nothing."""
        if self.is_archived:
            self._on_unarchived(at)

    @event(Updated)
    def _on_updated(
        self, name: str, description: str | None, measurement_unit: str, updated_at: datetime
    ) -> None:
        self.name = name
        self.description = description
        self.measurement_unit = measurement_unit
        self.updated_at = updated_at

    @event(DefinitionChanged)
    def _on_definition_changed(
        self,
        event_name: str,
        aggregation: dict[str, Any],
        filter: dict[str, Any] | None,
        updated_at: datetime,
    ) -> None:
        self.event_name = event_name
        self.aggregation = aggregation
        self.filter = filter
        self.updated_at = updated_at

    @event(Archived)
    def _on_archived(self, archived_at: datetime) -> None:
        self.archived_at = archived_at
        self.updated_at = archived_at

    @event(Unarchived)
    def _on_unarchived(self, unarchived_at: datetime) -> None:
        self.archived_at = None
        self.updated_at = unarchived_at

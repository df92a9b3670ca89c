"""Why a meter measured what it did: the events it counted and the one that decided.

``explain_meters`` reads one stream of usage records (any order, any of them
possibly outside the cycle) once, a chunk at a time, so memory stays flat in
the number of events, and gives per meter:

- ``events_counted``: the events within ``[start, end)`` named as the meter's
  ``event_name`` that pass its filter and measured a value (for ``count``,
  every such event; for the others, those holding a number under the key, or
  for ``unique_count`` any value). This is the meter's own rule
  (``MeterSpec.measure``), so what is explained is what was billed.
- ``consumed``: the quantity those events measure, recomputed (``Tally``).
- ``decisive``: for ``max``, ``min`` and ``last``, the one event whose value is
  the quantity; ``None`` for the others (every counted event adds to them) and
  when nothing was counted.

Which event decides, whatever order the events come in:

- ``last``: the greatest ``(timestamp, event_id)`` (then the greater value), as
  the meter itself orders them.
- ``max``: the greatest value; among equal values, the earliest
  ``(timestamp, event_id)``: the first event that reached the maximum.
- ``min``: the least value; among equal values, the earliest
  ``(timestamp, event_id)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import islice

from domain.invoice import CHUNK
from domain.meter import AggregationKind, MeterSpec, Tally, UsageRecord, canonical_number

_Number = int | Decimal


@dataclass(frozen=True, slots=True)
class Decisive:
    """The event whose value a ``max``, ``min`` or ``last`` meter measured."""

    timestamp: datetime
    event_id: str
    value: Decimal


@dataclass(frozen=True, slots=True)
class Explanation:
    """What one meter counted in a cycle, recomputed from its events."""

    events_counted: int
    consumed: Decimal
    decisive: Decisive | None = None


Beats = Callable[[_Number, datetime, str, Decisive], bool]
"""Whether an event (value, timestamp, event_id) decides instead of the one so far."""


def _beats_max(value: _Number, at: datetime, event_id: str, best: Decisive) -> bool:
    return value > best.value or (value == best.value and (at, event_id) < _moment(best))


def _beats_min(value: _Number, at: datetime, event_id: str, best: Decisive) -> bool:
    return value < best.value or (value == best.value and (at, event_id) < _moment(best))


def _beats_last(value: _Number, at: datetime, event_id: str, best: Decisive) -> bool:
    return (at, event_id, value) > (best.timestamp, best.event_id, best.value)


def _moment(best: Decisive) -> tuple[datetime, str]:
    return best.timestamp, best.event_id


_DECIDED_BY: dict[AggregationKind, Beats] = {
    AggregationKind.MAX: _beats_max,
    AggregationKind.MIN: _beats_min,
    AggregationKind.LAST: _beats_last,
}


def has_decisive_event(kind: AggregationKind) -> bool:
    """One event's value is the quantity (``max``, ``min``, ``last``), not all of theirs."""
    return kind in _DECIDED_BY


class _Explainer:
    """One meter's running explanation, fed a chunk of in-cycle records at a time."""

    def __init__(self, spec: MeterSpec) -> None:
        self.spec = spec
        self.tally = Tally()
        self.decisive: Decisive | None = None
        self.beats = _DECIDED_BY.get(spec.aggregation.kind)

    def add(self, chunk: list[UsageRecord]) -> None:
        self.tally = self.tally.merge(self.spec.tally(chunk))
        if self.beats is None:
            return
        beats, measure, best = self.beats, self.spec.measure, self.decisive
        for at, event_id, event_name, metadata in chunk:
            value = measure(event_name, metadata)
            if value is None or isinstance(value, str):
                continue
            if best is None or beats(value, at, event_id, best):
                best = Decisive(at, event_id, canonical_number(value))
        self.decisive = best

    def result(self) -> Explanation:
        consumed = self.tally.result(self.spec.aggregation)
        return Explanation(self.tally.count, consumed, self.decisive)


def explain_meters(
    specs: Mapping[str, MeterSpec],
    events: Iterable[UsageRecord],
    start: datetime,
    end: datetime,
) -> dict[str, Explanation]:
    """Each meter's explanation over the events with ``start <= timestamp < end``.

    ``events`` is read once (it may be a stream), ``CHUNK`` records at a time.
    """
    explainers = {meter_id: _Explainer(spec) for meter_id, spec in specs.items()}
    within = (record for record in events if start <= record[0] < end)
    while chunk := list(islice(within, CHUNK)):
        for explainer in explainers.values():
            explainer.add(chunk)
    return {meter_id: explainer.result() for meter_id, explainer in explainers.items()}


def explain_meter(
    spec: MeterSpec, events: Iterable[UsageRecord], start: datetime, end: datetime
) -> Explanation:
    """One meter's explanation over the events with ``start <= timestamp < end``."""
    return explain_meters({"": spec}, events, start, end)[""]


def deciding_part(
    kind: AggregationKind, parts: Sequence[tuple[datetime, Tally]]
) -> datetime | None:
    """Of the tallies of disjoint, consecutive parts of a range (each keyed by where it
    starts), the start of the part that holds the decisive event of a ``max`` or
    ``min`` meter: the first part that reached the extreme (events of earlier parts are
    earlier). None for the other aggregations, or when nothing was counted."""
    pick = {AggregationKind.MAX: "maximum", AggregationKind.MIN: "minimum"}.get(kind)
    measured = (
        [(at, getattr(t, pick)) for at, t in sorted(parts, key=_start) if t.count] if pick else []
    )
    values = [value for _, value in measured if value is not None]
    if not values:
        return None
    extreme = max(values) if kind is AggregationKind.MAX else min(values)
    return next(at for at, value in measured if value == extreme)


def _start(part: tuple[datetime, Tally]) -> datetime:
    return part[0]


def explanation_of(spec: MeterSpec, tally: Tally, decisive: Decisive | None) -> Explanation:
    """A meter's explanation from its tally; ``last`` needs no event read: it is in it."""
    if spec.aggregation.kind is AggregationKind.LAST and tally.last is not None:
        last = tally.last
        decisive = Decisive(last.timestamp, last.event_id, last.value)
    return Explanation(tally.count, tally.result(spec.aggregation), decisive)

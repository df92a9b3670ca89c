"""Billing cycles: the periods a subscription is billed for, anchored at its start.

A subscription that starts at ``anchor`` and is billed every ``count``
``interval``s (the wire's ``payment_frequency_count`` and
``payment_frequency_interval``) has cycle ``i`` (``i >= 0``) running from
boundary ``i`` (inclusive) to boundary ``i + 1`` (exclusive). All times are
UTC; an anchor given in another zone is converted first, a naive one refused.

- ``Day`` and ``Week``: boundary ``i`` is ``anchor + i * count`` days (or weeks).
  UTC has no daylight saving, so a day is always 24 hours.
- ``Month`` and ``Year`` (12 months): boundary ``i`` is the anchor moved
  ``i * count`` months, keeping its day of month when the target month has it
  and taking the target month's last day otherwise. Each boundary is computed
  from the anchor, never from the previous boundary (as Stripe does), so an
  anchor on Jan 31 gives Feb 28 (29 in leap years), Mar 31, Apr 30, May 31;
  a yearly anchor on Feb 29 gives Feb 28 in common years and Feb 29 again in
  leap years. The time of day, to the microsecond, is always kept.

Cycles tile time from the anchor on, with no gap and no overlap. Any cycle is
found in constant time, without walking from the anchor.

Limits: ``count`` is at least 1 and a cycle lasts at most about ten years
(``MAX_COUNT``: 3,660 days, 520 weeks, 120 months or 10 years); anything else
is refused with ``InvalidBillingFrequencyError``. There is no cycle before the
anchor, nor one whose end lies past the year 9999: asking for either raises
``CycleOutOfRangeError``.
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from domain.errors import CycleOutOfRangeError, InvalidBillingFrequencyError, InvalidTimestampError


class Interval(StrEnum):
    """The wire's ``TimeInterval``: the unit a billing frequency counts."""

    DAY = "Day"
    WEEK = "Week"
    MONTH = "Month"
    YEAR = "Year"

    @classmethod
    def parse(cls, raw: object) -> Interval:
        if isinstance(raw, str) and raw in _INTERVALS:
            return cls(raw)
        raise InvalidBillingFrequencyError(
            f"interval must be one of {', '.join(_INTERVALS)}, not {str(raw)[:20]!r}"
        )

    def months(self) -> int:
        """How many calendar months one interval spans; 0 for fixed-length intervals."""
        return {Interval.MONTH: 1, Interval.YEAR: 12}.get(self, 0)

    def days(self) -> int:
        """How many days one fixed-length interval spans; 0 for calendar intervals."""
        return {Interval.DAY: 1, Interval.WEEK: 7}.get(self, 0)


_INTERVALS = tuple(interval.value for interval in Interval)
MAX_COUNT = {Interval.DAY: 3660, Interval.WEEK: 520, Interval.MONTH: 120, Interval.YEAR: 10}


@dataclass(frozen=True, slots=True)
class Frequency:
    """Every ``count`` ``interval``s; refused unless ``1 <= count <= MAX_COUNT[interval]``."""

    interval: Interval
    count: int

    def __post_init__(self) -> None:
        if not isinstance(self.interval, Interval):
            raise InvalidBillingFrequencyError(f"interval must be one of {', '.join(_INTERVALS)}")
        limit = MAX_COUNT[self.interval]
        if type(self.count) is not int or not 1 <= self.count <= limit:
            raise InvalidBillingFrequencyError(
                f"count of a {self.interval.value.lower()}ly frequency must be an integer "
                f"from 1 to {limit}, not {self.count!r}"
            )

    def boundary(self, anchor: datetime, index: int) -> datetime:
        """The start of cycle ``index``, computed from the anchor alone."""
        steps = index * self.count
        try:
            if months := self.interval.months():
                return _add_months(anchor, steps * months)
            return anchor + timedelta(days=steps * self.interval.days())
        except (OverflowError, ValueError):
            raise CycleOutOfRangeError(f"cycle {index} lies outside the calendar") from None


@dataclass(frozen=True, slots=True)
class Cycle:
    """Billing cycle ``index``: from ``start`` (inclusive) to ``end`` (exclusive)."""

    index: int
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def cycle(anchor: datetime, interval: Interval, count: int, index: int) -> Cycle:
    """Cycle ``index`` (0 is the first) of a subscription anchored at ``anchor``."""
    frequency, anchor = Frequency(interval, count), _utc(anchor, "anchor")
    return _cycle(anchor, frequency, index)


def cycle_at(anchor: datetime, interval: Interval, count: int, moment: datetime) -> Cycle:
    """The cycle that contains ``moment``; ``CycleOutOfRangeError`` before the anchor."""
    frequency, anchor = Frequency(interval, count), _utc(anchor, "anchor")
    return _cycle(anchor, frequency, _index_at(anchor, frequency, _utc(moment, "moment")))


def cycles_between(
    anchor: datetime, interval: Interval, count: int, start: datetime, end: datetime
) -> Iterator[Cycle]:
    """The cycles that overlap ``[start, end)``, in order; none before the anchor."""
    frequency, anchor = Frequency(interval, count), _utc(anchor, "anchor")
    start, end = max(_utc(start, "start"), anchor), _utc(end, "end")
    if start >= end:
        return iter(())
    return _cycles_from(anchor, frequency, _index_at(anchor, frequency, start), end)


def _cycles_from(
    anchor: datetime, frequency: Frequency, index: int, end: datetime
) -> Iterator[Cycle]:
    current = _cycle(anchor, frequency, index)
    while current.start < end:
        yield current
        current = _cycle(anchor, frequency, current.index + 1)


def _cycle(anchor: datetime, frequency: Frequency, index: int) -> Cycle:
    if index < 0:
        raise CycleOutOfRangeError(f"there is no cycle {index}: cycles are numbered from 0")
    start = frequency.boundary(anchor, index)
    return Cycle(index, start, frequency.boundary(anchor, index + 1))


def _index_at(anchor: datetime, frequency: Frequency, moment: datetime) -> int:
    if moment < anchor:
        raise CycleOutOfRangeError(
            f"{moment.isoformat()} lies before the first cycle, which starts at "
            f"{anchor.isoformat()}"
        )
    if months := frequency.interval.months():
        elapsed = (moment.year - anchor.year) * 12 + moment.month - anchor.month
        index = elapsed // (months * frequency.count)
        # Boundary ``index`` falls in ``moment``'s month or earlier, so it is at
        # most one cycle late (a later day in the same month), never early.
        return index - 1 if frequency.boundary(anchor, index) > moment else index
    return (moment - anchor) // timedelta(days=frequency.interval.days() * frequency.count)


def _add_months(anchor: datetime, months: int) -> datetime:
    year, month = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    month += 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, monthrange(year, month)[1]))


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidTimestampError(f"{name} {moment.isoformat()} has no time zone")
    return moment.astimezone(UTC)

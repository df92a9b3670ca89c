"""Usage queries: a meter's value per window over any range, exactly.

The whole hours of the range come from the usage projection's buckets and its
partial first and last hour from the usage log (``application.measure``), so
any range, and so every billing cycle, is answered exactly, at the cost of the
hours asked for.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from application.errors import InvalidParameterError
from application.measure import TallyMeasure
from application.tally import hour_of
from domain.meter import MeterSpec, Tally

HOUR = timedelta(hours=1)
MAX_WINDOWS = 10_000
# The last moment whose month still has a successor datetime can represent.
LATEST = datetime(9999, 12, 1, tzinfo=UTC)


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


def usage_report(
    measure: TallyMeasure,
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
    return usage_reports(
        measure,
        business_id=business_id,
        specs={meter_id: spec},
        customer_id=customer_id,
        start=start,
        end=end,
        window=window,
    )[meter_id]


def usage_reports(
    measure: TallyMeasure,
    *,
    business_id: str,
    specs: Mapping[str, MeterSpec],
    customer_id: str | None,
    start: datetime,
    end: datetime,
    window: Window,
) -> dict[str, UsageReport]:
    """``usage_report`` of several meters over one range, measured in one pass."""
    bounds = window_bounds(start, end, window)
    measured = measure.parts(business_id, dict(specs), customer_id, start, end)
    reports = {}
    for meter_id, spec in specs.items():
        tallies = [Tally() for _ in bounds]
        # Each part is a whole hour or a piece of one, and no window boundary splits an hour.
        for moment, tally in measured.parts[meter_id]:
            index = window_index(bounds, moment)
            tallies[index] = tallies[index].merge(tally)
        everything = Tally()
        for tally in tallies:
            everything = everything.merge(tally)
        reports[meter_id] = UsageReport(
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
    return reports


def window_bounds(
    start: datetime, end: datetime, window: Window, max_windows: int = MAX_WINDOWS
) -> list[tuple[datetime, datetime]]:
    """The windows of ``[start, end)``, the first and last cut by the range; at most
    ``max_windows`` (``InvalidParameterError`` beyond, or for an empty range)."""
    if end <= start:
        raise InvalidParameterError("end must be after start")
    if end > LATEST:
        raise InvalidParameterError(f"end must not be after {LATEST.isoformat()}")
    bounds: list[tuple[datetime, datetime]] = []
    cursor = start
    boundary = window.floor(start)
    while cursor < end:
        boundary = window.next(boundary)
        bounds.append((cursor, min(boundary, end)))
        cursor = boundary
        if len(bounds) > max_windows:
            raise InvalidParameterError(
                f"the range holds more than {max_windows:,} {window} windows; "
                "choose a wider window or a shorter range"
            )
    return bounds


def window_index(bounds: list[tuple[datetime, datetime]], moment: datetime) -> int:
    """The index of the window of ``bounds`` that holds ``moment``."""
    low, high = 0, len(bounds) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if bounds[middle][0] <= moment:
            low = middle
        else:
            high = middle - 1
    return low

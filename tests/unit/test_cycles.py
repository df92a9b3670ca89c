"""Billing cycles: month ends, leap years, every interval, limits, and the tiling law."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.cycles import MAX_COUNT, Cycle, Interval, cycle, cycle_at, cycles_between
from domain.errors import CycleOutOfRangeError, InvalidBillingFrequencyError, InvalidTimestampError

LAWS = settings(max_examples=200, deadline=None)
MONTH, YEAR, WEEK, DAY = Interval.MONTH, Interval.YEAR, Interval.WEEK, Interval.DAY
# Month lengths written out, so the expectations below do not lean on ``calendar``.
LENGTHS = {2023: [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]}
LENGTHS[2024] = [31, 29, *LENGTHS[2023][2:]]
LENGTHS[2025] = LENGTHS[2026] = LENGTHS[2023]


def at(year: int, month: int, day: int, *rest: int) -> datetime:
    return datetime(year, month, day, *rest, tzinfo=UTC)


def starts(anchor: datetime, interval: Interval, count: int, n: int) -> list[datetime]:
    return [cycle(anchor, interval, count, i).start for i in range(n)]


MONTH_END_ANCHORS = [
    (year, month, day)
    for year in (2023, 2024)
    for month in range(1, 13)
    for day in range(28, 32)
    if day <= LENGTHS[year][month - 1]
]


@pytest.mark.parametrize(("year", "month", "day"), MONTH_END_ANCHORS)
def test_month_end_anchors_take_the_last_day_of_shorter_months_and_come_back(
    year: int, month: int, day: int
) -> None:
    anchor = at(year, month, day, 13, 5, 7)
    expected = []
    for i in range(25):
        y, m = divmod(year * 12 + month - 1 + i, 12)
        expected.append(at(y, m + 1, min(day, LENGTHS[y][m]), 13, 5, 7))
    assert starts(anchor, MONTH, 1, 25) == expected


def test_an_anchor_on_the_31st_follows_stripes_rule_through_a_leap_february() -> None:
    assert starts(at(2024, 1, 31), MONTH, 1, 5) == [
        at(2024, 1, 31),
        at(2024, 2, 29),
        at(2024, 3, 31),
        at(2024, 4, 30),
        at(2024, 5, 31),
    ]
    assert cycle(at(2023, 1, 31), MONTH, 1, 1) == Cycle(1, at(2023, 2, 28), at(2023, 3, 31))


def test_a_yearly_anchor_on_february_29_bills_on_the_28th_until_the_next_leap_year() -> None:
    assert starts(at(2024, 2, 29, 6), YEAR, 1, 5) == [
        at(2024, 2, 29, 6),
        at(2025, 2, 28, 6),
        at(2026, 2, 28, 6),
        at(2027, 2, 28, 6),
        at(2028, 2, 29, 6),
    ]


def test_quarterly_cycles_count_months_from_the_anchor() -> None:
    assert starts(at(2023, 11, 30), MONTH, 3, 5) == [
        at(2023, 11, 30),
        at(2024, 2, 29),
        at(2024, 5, 30),
        at(2024, 8, 30),
        at(2024, 11, 30),
    ]


def test_every_two_years_from_a_leap_day_lands_on_the_28th_in_common_years() -> None:
    assert starts(at(2024, 2, 29), YEAR, 2, 3) == [
        at(2024, 2, 29),
        at(2026, 2, 28),
        at(2028, 2, 29),
    ]


def test_time_of_day_is_kept_to_the_microsecond() -> None:
    anchor = at(2024, 1, 31, 23, 59, 59, 999_999)
    second = cycle(anchor, MONTH, 1, 1)
    assert second == Cycle(
        1, at(2024, 2, 29, 23, 59, 59, 999_999), at(2024, 3, 31, 23, 59, 59, 999_999)
    )
    assert cycle_at(anchor, MONTH, 1, second.start).index == 1
    assert cycle_at(anchor, MONTH, 1, second.start - timedelta(microseconds=1)).index == 0
    assert cycle_at(anchor, MONTH, 1, second.end - timedelta(microseconds=1)).index == 1
    assert cycle_at(anchor, MONTH, 1, second.end).index == 2


def test_a_moment_late_on_the_anchor_day_of_month_belongs_to_the_earlier_cycle() -> None:
    anchor = at(2024, 1, 15, 12)
    assert cycle_at(anchor, MONTH, 1, at(2024, 3, 15, 11, 59)).index == 1
    assert cycle_at(anchor, MONTH, 1, at(2024, 3, 15, 12)).index == 2


def test_daily_cycles_cross_a_leap_day() -> None:
    assert starts(at(2024, 2, 27, 8), DAY, 1, 4) == [
        at(2024, 2, 27, 8),
        at(2024, 2, 28, 8),
        at(2024, 2, 29, 8),
        at(2024, 3, 1, 8),
    ]


def test_daily_and_weekly_counts_multiply_the_interval() -> None:
    anchor = at(2024, 12, 30, 1, 2, 3)
    assert cycle(anchor, DAY, 3, 2) == Cycle(2, at(2025, 1, 5, 1, 2, 3), at(2025, 1, 8, 1, 2, 3))
    assert cycle(anchor, WEEK, 2, 1) == Cycle(1, at(2025, 1, 13, 1, 2, 3), at(2025, 1, 27, 1, 2, 3))
    assert cycle_at(anchor, WEEK, 2, at(2025, 1, 26, 23)).index == 1


def test_cycle_ten_thousand_is_computed_directly() -> None:
    anchor = at(2000, 1, 31, 9)
    # 10,000 months are 833 years and 4 months.
    assert cycle(anchor, MONTH, 1, 10_000) == Cycle(10_000, at(2833, 5, 31, 9), at(2833, 6, 30, 9))
    assert cycle_at(anchor, MONTH, 1, at(2833, 6, 30, 8)).index == 10_000
    assert cycle(anchor, DAY, 1, 10_000).start == anchor + timedelta(days=10_000)
    assert cycle_at(anchor, YEAR, 1, at(9000, 1, 1)).index == 6999


def test_an_anchor_in_another_zone_is_read_as_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2024, 2, 1, 1, 0, tzinfo=plus_two)  # Jan 31, 23:00 UTC
    assert cycle(local, MONTH, 1, 1).start == at(2024, 2, 29, 23)
    assert cycle(local, MONTH, 1, 1).start.tzinfo is UTC


def test_a_naive_anchor_or_moment_is_refused() -> None:
    with pytest.raises(InvalidTimestampError):
        cycle(datetime(2024, 1, 1), MONTH, 1, 0)
    with pytest.raises(InvalidTimestampError):
        cycle_at(at(2024, 1, 1), MONTH, 1, datetime(2024, 1, 2))


@pytest.mark.parametrize(
    ("interval", "count"),
    [
        (MONTH, 0),
        (DAY, -1),
        (DAY, 3661),
        (WEEK, 521),
        (MONTH, 121),
        (YEAR, 11),
        (MONTH, True),
        (MONTH, 1.0),
    ],
)
def test_counts_below_one_or_beyond_ten_years_are_refused(interval: Interval, count: int) -> None:
    with pytest.raises(InvalidBillingFrequencyError) as caught:
        cycle(at(2024, 1, 1), interval, count, 0)
    assert caught.value.code == "invalid_billing_frequency"


@pytest.mark.parametrize("interval", list(Interval))
def test_the_largest_count_is_accepted(interval: Interval) -> None:
    assert cycle(at(2024, 1, 1), interval, MAX_COUNT[interval], 0).end > at(2033, 12, 1)


def test_intervals_are_parsed_in_the_wire_spelling() -> None:
    assert [Interval.parse(raw) for raw in ("Day", "Week", "Month", "Year")] == list(Interval)
    for raw in ("month", "Quarter", "", None, 1):
        with pytest.raises(InvalidBillingFrequencyError):
            Interval.parse(raw)


def test_there_is_no_cycle_before_the_anchor_or_past_the_calendar() -> None:
    anchor = at(2024, 1, 31)
    with pytest.raises(CycleOutOfRangeError):
        cycle_at(anchor, MONTH, 1, anchor - timedelta(microseconds=1))
    with pytest.raises(CycleOutOfRangeError):
        cycle(anchor, MONTH, 1, -1)
    with pytest.raises(CycleOutOfRangeError) as caught:
        cycle(anchor, YEAR, 10, 800)
    assert caught.value.code == "cycle_out_of_range"
    with pytest.raises(CycleOutOfRangeError):
        cycle(anchor, DAY, 1, 10**9)


def test_cycles_between_lists_the_cycles_overlapping_a_range() -> None:
    anchor = at(2024, 1, 31)
    found = list(cycles_between(anchor, MONTH, 1, at(2024, 3, 1), at(2024, 5, 31)))
    assert [(c.index, c.start, c.end) for c in found] == [
        (1, at(2024, 2, 29), at(2024, 3, 31)),
        (2, at(2024, 3, 31), at(2024, 4, 30)),
        (3, at(2024, 4, 30), at(2024, 5, 31)),
    ]


def test_cycles_between_starts_at_the_anchor_and_may_be_empty() -> None:
    anchor = at(2024, 1, 31)
    assert [c.index for c in cycles_between(anchor, WEEK, 1, at(2020, 1, 1), at(2024, 2, 8))] == [
        0,
        1,
    ]
    assert list(cycles_between(anchor, WEEK, 1, at(2020, 1, 1), anchor)) == []
    assert list(cycles_between(anchor, WEEK, 1, at(2024, 3, 1), at(2024, 3, 1))) == []


@st.composite
def frequencies(draw: st.DrawFn) -> tuple[Interval, int]:
    interval = draw(st.sampled_from(list(Interval)))
    return interval, draw(st.integers(1, MAX_COUNT[interval]))


anchors = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC)
)


@LAWS
@given(anchors, frequencies(), st.integers(0, 500))
def test_cycles_tile_time_without_gaps_or_overlaps(
    anchor: datetime, frequency: tuple[Interval, int], index: int
) -> None:
    interval, count = frequency
    this, following = (
        cycle(anchor, interval, count, index),
        cycle(anchor, interval, count, index + 1),
    )
    assert this.index == index
    assert this.start < this.end == following.start
    assert cycle(anchor, interval, count, 0).start == anchor
    assert cycle_at(anchor, interval, count, this.start) == this
    assert cycle_at(anchor, interval, count, this.end - timedelta(microseconds=1)) == this


@LAWS
@given(
    anchors,
    frequencies(),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=365 * 900)),
)
def test_cycle_at_agrees_with_cycle_of_its_index(
    anchor: datetime, frequency: tuple[Interval, int], offset: timedelta
) -> None:
    interval, count = frequency
    moment = anchor + offset
    found = cycle_at(anchor, interval, count, moment)
    assert found.contains(moment)
    assert found == cycle(anchor, interval, count, found.index)
    listed = list(cycles_between(anchor, interval, count, moment, found.end))
    assert listed == [found]


@LAWS
@given(anchors, st.sampled_from([MONTH, YEAR]), st.integers(1, 10), st.integers(0, 300))
def test_calendar_boundaries_keep_the_anchor_day_when_the_month_has_it(
    anchor: datetime, interval: Interval, count: int, index: int
) -> None:
    start = cycle(anchor, interval, count, index).start
    months = index * count * (12 if interval is YEAR else 1)
    assert (start.year * 12 + start.month) - (anchor.year * 12 + anchor.month) == months
    assert start.time() == anchor.time()
    assert start.day == anchor.day or (
        start.day < anchor.day and (start + timedelta(days=1)).month != start.month
    )

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import (
    InvalidEventIdError,
    InvalidTimestampError,
    TimestampOutOfWindowError,
)
from domain.usage import TimeWindow, check_event_id, parse_timestamp, usage_event_id

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = TimeWindow(backdate=timedelta(hours=1), future_skew=timedelta(minutes=5))


def test_timestamps_with_an_offset_become_utc() -> None:
    assert parse_timestamp("2026-11-25T14:00:00+02:00") == NOW


@pytest.mark.parametrize("raw", ["2026-11-25T12:00:00", "yesterday", "", "2026-13-01T00:00Z"])
def test_timestamps_without_zone_or_form_are_refused(raw: str) -> None:
    with pytest.raises(InvalidTimestampError):
        parse_timestamp(raw)


@pytest.mark.parametrize(
    "offset", [timedelta(hours=-1), timedelta(0), timedelta(minutes=5)]
)
def test_window_edges_are_inside(offset: timedelta) -> None:
    WINDOW.check(NOW + offset, NOW)


@pytest.mark.parametrize(
    "offset", [timedelta(hours=-1, microseconds=-1), timedelta(minutes=5, microseconds=1)]
)
def test_just_outside_the_window_is_refused(offset: timedelta) -> None:
    with pytest.raises(TimestampOutOfWindowError):
        WINDOW.check(NOW + offset, NOW)


@pytest.mark.parametrize("event_id", ["", "   ", "x" * 256])
def test_blank_or_overlong_event_ids_are_refused(event_id: str) -> None:
    with pytest.raises(InvalidEventIdError):
        check_event_id(event_id)


def test_event_identity_is_scoped_to_the_business() -> None:
    assert usage_event_id("a", "e1") == usage_event_id("a", "e1")
    assert usage_event_id("a", "e1") != usage_event_id("b", "e1")
    # The separator keeps ("a", "b\x1fc") apart from ("a\x1fb", "c") only if ids never
    # contain it; either way distinct pairs in practice never share a name.
    assert usage_event_id("ab", "c") != usage_event_id("a", "bc")

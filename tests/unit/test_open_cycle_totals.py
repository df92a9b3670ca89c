"""The overview's open-cycles total: computed in the background, shown with its moment."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from application.dashboard import CurrencyTotal, OpenCyclesTotal, OpenCycleTotals

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_the_first_ask_starts_a_refresh_and_answers_at_once() -> None:
    release = threading.Event()
    calls: list[tuple[str, datetime]] = []

    def compute(business_id: str, now: datetime) -> OpenCyclesTotal:
        calls.append((business_id, now))
        release.wait(5)
        return OpenCyclesTotal(now, 2, (CurrencyTotal("USD", 3000),), 0.0)

    totals = OpenCycleTotals(compute, lambda: NOW)
    assert totals.get("default", NOW) is None  # nothing yet, and the page does not wait
    assert totals.get("default", NOW) is None  # one refresh at a time
    release.set()
    totals.stop()
    found = totals.get("default", NOW)
    assert found is not None
    assert found.totals == (CurrencyTotal("USD", 3000),)
    assert calls == [("default", NOW)]


def test_a_stale_figure_is_shown_while_it_is_refreshed() -> None:
    moments = iter([NOW, NOW + timedelta(minutes=5)])

    def compute(business_id: str, now: datetime) -> OpenCyclesTotal:
        return OpenCyclesTotal(now, 1, (), 0.0)

    totals = OpenCycleTotals(compute, lambda: next(moments), max_age=timedelta(seconds=30))
    first = totals.refresh_now("default")
    later = NOW + timedelta(minutes=1)
    assert totals.get("default", later) == first  # older than max_age: shown, refreshed
    totals.stop()
    refreshed = totals.get("default", later)
    assert refreshed is not None
    assert refreshed.computed_at == NOW + timedelta(minutes=5)


def test_a_failed_refresh_keeps_the_older_figure() -> None:
    def compute(business_id: str, now: datetime) -> OpenCyclesTotal:
        raise RuntimeError("database restarting")

    totals = OpenCycleTotals(compute, lambda: NOW)
    assert totals.get("default", NOW) is None
    totals.stop()
    assert totals.get("default", NOW) is None  # stopped: no more refreshes, no error raised

"""The portal's figures: money with its currency, exact units, bars scaled to the busiest day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from api.portal_format import CHART_HEIGHT, bar_chart, money, quantity, unit_price
from application.usage_report import UsageWindow

DAY = timedelta(days=1)
START = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (3000, "USD", "$30.00"),
        (123456789, "USD", "$1,234,567.89"),
        (-150, "EUR", "-€1.50"),
        (1500, "JPY", "¥1,500"),
        (1234, "KWD", "1.234 KWD"),
        (0, "SEK", "0.00 SEK"),
    ],
)
def test_money_is_written_with_its_currency(minor: int, currency: str, text: str) -> None:
    assert money(minor, currency) == text


@pytest.mark.parametrize(
    ("minor", "text"), [("2", "$0.02"), ("0.5", "$0.005"), ("150000", "$1,500.00")]
)
def test_a_unit_price_keeps_every_digit(minor: str, text: str) -> None:
    assert unit_price(Decimal(minor), "USD") == text


@pytest.mark.parametrize(
    ("value", "text"), [("2500", "2,500"), ("2.5E+3", "2,500"), ("1.250", "1.25"), ("0", "0")]
)
def test_quantities_are_exact_and_grouped(value: str, text: str) -> None:
    assert quantity(Decimal(value)) == text


def test_bars_scale_to_the_busiest_day_and_days_to_come_are_marked() -> None:
    days = [
        UsageWindow(START + i * DAY, START + (i + 1) * DAY, Decimal(v), 0)
        for i, v in enumerate(["10", "40", "0", "20"])
    ]
    chart = bar_chart(days, "calls", now=START + DAY + timedelta(hours=3))
    heights = [bar.height for bar in chart.bars]
    assert heights == [CHART_HEIGHT / 4, CHART_HEIGHT, 0, CHART_HEIGHT / 2]
    assert [bar.future for bar in chart.bars] == [False, False, True, True]
    assert chart.bars[1].title == "26 Nov 2026: 40 calls"
    assert chart.peak == "40"


def test_a_cycle_without_usage_draws_no_bar() -> None:
    days = [UsageWindow(START, START + DAY, Decimal(0), 0)]
    assert [bar.height for bar in bar_chart(days, "calls", now=START).bars] == [0]


def test_a_quantity_of_any_size_is_written_exactly() -> None:
    assert quantity(Decimal(10**30 + 1)) == "1,000,000,000,000,000,000,000,000,000,001"
    assert quantity(Decimal("1E+40")) == "10" + ",000" * 13
    assert quantity(Decimal("-0.00")) == "0"
    assert quantity(Decimal("-1234.50")) == "-1,234.5"


def test_a_window_below_zero_draws_no_bar() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    days = [
        UsageWindow(start + timedelta(days=i), start + timedelta(days=i + 1), Decimal(v), 1)
        for i, v in enumerate(["3", "-50", "0"])
    ]
    chart = bar_chart(days, "units", start + timedelta(days=5))
    assert [bar.height for bar in chart.bars] == [140.0, 0.0, 0.0]
    assert all(bar.y >= 0 and bar.height >= 0 for bar in chart.bars)
    assert chart.bars[1].title == "02 Nov 2026: -50 units"

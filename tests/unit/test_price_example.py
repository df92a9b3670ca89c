"""The worked example of a price bills what the invoice fold bills for the same usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from application.price_example import price_example
from domain.cycles import Interval, cycle
from domain.invoice import fold_invoice
from domain.meter import MeterSpec, UsageRecord
from domain.pricing import MeterPrice, UsagePrice
from domain.product import parse_usage_price

START = datetime(2026, 11, 1, tzinfo=UTC)
COUNT = MeterSpec.parse("api.call", {"type": "count"}, None)


def priced(**meter: Any) -> MeterPrice:
    price, _ = parse_usage_price(
        {
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 0,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Month",
            "meters": [{"meter_id": "mtr_calls", **meter}],
        }
    )
    return price.meters[0]


def folded(meter: MeterPrice, calls: int) -> int:
    """What the invoice of a month with ``calls`` events bills for the meter's line."""
    price = UsagePrice.of("USD", 0, Interval.MONTH, 1, [meter])
    events: list[UsageRecord] = [
        (START + timedelta(seconds=i), f"e{i}", "api.call", {}) for i in range(calls)
    ]
    month = cycle(START, Interval.MONTH, 1, 0)
    invoice = fold_invoice(
        month,
        price,
        {meter.meter_id: COUNT},
        events,
        cut=calls,
    )
    return invoice.line(meter.meter_id).amount_minor


def test_per_unit_above_a_free_threshold_is_the_quickstart_figure() -> None:
    meter = priced(price_per_unit="2", free_threshold=1000)
    example = price_example(meter, Decimal(2500), "USD", "calls")
    assert (example.consumed, example.free_threshold, example.billed_units) == (2500, 1000, 1500)
    assert (example.unit_price, example.amount_minor, example.model) == (2, 3000, "per_unit")
    assert example.amount_minor == folded(meter, 2500)


def test_graduated_tiers_show_each_tier_and_bill_as_the_fold() -> None:
    tiers = [
        {"up_to": 1000, "price_per_unit": "2", "flat_fee": 100},
        {"up_to": None, "price_per_unit": "1"},
    ]
    meter = priced(pricing_model="graduated", tiers=tiers)
    example = price_example(meter, Decimal(2500), "USD", "calls")
    assert [(s.number, s.lower, s.upper, s.units, s.amount) for s in example.tiers] == [
        (1, 0, 1000, 1000, 2100),
        (2, 1000, None, 1500, 1500),
    ]
    assert example.amount_minor == 3600 == folded(meter, 2500)


def test_volume_tiers_price_every_unit_at_the_tier_the_total_lands_in() -> None:
    tiers = [{"up_to": 1000, "price_per_unit": "2"}, {"up_to": None, "price_per_unit": "1"}]
    meter = priced(pricing_model="volume", tiers=tiers)
    example = price_example(meter, Decimal(2500), "USD", "calls")
    assert [(s.number, s.units) for s in example.tiers] == [(2, 2500)]
    assert example.amount_minor == 2500 == folded(meter, 2500)


def test_packages_round_up_and_a_minimum_holds_the_amount() -> None:
    meter = priced(
        pricing_model="package", package_size=1000, package_price="500", minimum_amount=2000
    )
    example = price_example(meter, Decimal(2500), "USD", "calls")
    assert (example.packages, example.priced_minor, example.amount_minor) == (3, 1500, 2000)
    assert example.is_bounded
    assert example.amount_minor == folded(meter, 2500)


def test_a_fractional_minor_price_is_rounded_once_half_to_even() -> None:
    meter = priced(price_per_unit="0.5")  # $0.005 a call
    assert price_example(meter, Decimal(5), "USD", "calls").amount_minor == 2  # 2.5 -> 2
    assert price_example(meter, Decimal(7), "USD", "calls").amount_minor == 4 == folded(meter, 7)


def test_usage_under_the_free_threshold_costs_nothing() -> None:
    meter = priced(price_per_unit="2", free_threshold=1000)
    example = price_example(meter, Decimal(400), "USD", "calls")
    assert (example.billed_units, example.amount_minor) == (0, 0)


def test_a_line_priced_per_value_is_shown_at_its_own_model() -> None:
    meter = priced(
        price_per_unit="4", group_by="quality", groups=[{"value": "hd", "price_per_unit": "8"}]
    )
    example = price_example(meter, Decimal(10), "USD", "images")
    assert (example.group_by, example.unit_price, example.amount_minor) == ("quality", 4, 40)

"""A product's price over time: a change applies from its moment on, never before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.errors import InvalidPriceError
from domain.product import Product, parse_usage_price

T0 = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)


def wire(per_unit: str = "2", **changes: object) -> dict[str, object]:
    return {
        "type": "usage_based_price",
        "currency": "USD",
        "fixed_price": 100,
        "payment_frequency_count": 1,
        "payment_frequency_interval": "Month",
        "meters": [{"meter_id": "mtr_1", "price_per_unit": per_unit, "free_threshold": 10}],
        **changes,
    }


def make(per_unit: str = "2") -> Product:
    _, price = parse_usage_price(wire(per_unit))
    return Product(
        business_id="b",
        product_id="pdt_1",
        name="Plan",
        description=None,
        tax_category="saas",
        metadata={},
        price=price,
        created_at=T0,
    )


def test_the_canonical_price_spells_each_number_one_way() -> None:
    _, price = parse_usage_price(wire("2.50", subscription_period_count=5))
    assert price["meters"] == [{"meter_id": "mtr_1", "price_per_unit": "2.5", "free_threshold": 10}]
    assert price["subscription_period_count"] == 5
    assert price["subscription_period_interval"] == "Year"


def test_a_price_change_applies_from_its_moment_on() -> None:
    product = make("2")
    changed_at = T0 + timedelta(days=10)
    product.change_price(parse_usage_price(wire("1"))[1], changed_at)
    per_unit = lambda at: product.price_at(at).meters[0].price_per_unit  # noqa: E731
    assert per_unit(T0 - timedelta(days=1)) == Decimal(2)  # before it existed: its first price
    assert per_unit(T0) == Decimal(2)
    assert per_unit(changed_at - timedelta(microseconds=1)) == Decimal(2)
    assert per_unit(changed_at) == Decimal(1)
    assert per_unit(changed_at + timedelta(days=400)) == Decimal(1)


def test_setting_the_same_price_again_records_nothing() -> None:
    product = make("2")
    product.collect_events()
    product.change_price(parse_usage_price(wire("2.0"))[1], T0 + timedelta(days=1))
    assert product.collect_events() == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"type": "recurring_price"}, "price.type"),
        ({"discount_bps": 50}, "price.discount_bps"),
        ({"fixed_price": "100"}, "price.fixed_price"),
        ({"subscription_period_count": 0}, "price.subscription_period_count"),
        ({"payment_frequency_interval": "month"}, "price.payment_frequency_interval"),
        ({"meters": "mtr_1"}, "price.meters"),
    ],
)
def test_a_bad_price_names_its_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidPriceError, match=message.replace(".", r"\.")):
        parse_usage_price(wire(**changes))

"""Archiving a product is an event; an archived product refuses new subscriptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import ProductArchivedError
from domain.product import Product

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PRICE = {
    "type": "usage_based_price",
    "currency": "USD",
    "fixed_price": 100,
    "payment_frequency_count": 1,
    "payment_frequency_interval": "Month",
    "subscription_period_count": 20,
    "subscription_period_interval": "Year",
    "tax_inclusive": False,
    "meters": [],
}


def make() -> Product:
    return Product(
        business_id="b",
        product_id="pdt_1",
        name="Plan",
        description=None,
        tax_category="saas",
        metadata={},
        price=PRICE,
        created_at=NOW,
    )


def test_archiving_records_one_event_and_refuses_new_subscriptions() -> None:
    product = make()
    product.check_open_to_new_subscriptions()  # on offer: no error
    product.collect_events()
    product.archive(NOW + timedelta(hours=1))
    product.archive(NOW + timedelta(hours=2))  # already archived: nothing more
    [archived] = product.collect_events()
    assert isinstance(archived, Product.Archived)
    assert (product.is_archived, product.updated_at) == (True, NOW + timedelta(hours=1))
    with pytest.raises(ProductArchivedError, match="'pdt_1' is archived") as raised:
        product.check_open_to_new_subscriptions()
    assert raised.value.code == "product_archived"


def test_unarchiving_offers_it_again_and_keeps_its_price() -> None:
    product = make()
    product.unarchive(NOW)  # on offer already: nothing
    assert product.collect_events()[1:] == []
    product.archive(NOW)
    product.unarchive(NOW + timedelta(days=1))
    assert isinstance(product.collect_events()[-1], Product.Unarchived)
    assert not product.is_archived
    product.check_open_to_new_subscriptions()
    assert product.price_at(NOW + timedelta(days=2)).fixed_price == 100

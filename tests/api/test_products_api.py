"""Products with a usage-based price, over HTTP and through the dodopayments SDK."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from dodopayments import DodoPayments

from tests.api.helpers import assert_error, bearer
from tests.conftest import BOOTSTRAP_KEY


def make_meter(client: Any, name: str = "Calls", **extra: Any) -> str:
    response = client.post(
        "/meters",
        json={
            "name": name,
            "event_name": "api.call",
            "measurement_unit": "calls",
            "aggregation": {"type": "count"},
            **extra,
        },
    )
    assert response.status_code == 200, response.text
    meter_id: str = response.json()["id"]
    return meter_id


def price(*meters: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "type": "usage_based_price",
        "currency": "USD",
        "fixed_price": 0,
        "payment_frequency_count": 1,
        "payment_frequency_interval": "Month",
        "subscription_period_count": 20,
        "subscription_period_interval": "Year",
        "meters": list(meters),
        **changes,
    }


def priced(meter_id: str, per_unit: str = "2", free: int | None = 1000) -> dict[str, Any]:
    return {"meter_id": meter_id, "price_per_unit": per_unit, "free_threshold": free}


def product(client: Any, **changes: Any) -> Any:
    return client.post(
        "/products",
        json={"name": "API plan", "tax_category": "saas", **changes},
    )


@pytest.fixture
def meter(client) -> str:
    return make_meter(client)


def test_create_answers_the_sdk_shape_with_the_canonical_price(client, meter, clock) -> None:
    response = product(
        client, price=price(priced(meter, "2.50", 1000), fixed_price=999), description="d"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["product_id"].startswith("pdt_")
    assert body["name"] == "API plan"
    assert body["description"] == "d"
    assert body["tax_category"] == "saas"
    assert body["business_id"] == "default"
    assert body["is_recurring"] is True
    assert body["price"]["type"] == "usage_based_price"
    assert body["price"]["fixed_price"] == 999
    assert body["price"]["meters"] == [
        {"meter_id": meter, "price_per_unit": "2.5", "free_threshold": 1000}
    ]
    assert body["created_at"] == body["updated_at"] == clock.now.isoformat().replace("+00:00", "Z")
    assert client.get(f"/products/{body['product_id']}").json() == body


def test_list_is_newest_first_in_the_list_shape(client, meter, clock) -> None:
    first = product(client, name="One", price=price(priced(meter))).json()
    clock.advance(timedelta(seconds=1))
    second = product(client, name="Two", price=price(fixed_price=500)).json()
    items = client.get("/products").json()["items"]
    assert [i["product_id"] for i in items] == [second["product_id"], first["product_id"]]
    assert items[0]["price"] == 500
    assert items[0]["currency"] == "USD"
    assert items[0]["price_detail"]["type"] == "usage_based_price"
    assert (
        client.get("/products", params={"page_size": 1, "page_number": 1}).json()["items"][0][
            "product_id"
        ]
        == first["product_id"]
    )


def test_patch_changes_name_and_price_and_keeps_the_rest(client, meter, clock, container) -> None:
    created = product(client, price=price(priced(meter, "2", 1000))).json()
    clock.advance(timedelta(days=3))
    response = client.patch(
        f"/products/{created['product_id']}",
        json={"name": "API plan v2", "price": price(priced(meter, "1", 0))},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "API plan v2"
    assert body["tax_category"] == "saas"
    assert body["price"]["meters"][0]["price_per_unit"] == "1"
    # The price in force at a moment is the one set at or before it.
    from domain.product import product_aggregate_id  # noqa: PLC0415

    stored = container.ledger.repository.get(product_aggregate_id("default", created["product_id"]))
    before = stored.price_at(clock.now - timedelta(days=1))
    after = stored.price_at(clock.now)
    assert (before.meters[0].price_per_unit, after.meters[0].price_per_unit) == (2, 1)


BAD_CREATES = {
    "no-price": ({"name": "x", "tax_category": "saas"}, 422, "invalid_request"),
    "recurring-price": (
        {"price": {"type": "recurring_price", "currency": "USD", "price": 100}},
        422,
        "invalid_price",
    ),
    "one-time-price": ({"price": {"type": "one_time_price"}}, 422, "invalid_price"),
    "discount": ({"price": price(discount=10)}, 422, "invalid_price"),
    "currency-unknown": ({"price": price(currency="XXX")}, 422, "invalid_price"),
    "fixed-price-negative": ({"price": price(fixed_price=-1)}, 422, "invalid_price"),
    "fixed-price-decimal": ({"price": price(fixed_price=1.5)}, 422, "invalid_price"),
    "frequency-zero": ({"price": price(payment_frequency_count=0)}, 422, None),
    "interval-unknown": (
        {"price": price(payment_frequency_interval="Fortnight")},
        422,
        "invalid_price",
    ),
    "unknown-price-field": ({"price": price(trial_days=3)}, 422, "invalid_price"),
    "tax-category": ({"tax_category": "food", "price": price()}, 422, "invalid_product"),
    "blank-name": ({"name": "  ", "price": price()}, 422, "invalid_product"),
    "unknown-field": ({"price": price(), "colour": "red"}, 422, "invalid_request"),
    "unknown-credit-entitlement": (
        {"price": price(), "credit_entitlements": [{"credit_entitlement_id": "x"}]},
        422,
        "invalid_credit",
    ),
    "credits-inside-price": (
        {"price": price(credit_entitlements=[{"credit_entitlement_id": "x"}])},
        422,
        "invalid_price",
    ),
    "price-not-object": ({"price": "10 USD"}, 422, "invalid_price"),
}


@pytest.mark.parametrize(("fields", "status", "code"), BAD_CREATES.values(), ids=BAD_CREATES.keys())
def test_bad_products_are_refused_and_nothing_is_written(
    client, container, fields, status, code
) -> None:
    head = container.ledger.recorder.max_notification_id()
    response = product(client, **fields)
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["code"] == code
    assert container.ledger.recorder.max_notification_id() == head


@pytest.mark.parametrize(
    ("meter_price", "code"),
    [
        ({"meter_id": "mtr_nope", "price_per_unit": "1"}, "unknown_meter"),
        ({"price_per_unit": "1"}, "invalid_price"),
        ("@", "invalid_price"),
        ("@bad-unit", "invalid_price"),
        ("@13dp", "invalid_price"),
        ("@negative", "invalid_price"),
        ("@exponent", "invalid_price"),
        ("@threshold", "invalid_price"),
        ("@credit", "invalid_price"),
    ],
    ids=[
        "unknown",
        "no-id",
        "not-object",
        "text",
        "13dp",
        "negative",
        "exponent",
        "threshold",
        "credit-entitlement",
    ],
)
def test_bad_meter_prices_are_refused(client, meter, container, meter_price, code) -> None:
    cases = {
        "@bad-unit": {"meter_id": meter, "price_per_unit": "two"},
        "@13dp": {"meter_id": meter, "price_per_unit": "0.0000000000001"},
        "@negative": {"meter_id": meter, "price_per_unit": "-1"},
        "@exponent": {"meter_id": meter, "price_per_unit": "1e-3"},
        "@threshold": {"meter_id": meter, "price_per_unit": "1", "free_threshold": -5},
        "@credit": {"meter_id": meter, "price_per_unit": "1", "credit_entitlement_id": "ce"},
        "@": "not an object",
    }
    head = container.ledger.recorder.max_notification_id()
    chosen = cases[meter_price] if isinstance(meter_price, str) else meter_price
    response = product(client, price=price(chosen))
    assert_error(response, 422, code)
    assert "meters[0]" in response.json()["message"]
    assert container.ledger.recorder.max_notification_id() == head


def test_eleven_meters_are_too_many_and_one_meter_priced_twice_is_refused(client) -> None:
    meters = [make_meter(client, f"M{i}") for i in range(11)]
    assert_error(product(client, price=price(*[priced(m) for m in meters])), 422, "invalid_price")
    assert_error(
        product(client, price=price(priced(meters[0]), priced(meters[0]))), 422, "invalid_price"
    )
    assert product(client, price=price(*[priced(m) for m in meters[:10]])).status_code == 200


def test_patch_refuses_unknown_fields_nulls_and_bad_prices(client, meter) -> None:
    created = product(client, price=price(priced(meter))).json()
    path = f"/products/{created['product_id']}"
    assert_error(client.patch(path, json={"colour": "red"}), 422, "invalid_request")
    assert_error(client.patch(path, json={"name": None}), 422, "invalid_request")
    assert_error(client.patch(path, json={"price": price(discount=5)}), 422, "invalid_price")
    assert_error(client.patch(path, json={"tax_category": "x"}), 422, "invalid_product")
    assert client.get(path).json() == created


def test_unknown_and_foreign_products_are_404_and_ingest_keys_403(
    client, meter, container, clock
) -> None:
    created = product(client, price=price(priced(meter))).json()
    assert_error(client.get("/products/pdt_nope"), 404, "not_found")
    assert_error(client.patch("/products/pdt_nope", json={"name": "x"}), 404, "not_found")
    other = bearer(container.keys.create("acme", "admin", clock.now))
    assert_error(client.get(f"/products/{created['product_id']}", headers=other), 404, "not_found")
    assert client.get("/products", headers=other).json()["items"] == []
    ingest_only = bearer(container.keys.create("default", "ingest", clock.now))
    assert_error(client.get("/products", headers=ingest_only), 403, "forbidden")
    refused = client.post(
        "/products",
        json={"name": "x", "tax_category": "saas", "price": price()},
        headers=ingest_only,
    )
    assert_error(refused, 403, "forbidden")


def test_the_sdk_creates_retrieves_lists_and_updates_products(live_server) -> None:
    dodo = DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live_server.base_url, max_retries=0)
    meter = dodo.meters.create(
        name="Images",
        event_name="image",
        measurement_unit="images",
        aggregation={"type": "count"},
    )
    created = dodo.products.create(
        name="Images plan",
        tax_category="saas",
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 0,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Month",
            "subscription_period_count": 20,
            "subscription_period_interval": "Year",
            "meters": [{"meter_id": meter.id, "price_per_unit": "4", "free_threshold": 0}],
        },
    )
    assert created.product_id.startswith("pdt_")
    assert created.price.type == "usage_based_price"
    assert created.price.meters[0].price_per_unit == "4"
    assert dodo.products.retrieve(created.product_id).name == "Images plan"
    listed = dodo.products.list(page_size=10)
    assert [p.product_id for p in listed.items] == [created.product_id]
    dodo.products.update(created.product_id, name="Images plan 2")
    assert dodo.products.retrieve(created.product_id).name == "Images plan 2"

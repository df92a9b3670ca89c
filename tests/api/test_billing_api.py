"""Subscriptions and invoice previews: the worked examples of usage-based billing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from dodopayments import DodoPayments

from tests.api.helpers import assert_error, bearer, make_customer
from tests.conftest import BOOTSTRAP_KEY


def meter(client: Any, event_name: str, aggregation: dict[str, Any], **extra: Any) -> str:
    response = client.post(
        "/meters",
        json={
            "name": f"{event_name} {aggregation['type']}",
            "event_name": event_name,
            "measurement_unit": "units",
            "aggregation": aggregation,
            **extra,
        },
    )
    assert response.status_code == 200, response.text
    meter_id: str = response.json()["id"]
    return meter_id


def product(client: Any, meters: list[tuple[str, str, int]], fixed_price: int = 0) -> str:
    response = client.post(
        "/products",
        json={
            "name": "Plan",
            "tax_category": "saas",
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": fixed_price,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "subscription_period_count": 20,
                "subscription_period_interval": "Year",
                "meters": [
                    {"meter_id": m, "price_per_unit": p, "free_threshold": f} for m, p, f in meters
                ],
            },
        },
    )
    assert response.status_code == 200, response.text
    product_id: str = response.json()["product_id"]
    return product_id


def subscribe(client: Any, cid: str, product_id: str, **extra: Any) -> Any:
    return client.post(
        "/subscriptions",
        json={
            "billing": {"country": "US"},
            "customer": {"customer_id": cid},
            "product_id": product_id,
            "quantity": 1,
            **extra,
        },
    )


def send(client: Any, clock: Any, cid: str, name: str, count: int, **metadata: Any) -> None:
    """``count`` events in the last 20 minutes, in batches of 1,000."""
    events = [
        {
            "event_id": f"{cid}-{clock.now.isoformat()}-{name}-{sorted(metadata.items())}-{i}",
            "customer_id": cid,
            "event_name": name,
            "timestamp": (clock.now - timedelta(seconds=i % 1200)).isoformat(),
            "metadata": metadata,
        }
        for i in range(count)
    ]
    for start in range(0, count, 1000):
        response = client.post("/events/ingest", json={"events": events[start : start + 1000]})
        assert response.json()["ingested_count"] == len(events[start : start + 1000])


def preview(client: Any, subscription_id: str) -> dict[str, Any]:
    response = client.get(f"/subscriptions/{subscription_id}/invoice-preview")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def cid(client) -> str:
    return make_customer(client)


def started(client: Any, cid: str, product_id: str, clock: Any) -> str:
    response = subscribe(
        client, cid, product_id, start_date=(clock.now - timedelta(minutes=30)).isoformat()
    )
    assert response.status_code == 200, response.text
    subscription_id: str = response.json()["subscription_id"]
    return subscription_id


def test_2500_calls_with_1000_free_at_2_cents_is_30_dollars(client, cid, clock) -> None:
    calls = meter(client, "api.call", {"type": "count"})
    sub = started(client, cid, product(client, [(calls, "2", 1000)]), clock)
    send(client, clock, cid, "api.call", 2500)
    body = preview(client, sub)
    [line] = body["invoice"]["lines"]
    assert (line["consumed"], line["free_threshold"], line["chargeable"]) == ("2500", 1000, "1500")
    assert line["amount_minor"] == 3000
    assert body["invoice"]["total_minor"] == 3000
    assert len(body["sha256"]) == 64


def test_a_tenth_of_a_cent_per_call_after_10000_free(client, cid, clock) -> None:
    calls = meter(client, "api.call", {"type": "count"})
    sub = started(client, cid, product(client, [(calls, "0.1", 10_000)]), clock)
    send(client, clock, cid, "api.call", 12_345)
    assert preview(client, sub)["invoice"]["total_minor"] == 234  # 2,345 x 0.1 = 234.5 -> 234


def test_standard_and_hd_images_told_apart_by_a_filter(client, cid, clock) -> None:
    hd = {
        "conjunction": "and",
        "clauses": [{"key": "quality", "operator": "equals", "value": "hd"}],
    }
    sd = {
        "conjunction": "and",
        "clauses": [{"key": "quality", "operator": "not_equals", "value": "hd"}],
    }
    standard = meter(client, "image", {"type": "count"}, filter=sd)
    high = meter(client, "image", {"type": "count"}, filter=hd)
    sub = started(client, cid, product(client, [(standard, "4", 0), (high, "8", 0)]), clock)
    send(client, clock, cid, "image", 10, quality="sd")
    send(client, clock, cid, "image", 5, quality="hd")
    lines = {line["meter_id"]: line for line in preview(client, sub)["invoice"]["lines"]}
    assert lines[standard]["amount_minor"] == 40
    assert lines[high]["amount_minor"] == 40


def test_5_dollars_per_gb_after_10_gb_free_metered_in_bytes(client, cid, clock) -> None:
    storage = meter(client, "upload", {"type": "sum", "key": "bytes"})
    sub = started(client, cid, product(client, [(storage, "0.0000005", 10_000_000_000)]), clock)
    send(client, clock, cid, "upload", 5, bytes=2_500_000_000)  # 12.5 GB
    body = preview(client, sub)
    assert body["invoice"]["lines"][0]["chargeable"] == "2500000000"
    assert body["invoice"]["total_minor"] == 1250  # $12.50


def test_a_cent_per_sms_and_the_fixed_price_per_seat(client, cid, clock) -> None:
    sms = meter(client, "sms", {"type": "count"})
    product_id = product(client, [(sms, "1", 0)], fixed_price=500)
    response = subscribe(
        client,
        cid,
        product_id,
        quantity=3,
        start_date=(clock.now - timedelta(minutes=30)).isoformat(),
    )
    assert response.json()["recurring_pre_tax_amount"] == 1500
    send(client, clock, cid, "sms", 7)
    invoice = preview(client, response.json()["subscription_id"])["invoice"]
    assert invoice["fixed_price_minor"] == 1500
    assert invoice["total_minor"] == 1507


def test_a_price_change_applies_from_the_next_cycle(client, cid, clock) -> None:
    calls = meter(client, "api.call", {"type": "count"})
    product_id = product(client, [(calls, "2", 0)])
    sub = started(client, cid, product_id, clock)
    send(client, clock, cid, "api.call", 10)
    changed = client.patch(
        f"/products/{product_id}",
        json={
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 0,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "meters": [{"meter_id": calls, "price_per_unit": "5", "free_threshold": 0}],
            }
        },
    )
    assert changed.status_code == 200
    assert preview(client, sub)["invoice"]["total_minor"] == 20  # this cycle: the old price
    clock.advance(timedelta(days=31))
    send(client, clock, cid, "api.call", 3)
    assert preview(client, sub)["invoice"]["total_minor"] == 15  # the next: the new price


def test_events_of_other_customers_and_other_cycles_do_not_count(client, cid, clock) -> None:
    calls = meter(client, "api.call", {"type": "count"})
    sub = started(client, cid, product(client, [(calls, "1", 0)]), clock)
    other = make_customer(client, "bob@example.com", "Bob")
    send(client, clock, other, "api.call", 4)
    send(client, clock, cid, "api.call", 2)
    assert preview(client, sub)["invoice"]["total_minor"] == 2


def test_the_preview_is_the_same_bytes_until_something_changes(client, cid, clock) -> None:
    calls = meter(client, "api.call", {"type": "count"})
    sub = started(client, cid, product(client, [(calls, "1", 0)]), clock)
    send(client, clock, cid, "api.call", 5)
    assert preview(client, sub) == preview(client, sub)


def test_cancel_at_period_end_keeps_it_active_until_the_cycle_ends(client, cid, clock) -> None:
    calls = meter(client, "api.call", {"type": "count"})
    sub = started(client, cid, product(client, [(calls, "1", 0)]), clock)
    response = client.patch(f"/subscriptions/{sub}", json={"cancel_at_next_billing_date": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["cancel_at_next_billing_date"]) == ("active", True)
    clock.advance(timedelta(days=32))
    assert client.get(f"/subscriptions/{sub}").json()["status"] == "cancelled"
    assert_error(
        client.patch(f"/subscriptions/{sub}", json={"cancel_at_next_billing_date": False}),
        422,
        "invalid_subscription",
    )


def test_a_month_end_anchor_bills_on_the_last_day_of_shorter_months(client, cid, clock) -> None:
    calls = meter(client, "api.call", {"type": "count"})
    clock.now = clock.now.replace(month=1, day=31)
    sub = subscribe(client, cid, product(client, [(calls, "1", 0)])).json()["subscription_id"]
    body = client.get(f"/subscriptions/{sub}").json()
    assert body["next_billing_date"].startswith("2026-02-28T")
    clock.advance(timedelta(days=29))
    assert client.get(f"/subscriptions/{sub}").json()["next_billing_date"].startswith("2026-03-31T")


BAD = {
    "unknown-product": ({"product_id": "pdt_nope"}, 422, "unknown_product"),
    "unknown-customer": ({"customer": {"customer_id": "cus_nope"}}, 422, "unknown_customer"),
    "quantity-0": ({"quantity": 0}, 422, "invalid_subscription"),
    "no-country": ({"billing": {"city": "Paris"}}, 422, "invalid_request"),
    "discount-code": ({"discount_code": "X"}, 422, "invalid_request"),
    "unknown-field": ({"colour": "red"}, 422, "invalid_request"),
    "future-start": ({"start_date": "2026-11-26T00:00:00Z"}, 422, "invalid_subscription"),
    "start-too-old": ({"start_date": "2026-11-20T00:00:00Z"}, 422, "timestamp_out_of_window"),
    "start-no-zone": ({"start_date": "2026-11-25T11:00:00"}, 422, "invalid_timestamp"),
    "customer-both": (
        {"customer": {"customer_id": "c", "email": "a@b.co"}},
        422,
        "invalid_request",
    ),
}


@pytest.mark.parametrize(("changes", "status", "code"), BAD.values(), ids=BAD.keys())
def test_bad_subscriptions_are_refused_and_nothing_is_written(
    client, cid, container, changes, status, code
) -> None:
    product_id = product(client, [])
    head = container.ledger.recorder.max_notification_id()
    body = {
        "billing": {"country": "US"},
        "customer": {"customer_id": cid},
        "product_id": product_id,
        "quantity": 1,
        **changes,
    }
    assert_error(client.post("/subscriptions", json=body), status, code)
    assert container.ledger.recorder.max_notification_id() == head


def test_unknown_and_foreign_subscriptions_are_404(client, cid, container, clock) -> None:
    sub = subscribe(client, cid, product(client, [])).json()["subscription_id"]
    assert_error(client.get("/subscriptions/sub_nope"), 404, "not_found")
    assert_error(client.get("/subscriptions/sub_nope/invoice-preview"), 404, "not_found")
    other = bearer(container.keys.create("acme", "admin", clock.now))
    assert_error(client.get(f"/subscriptions/{sub}", headers=other), 404, "not_found")
    assert_error(
        client.patch(f"/subscriptions/{sub}", json={"cancel_at_next_billing_date": "yes"}),
        422,
        "invalid_request",
    )


def test_the_sdk_subscribes_retrieves_and_cancels(live_server, clock) -> None:
    dodo = DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live_server.base_url, max_retries=0)
    customer = dodo.customers.create(email="ada@example.com", name="Ada")
    created_product = dodo.products.create(
        name="Plan",
        tax_category="saas",
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 1000,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Month",
            "subscription_period_count": 20,
            "subscription_period_interval": "Year",
        },
    )
    created = dodo.subscriptions.create(
        billing={"country": "US"},
        customer={"customer_id": customer.customer_id},
        product_id=created_product.product_id,
        quantity=2,
    )
    assert created.recurring_pre_tax_amount == 2000
    fetched = dodo.subscriptions.retrieve(created.subscription_id)
    assert (fetched.status, fetched.quantity, fetched.payment_frequency_interval) == (
        "active",
        2,
        "Month",
    )
    assert fetched.next_billing_date == clock.now.replace(month=12)
    updated = dodo.subscriptions.update(created.subscription_id, cancel_at_next_billing_date=True)
    assert updated.cancel_at_next_billing_date is True

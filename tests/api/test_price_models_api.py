"""Price models through the API: tiers, packages, bounds and prices per metadata value,
each worked example to the cent on a finalized cycle."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from dodopayments import DodoPayments

from application.billing import recompute
from infrastructure.runtime import close_cycles
from tests.api.helpers import assert_error, client_for, make_customer
from tests.api.test_billing_api import meter, subscribe
from tests.api.test_credits_api import entitlement
from tests.conftest import BOOTSTRAP_KEY, start_live_server

TIERS = [{"up_to": 1000, "price_per_unit": "2"}, {"up_to": None, "price_per_unit": "1"}]
QUALITY = "quality"


def priced(client: Any, *meters: dict[str, Any]) -> Any:
    return client.post(
        "/products",
        json={
            "name": "Plan",
            "tax_category": "saas",
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 0,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "meters": list(meters),
            },
        },
    )


class Billing:
    """A customer subscribed 35 days ago, so its first cycle can be finalized now."""

    def __init__(self, client: Any, container: Any, clock: Any) -> None:
        self.client, self.container, self.clock = client, container, clock
        self.cid = make_customer(client)
        self.sent = 0

    def subscribe(self, *meters: dict[str, Any]) -> str:
        response = priced(self.client, *meters)
        assert response.status_code == 200, response.text
        start = self.clock.now - timedelta(days=35)
        subscribed = subscribe(
            self.client, self.cid, response.json()["product_id"], start_date=start.isoformat()
        )
        assert subscribed.status_code == 200, subscribed.text
        subscription_id: str = subscribed.json()["subscription_id"]
        return subscription_id

    def send(self, count: int, name: str = "api.call", days_ago: int = 20, **metadata: Any) -> None:
        at = (self.clock.now - timedelta(days=days_ago)).isoformat()
        events = [
            {
                "event_id": f"e{self.sent + i}",
                "customer_id": self.cid,
                "event_name": name,
                "timestamp": at,
                "metadata": metadata,
            }
            for i in range(count)
        ]
        self.sent += count
        for start in range(0, count, 1000):
            batch = events[start : start + 1000]
            response = self.client.post("/events/ingest", json={"events": batch})
            assert response.json()["ingested_count"] == len(batch), response.text

    def finalize(self) -> list[dict[str, Any]]:
        records = close_cycles(self.container, catch_up=True)
        invoices = []
        for record in records:
            again = recompute(self.container.ledger, self.container.reads, record)
            assert again.canonical_bytes().decode() == record.document  # the audit's fold
            invoices.append(self.client.get(f"/invoices/{record.invoice_id}").json())
        return invoices


@pytest.fixture
def billing(make_container, clock) -> Any:
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        yield Billing(client, container, clock)


def calls_meter(billing: Billing) -> str:
    return meter(billing.client, "api.call", {"type": "count"})


def test_graduated_tiers_bill_2500_calls_at_35_dollars(billing) -> None:
    calls = calls_meter(billing)
    billing.subscribe({"meter_id": calls, "pricing_model": "graduated", "tiers": TIERS})
    billing.send(2500)
    [invoice] = billing.finalize()
    [line] = invoice["invoice"]["lines"]
    assert invoice["total_minor"] == 3500  # 1,000 x $0.02 + 1,500 x $0.01
    assert [(t["units"], t["amount"]) for t in line["tiers"]] == [
        ("1000", "2000"),
        ("1500", "1500"),
    ]
    assert line["pricing_model"] == "graduated"


def test_volume_tiers_bill_2500_calls_at_25_dollars(billing) -> None:
    calls = calls_meter(billing)
    billing.subscribe({"meter_id": calls, "pricing_model": "volume", "tiers": TIERS})
    billing.send(2500)
    [invoice] = billing.finalize()
    assert invoice["total_minor"] == 2500  # every call at the tier 2,500 lands in: $0.01


def test_packages_of_1000_at_5_dollars_round_2500_calls_up_to_15_dollars(billing) -> None:
    calls = calls_meter(billing)
    package = {"pricing_model": "package", "package_size": 1000, "package_price": "500"}
    billing.subscribe({"meter_id": calls, **package})
    billing.send(2500)
    [invoice] = billing.finalize()
    [line] = invoice["invoice"]["lines"]
    assert (invoice["total_minor"], line["packages"]) == (1500, 3)


def test_packages_rounded_down_bill_only_whole_packages(billing) -> None:
    calls = calls_meter(billing)
    package = {"pricing_model": "package", "package_size": 1000, "package_price": "500"}
    billing.subscribe({"meter_id": calls, **package, "package_rounding": "down"})
    billing.send(2500)
    [invoice] = billing.finalize()
    assert invoice["total_minor"] == 1000


def test_tiers_price_what_is_left_after_the_free_threshold(billing) -> None:
    calls = calls_meter(billing)
    billing.subscribe(
        {"meter_id": calls, "free_threshold": 500, "pricing_model": "graduated", "tiers": TIERS}
    )
    billing.send(2500)
    [invoice] = billing.finalize()
    assert invoice["total_minor"] == 1000 * 2 + 1000 * 1  # 2,000 billed units


def test_a_minimum_is_charged_without_usage_and_a_maximum_caps_the_line(billing) -> None:
    calls = calls_meter(billing)
    other = meter(billing.client, "sms", {"type": "count"})
    billing.subscribe(
        {"meter_id": calls, "price_per_unit": "2", "minimum_amount": 700},
        {"meter_id": other, "price_per_unit": "2", "maximum_amount": 150},
    )
    billing.send(1000, name="sms")
    [invoice] = billing.finalize()
    lines = {line["meter_id"]: line for line in invoice["invoice"]["lines"]}
    assert (lines[calls]["amount_minor"], lines[calls]["priced_minor"]) == (700, 0)
    assert (lines[other]["amount_minor"], lines[other]["priced_minor"]) == (150, 2000)
    assert invoice["total_minor"] == 850


def test_standard_and_hd_priced_per_value_equal_the_two_meter_invoice(billing) -> None:
    images = meter(billing.client, "image", {"type": "count"})
    grouped = billing.subscribe(
        {
            "meter_id": images,
            "price_per_unit": "4",
            "group_by": QUALITY,
            "groups": [{"value": "hd", "price_per_unit": "8"}],
        }
    )
    hd = {"conjunction": "and", "clauses": [{"key": QUALITY, "operator": "equals", "value": "hd"}]}
    sd = {**hd, "clauses": [{**hd["clauses"][0], "operator": "not_equals"}]}  # type: ignore[dict-item]
    standard = meter(billing.client, "image", {"type": "count"}, filter=sd)
    high = meter(billing.client, "image", {"type": "count"}, filter=hd)
    two_meters = billing.subscribe(
        {"meter_id": standard, "price_per_unit": "4"}, {"meter_id": high, "price_per_unit": "8"}
    )
    billing.send(10, name="image", quality="standard")
    billing.send(5, name="image", quality="hd")
    invoices = {i["subscription_id"]: i for i in billing.finalize()}
    [line] = invoices[grouped]["invoice"]["lines"]
    subs = [(s["value"], s["consumed"], s["amount_minor"]) for s in line["sub_lines"]]
    assert subs == [("hd", "5", 40), ("standard", "10", 40)]  # listed values first
    separate = {line["meter_id"]: line for line in invoices[two_meters]["invoice"]["lines"]}
    assert [separate[high]["amount_minor"], separate[standard]["amount_minor"]] == [40, 40]
    assert invoices[grouped]["total_minor"] == invoices[two_meters]["total_minor"] == 80


def test_late_usage_on_a_graduated_line_adjusts_by_the_whole_line(billing) -> None:
    calls = calls_meter(billing)
    billing.subscribe({"meter_id": calls, "pricing_model": "graduated", "tiers": TIERS})
    billing.send(900)
    [first] = billing.finalize()
    assert first["total_minor"] == 1800
    billing.send(300)  # 1,200 in all: 1,000 x 2 + 200 x 1 = 2,200, so the cycle gains 400
    billing.clock.advance(timedelta(days=31))
    [second] = billing.finalize()
    [adjustment] = second["invoice"]["adjustments"]
    assert adjustment["total_minor"] == 400  # not 300 x 2 (the late events' own price)
    assert adjustment["lines"][0]["consumed"] == "300"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"pricing_model": "graduated", "tiers": [{"up_to": 100, "price_per_unit": "2"}]}, "up_to"),
        (
            {
                "pricing_model": "graduated",
                "tiers": [
                    {"up_to": 100, "price_per_unit": "2"},
                    {"up_to": 50, "price_per_unit": "1"},
                    {"up_to": None, "price_per_unit": "1"},
                ],
            },
            "tiers[1].up_to",
        ),
        (
            {
                "pricing_model": "volume",
                "tiers": [
                    {"up_to": 100, "price_per_unit": "2"},
                    {"from": 200, "up_to": None, "price_per_unit": "1"},
                ],
            },
            "tiers[1].from",
        ),
        ({"pricing_model": "volume", "tiers": [{"up_to": None, "price_per_unit": "-1"}]}, "price"),
        ({"pricing_model": "graduated", "price_per_unit": "2", "tiers": TIERS}, "price_per_unit"),
        ({"pricing_model": "package", "package_price": "5"}, "package_size"),
        ({"pricing_model": "tiered"}, "pricing_model"),
        ({"price_per_unit": "2", "minimum_amount": 500, "maximum_amount": 100}, "maximum_amount"),
        ({"price_per_unit": "2", "groups": [{"value": "hd", "price_per_unit": "8"}]}, "groups"),
    ],
)
def test_an_inconsistent_price_is_refused_naming_the_field(billing, line, field) -> None:
    calls = calls_meter(billing)
    body = assert_error(priced(billing.client, {"meter_id": calls, **line}), 422, "invalid_price")
    assert "price.meters[0]" in body["message"]
    assert field in body["message"]
    assert billing.client.get("/products").json()["items"] == []


def test_a_line_priced_per_value_needs_a_count_or_sum_meter(billing) -> None:
    peak = meter(billing.client, "api.call", {"type": "max", "key": "n"})
    response = priced(billing.client, {"meter_id": peak, "price_per_unit": "1", "group_by": "k"})
    body = assert_error(response, 422, "invalid_price")
    assert "group_by" in body["message"]


def test_the_product_shows_the_price_model_it_was_given(billing) -> None:
    calls = calls_meter(billing)
    response = priced(
        billing.client, {"meter_id": calls, "pricing_model": "volume", "tiers": TIERS}
    )
    [shown] = billing.client.get(f"/products/{response.json()['product_id']}").json()["price"][
        "meters"
    ]
    assert shown["pricing_model"] == "volume"
    assert shown["tiers"] == [
        {"up_to": "1000", "price_per_unit": "2", "flat_fee": 0},
        {"up_to": None, "price_per_unit": "1", "flat_fee": 0},
    ]
    assert "price_per_unit" not in shown


def test_the_sdk_creates_tiered_and_grouped_prices_billed_to_the_cent(
    make_container, clock
) -> None:
    container = make_container(backdate_window=timedelta(days=40))
    live = start_live_server(container)
    try:
        dodo = DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live.base_url, max_retries=0)
        customer = dodo.customers.create(email="ada@example.com", name="Ada")
        calls = dodo.meters.create(
            name="Calls",
            event_name="api.call",
            measurement_unit="calls",
            aggregation={"type": "count"},
        )
        images = dodo.meters.create(
            name="Images",
            event_name="image",
            measurement_unit="images",
            aggregation={"type": "count"},
        )
        meters: list[Any] = [
            {"meter_id": calls.id, "pricing_model": "graduated", "tiers": TIERS},
            {
                "meter_id": images.id,
                "price_per_unit": "4",
                "group_by": QUALITY,
                "groups": [{"value": "hd", "price_per_unit": "8"}],
            },
        ]
        created = dodo.products.create(
            name="Plan",
            tax_category="saas",
            price={
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 0,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "meters": meters,
            },
        )
        shown = dodo.products.retrieve(created.product_id).price
        assert shown.meters[0].model_extra["pricing_model"] == "graduated"  # type: ignore[union-attr, index]
        subscription = dodo.subscriptions.create(
            billing={"country": "US"},
            customer={"customer_id": customer.customer_id},
            product_id=created.product_id,
            quantity=1,
            extra_body={"start_date": (clock.now - timedelta(days=35)).isoformat()},
        )
        at = (clock.now - timedelta(days=20)).isoformat()
        batches = [
            [("api.call", {}, f"c{i}") for i in range(2500)],
            [("image", {QUALITY: "standard"}, f"s{i}") for i in range(10)]
            + [("image", {QUALITY: "hd"}, f"h{i}") for i in range(5)],
        ]
        for batch in batches:
            for start in range(0, len(batch), 1000):
                dodo.usage_events.ingest(
                    events=[
                        {
                            "event_id": i,
                            "customer_id": customer.customer_id,
                            "event_name": name,
                            "timestamp": at,
                            "metadata": metadata,
                        }
                        for name, metadata, i in batch[start : start + 1000]
                    ]
                )
        [record] = close_cycles(container, catch_up=True)
        assert record.subscription_id == subscription.subscription_id
        assert record.total_minor == 3500 + 80
    finally:
        live.stop()


def test_a_meter_priced_per_value_keeps_an_aggregation_that_adds_up(billing) -> None:
    images = meter(billing.client, "image", {"type": "count"})
    line = {"meter_id": images, "price_per_unit": "4", "group_by": QUALITY}
    assert priced(billing.client, line).status_code == 200
    to_max = {"aggregation": {"type": "max", "key": "n"}}
    body = assert_error(
        billing.client.patch(f"/meters/{images}", json=to_max), 409, "meter_definition_locked"
    )
    assert "priced per value" in body["message"]
    to_sum = {"aggregation": {"type": "sum", "key": "n"}}
    assert billing.client.patch(f"/meters/{images}", json=to_sum).status_code == 200


def test_units_moved_between_values_of_a_finalized_cycle_are_adjusted(billing) -> None:
    images = meter(billing.client, "image", {"type": "count"})
    billing.subscribe(
        {
            "meter_id": images,
            "price_per_unit": "4",
            "group_by": QUALITY,
            "groups": [{"value": "hd", "price_per_unit": "8"}],
        }
    )
    billing.send(1, name="image", quality="standard")  # e0
    [first] = billing.finalize()
    assert first["total_minor"] == 4
    # the standard image was mislabelled: voided, and the hd one arrives late
    assert billing.client.post("/events/e0/void", json={}).status_code == 200
    billing.send(1, name="image", quality="hd")
    billing.clock.advance(timedelta(days=31))
    [second] = billing.finalize()
    [adjustment] = second["invoice"]["adjustments"]  # every quantity the same, the amount not
    assert adjustment["total_minor"] == 4
    assert adjustment["lines"][0]["consumed"] == "0"


def test_tiers_with_a_free_threshold_and_credits_together(billing) -> None:
    calls = calls_meter(billing)
    ent = entitlement(billing.client)
    response = billing.client.post(
        "/products",
        json={
            "name": "Credit plan",
            "tax_category": "saas",
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 0,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "meters": [
                    {
                        "meter_id": calls,
                        "free_threshold": 500,
                        "pricing_model": "graduated",
                        "tiers": TIERS,
                        "credit_entitlement_id": ent,
                        "meter_units_per_credit": "1",
                    }
                ],
            },
            "credit_entitlements": [{"credit_entitlement_id": ent, "credits_amount": "800"}],
        },
    )
    assert response.status_code == 200, response.text
    start = (billing.clock.now - timedelta(days=35)).isoformat()
    product_id = response.json()["product_id"]
    assert subscribe(billing.client, billing.cid, product_id, start_date=start).status_code == 200
    billing.send(2500)
    [invoice] = billing.finalize()
    [line] = invoice["invoice"]["lines"]
    # 2,500 - 500 free = 2,000; 800 covered by credits; 1,200 billed in the tiers
    assert (line["chargeable"], line["credits_applied"], line["billed_units"]) == (
        "2000",
        "800",
        "1200",
    )
    assert invoice["total_minor"] == 1000 * 2 + 200 * 1

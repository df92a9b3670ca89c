"""``GET /subscriptions/{id}/usage-history``: each billing cycle's metered lines, newest first.

A subscription started 35 days ago, billed monthly: cycle 0 runs Oct 21 to Nov 21
(12:00 UTC), cycle 1 (open) Nov 21 to Dec 21. Calls cost 2 cents above 10 free;
tokens half a cent each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from dodopayments import DodoPayments

from domain.cycles import Interval, cycle
from infrastructure.runtime import close_cycles
from tests.api.helpers import assert_error, bearer, client_for, make_customer
from tests.api.test_billing_api import meter, product, subscribe
from tests.conftest import BOOTSTRAP_KEY, start_live_server

WINDOW = timedelta(days=40)


@dataclass
class World:
    client: Any
    container: Any
    clock: Any
    customer_id: str
    subscription_id: str
    calls: str
    tokens: str
    started: datetime

    def cycle(self, index: int) -> Any:
        return cycle(self.started, Interval.MONTH, 1, index)

    def send(self, at: datetime, ids: list[str], name: str = "api.call", **metadata: Any) -> None:
        events = [
            {
                "event_id": event_id,
                "customer_id": self.customer_id,
                "event_name": name,
                "timestamp": at.isoformat(),
                "metadata": metadata,
            }
            for event_id in ids
        ]
        response = self.client.post("/events/ingest", json={"events": events})
        assert response.json()["ingested_count"] == len(ids), response.text

    def history(self, **params: Any) -> list[dict[str, Any]]:
        response = self.client.get(
            f"/subscriptions/{self.subscription_id}/usage-history", params=params
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@pytest.fixture
def world(make_container, clock) -> Any:
    container = make_container(backdate_window=WINDOW)
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        tokens = meter(client, "llm", {"type": "sum", "key": "tokens"})
        product_id = product(client, [(calls, "2", 10), (tokens, "0.5", 0)], fixed_price=100)
        started = clock.now - timedelta(days=35)
        response = subscribe(client, cid, product_id, start_date=started.isoformat())
        assert response.status_code == 200, response.text
        sub = response.json()["subscription_id"]
        yield World(client, container, clock, cid, sub, calls, tokens, started)


def lines(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["id"]: line for line in item["meters"]}


def test_each_cycle_up_to_the_open_one_newest_first_with_its_lines(world) -> None:
    first, second = world.cycle(0), world.cycle(1)
    world.send(first.start + timedelta(days=3), [f"a{i}" for i in range(25)])
    world.send(second.start + timedelta(hours=5), ["b1", "b2", "b3"])
    world.send(second.start + timedelta(hours=6), ["t1"], name="llm", tokens=0.1)
    world.send(second.start + timedelta(hours=6), ["t2"], name="llm", tokens=7)
    items = world.history()
    assert [(i["start_date"], i["end_date"]) for i in items] == [
        ("2026-11-21T12:00:00Z", "2026-12-21T12:00:00Z"),
        ("2026-10-21T12:00:00Z", "2026-11-21T12:00:00Z"),
    ]
    assert lines(items[1])[world.calls] == {
        "id": world.calls,
        "name": "api.call count",
        "consumed_units": "25",
        "chargeable_units": "15",
        "free_threshold": 10,
        "price_per_unit": "2",
        "currency": "USD",
        "total_price": 30,
    }
    assert lines(items[1])[world.tokens]["consumed_units"] == "0"
    open_cycle = lines(items[0])
    assert (open_cycle[world.calls]["consumed_units"], open_cycle[world.calls]["total_price"]) == (
        "3",
        0,
    )
    tokens = open_cycle[world.tokens]
    assert (tokens["consumed_units"], tokens["chargeable_units"], tokens["price_per_unit"]) == (
        "7.1",
        "7.1",
        "0.5",
    )
    assert tokens["total_price"] == 4  # 3.55 cents, rounded half-even once
    # The open cycle is what the invoice preview shows.
    preview = world.client.get(f"/subscriptions/{world.subscription_id}/invoice-preview").json()
    assert {
        line["meter_id"]: (line["consumed"], line["chargeable"], line["amount_minor"])
        for line in preview["invoice"]["lines"]
    } == {
        meter_id: (line["consumed_units"], line["chargeable_units"], line["total_price"])
        for meter_id, line in open_cycle.items()
    }


def test_a_finalized_cycle_shows_what_was_billed_and_late_usage_does_not_change_it(world) -> None:
    first = world.cycle(0)
    world.send(first.start + timedelta(days=1), [f"a{i}" for i in range(25)])
    before = world.history()
    [record] = close_cycles(world.container, catch_up=True)
    assert world.history() == before  # the same figures, now read from the invoice
    world.send(first.start + timedelta(days=2), ["late-1", "late-2"])
    finalized = lines(world.history()[1])[world.calls]
    assert (finalized["consumed_units"], finalized["total_price"]) == ("25", 30)
    [invoice_line] = [
        line
        for line in world.client.get(f"/invoices/{record.invoice_id}").json()["invoice"]["lines"]
        if line["meter_id"] == world.calls
    ]
    assert invoice_line["amount_minor"] == finalized["total_price"]
    # The late calls are billed on the next invoice, as an adjustment.
    world.clock.advance(timedelta(days=31))
    [following] = close_cycles(world.container, catch_up=True)
    assert following.total_minor == 100 + 2 * 2
    assert lines(world.history()[2])[world.calls]["consumed_units"] == "25"


def test_a_past_cycle_not_yet_finalized_is_folded_from_the_events(world) -> None:
    world.send(world.cycle(0).start, ["a1", "a2"])
    assert lines(world.history()[1])[world.calls]["consumed_units"] == "2"
    world.send(world.cycle(0).end - timedelta(microseconds=1), ["a3"])
    world.send(world.cycle(0).end, ["b1"])  # the first instant of the next cycle
    assert lines(world.history()[1])[world.calls]["consumed_units"] == "3"
    assert lines(world.history()[0])[world.calls]["consumed_units"] == "1"


def iso(moment: datetime) -> str:
    return moment.isoformat()


def test_dates_are_inclusive_and_keep_the_cycles_that_overlap_them(world) -> None:
    first, second = world.cycle(0), world.cycle(1)
    tick = timedelta(microseconds=1)

    def starts(**params: Any) -> list[str]:
        return [item["start_date"] for item in world.history(**params)]

    both = starts()
    assert len(both) == 2
    assert starts(start_date=iso(second.start)) == both[:1]
    assert starts(start_date=iso(first.end - tick)) == both
    assert starts(end_date=iso(second.start - tick)) == both[1:]
    assert starts(end_date=iso(second.start)) == both  # the open cycle's first instant
    assert starts(start_date=iso(first.start), end_date=iso(first.start)) == both[1:]
    assert starts(end_date=iso(first.start - tick)) == []  # before the subscription
    assert starts(start_date=iso(second.end)) == []  # after the open cycle
    assert starts(start_date=iso(first.start - timedelta(days=300))) == both
    assert starts(end_date="9999-12-31T23:59:59Z") == both


def test_pages_of_cycles_newest_first(world) -> None:
    world.clock.advance(timedelta(days=31))  # cycle 2 is open now
    everything = [item["start_date"] for item in world.history(page_size=100)]
    assert len(everything) == 3
    assert everything == sorted(everything, reverse=True)
    pages = [
        [item["start_date"] for item in world.history(page_size=2, page_number=n)] for n in range(3)
    ]
    assert pages == [everything[:2], everything[2:], []]
    assert [i["start_date"] for i in world.history(page_number=1_000_000)] == []


def test_meter_id_keeps_that_meters_lines(world) -> None:
    world.send(world.cycle(1).start, ["a1"])
    items = world.history(meter_id=world.tokens)
    assert [[line["id"] for line in item["meters"]] for item in items] == [[world.tokens]] * 2
    other = meter(world.client, "other", {"type": "count"})  # a meter this price does not use
    assert [item["meters"] for item in world.history(meter_id=other)] == [[], []]


def test_the_history_ends_with_the_cycle_a_cancellation_ends(world) -> None:
    cancelled = world.client.patch(
        f"/subscriptions/{world.subscription_id}", json={"cancel_at_next_billing_date": True}
    )
    assert cancelled.status_code == 200, cancelled.text
    world.clock.advance(timedelta(days=100))
    assert len(world.history()) == 2
    assert world.history()[0]["end_date"] == "2026-12-21T12:00:00Z"
    assert cancelled.json()["next_billing_date"] == "2026-12-21T12:00:00Z"


BAD = {
    "start-not-iso": ({"start_date": "yesterday"}, 422, "invalid_timestamp"),
    "end-no-zone": ({"end_date": "2026-11-01T00:00:00"}, 422, "invalid_timestamp"),
    "start-after-end": (
        {"start_date": "2026-11-02T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"},
        400,
        "invalid_parameter",
    ),
    "page-size-0": ({"page_size": 0}, 400, "invalid_parameter"),
    "page-size-101": ({"page_size": 101}, 400, "invalid_parameter"),
    "page-number-negative": ({"page_number": -1}, 400, "invalid_parameter"),
    "page-number-not-a-number": ({"page_number": "two"}, 400, "invalid_parameter"),
    "unknown-meter": ({"meter_id": "mtr_nope"}, 404, "not_found"),
    "nul-in-meter": ({"meter_id": "mtr\x00"}, 400, "invalid_parameter"),
}


def test_bad_parameters_are_refused_with_a_code_and_nothing_else_breaks(world) -> None:
    # One world for every case: setting one up per case would cost a database each.
    path = f"/subscriptions/{world.subscription_id}/usage-history"
    for case, (params, status, code) in BAD.items():
        response = world.client.get(path, params=params)
        assert (response.status_code, response.json().get("code")) == (status, code), case
        assert_error(response, status, code)
    assert len(world.history()) == 2


def test_unknown_and_other_businesses_subscriptions_and_meters_are_404(world) -> None:
    assert_error(world.client.get("/subscriptions/sub_nope/usage-history"), 404, "not_found")
    acme = bearer(world.container.keys.create("acme", "admin", world.clock.now))
    path = f"/subscriptions/{world.subscription_id}/usage-history"
    assert_error(world.client.get(path, headers=acme), 404, "not_found")
    # acme's own subscription may not name the first business's meter either.
    acme_customer = make_customer(world.client, "bob@acme.com", "Bob", headers=acme)
    acme_product = world.client.post(
        "/products",
        headers=acme,
        json={
            "name": "Acme plan",
            "tax_category": "saas",
            "price": {
                "type": "usage_based_price",
                "currency": "EUR",
                "fixed_price": 0,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
            },
        },
    ).json()["product_id"]
    acme_sub = world.client.post(
        "/subscriptions",
        headers=acme,
        json={
            "billing": {"country": "FR"},
            "customer": {"customer_id": acme_customer},
            "product_id": acme_product,
            "quantity": 1,
        },
    ).json()["subscription_id"]
    acme_path = f"/subscriptions/{acme_sub}/usage-history"
    assert world.client.get(acme_path, headers=acme).json()["items"][0]["meters"] == []
    response = world.client.get(acme_path, headers=acme, params={"meter_id": world.calls})
    assert_error(response, 404, "not_found")


def test_the_sdk_reads_the_usage_history(make_container, clock) -> None:
    live = start_live_server(make_container(backdate_window=WINDOW))
    try:
        dodo = DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live.base_url, max_retries=0)
        customer = dodo.customers.create(email="ada@example.com", name="Ada")
        calls = dodo.meters.create(
            name="Calls", event_name="api.call", measurement_unit="calls",
            aggregation={"type": "count"},
        )  # fmt: skip
        plan = dodo.products.create(
            name="Plan",
            tax_category="saas",
            price={
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 0,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "subscription_period_count": 1,
                "subscription_period_interval": "Year",
                "meters": [{"meter_id": calls.id, "price_per_unit": "0.25", "free_threshold": 2}],
            },
        )
        started = clock.now - timedelta(days=35)
        subscription = dodo.subscriptions.create(
            billing={"country": "US"},
            customer={"customer_id": customer.customer_id},
            product_id=plan.product_id,
            quantity=1,
            extra_body={"start_date": started.isoformat()},
        )
        dodo.usage_events.ingest(
            events=[
                {
                    "event_id": f"e{i}",
                    "customer_id": customer.customer_id,
                    "event_name": "api.call",
                    "timestamp": (clock.now - timedelta(days=30 + i % 2)).isoformat(),
                }
                for i in range(9)
            ]
        )
        page = dodo.subscriptions.retrieve_usage_history(subscription.subscription_id)
        assert [item.start_date for item in page.items] == [
            cycle(started, Interval.MONTH, 1, 1).start,
            started,
        ]
        [line] = page.items[1].meters
        assert (line.id, line.name, line.currency, line.free_threshold) == (
            calls.id,
            "Calls",
            "USD",
            2,
        )
        assert (line.consumed_units, line.chargeable_units, line.price_per_unit) == (
            "9",
            "7",
            "0.25",
        )
        assert line.total_price == 2  # 1.75 cents, rounded half-even
        recent = dodo.subscriptions.retrieve_usage_history(
            subscription.subscription_id,
            start_date=clock.now,
            end_date=clock.now,
            meter_id=calls.id,
            page_size=5,
            page_number=0,
        )
        assert [item.end_date for item in recent.items] == [page.items[0].end_date]
    finally:
        live.stop()


def test_the_openapi_document_describes_the_usage_history(client) -> None:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    operation = response.json()["paths"]["/subscriptions/{subscription_id}/usage-history"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {
        "start_date",
        "end_date",
        "meter_id",
        "page_number",
        "page_size",
    }

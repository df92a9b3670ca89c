"""GET /invoices/{id}/explain: each line recomputed from its events at the invoice's cut."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from infrastructure.runtime import close_cycles
from tests.api.helpers import assert_error, bearer, client_for, event, ingest, make_customer
from tests.api.test_billing_api import meter, product, subscribe
from tests.api.test_credits_api import credit_product, entitlement
from tests.api.test_credits_api import send as send_calls

PRO_ONLY = {
    "conjunction": "and",
    "clauses": [{"key": "tier", "operator": "equals", "value": "pro"}],
}


@pytest.fixture
def world(make_container, clock) -> Any:
    """A customer and a client whose events may be 40 days old."""
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        yield client, container, make_customer(client)


def started(client: Any, cid: str, product_id: str, clock: Any) -> str:
    """A subscription that began 35 days ago: cycle 0 has ended, cycle 1 is open."""
    begun = (clock.now - timedelta(days=35)).isoformat()
    response = subscribe(client, cid, product_id, start_date=begun)
    assert response.status_code == 200, response.text
    subscription_id: str = response.json()["subscription_id"]
    return subscription_id


def send(client: Any, *events: dict[str, Any]) -> None:
    response = ingest(client, *events)
    assert response.json()["ingested_count"] == len(events), response.text


def explained(client: Any, invoice_id: str) -> dict[str, Any]:
    response = client.get(f"/invoices/{invoice_id}/explain")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def by_meter(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["meter"]["meter_id"]: line for line in body["lines"]}


@pytest.fixture
def three_meters(world, clock) -> Any:
    """Count (pro calls only), max of tokens and last of a gauge level, on one product."""
    client, container, cid = world
    calls = meter(client, "api.call", {"type": "count"}, filter=PRO_ONLY)
    peak = meter(client, "api.call", {"type": "max", "key": "tokens"})
    level = meter(client, "gauge", {"type": "last", "key": "level"})
    plan = product(client, [(calls, "2", 1), (peak, "1", 0), (level, "3", 0)], fixed_price=100)
    started(client, cid, plan, clock)
    day = clock.now - timedelta(days=20)

    def call(event_id: str, days: int, tokens: int, tier: str) -> dict[str, Any]:
        at = (day + timedelta(days=days)).isoformat()
        return event(cid, event_id, timestamp=at, metadata={"tokens": tokens, "tier": tier})

    def gauge(event_id: str, days: int, value: Any) -> dict[str, Any]:
        at = (day + timedelta(days=days)).isoformat()
        return event(cid, event_id, "gauge", timestamp=at, metadata={"level": value})

    send(
        client,
        call("c1", 0, 10, "pro"),
        call("c2", 1, 40, "free"),  # ties c3 on tokens and came first: decides the max
        call("c3", 2, 40, "pro"),
        call("c4", 3, 7, "pro"),
        gauge("g1", 0, 5),
        gauge("g2", 5, "3.25"),  # a string is no number: not measured
        gauge("g3", 4, 2.5),  # the latest measured level
        event(
            cid,
            "open-1",
            timestamp=(clock.now - timedelta(hours=1)).isoformat(),
            metadata={"tokens": 999, "tier": "pro"},
        ),  # cycle 1: not on cycle 0's invoice
    )
    [first] = close_cycles(container, catch_up=True)
    return client, container, cid, first, (calls, peak, level), day


def test_each_line_is_recomputed_from_its_events_and_equals_the_invoice(three_meters) -> None:
    client, _, _, first, (calls, peak, level), _ = three_meters
    body = explained(client, first.invoice_id)
    assert (body["cut"], body["cycle_index"], body["total_minor"]) == (
        first.cut,
        0,
        first.total_minor,
    )
    invoice = client.get(f"/invoices/{first.invoice_id}").json()["invoice"]
    lines = by_meter(body)
    assert list(lines) == sorted([calls, peak, level])
    for line in invoice["lines"]:
        assert lines[line["meter_id"]]["consumed"] == line["consumed"]
        assert lines[line["meter_id"]]["line"] == line
    assert [lines[m]["events_counted"] for m in (calls, peak, level)] == [3, 4, 2]
    assert [lines[m]["consumed"] for m in (calls, peak, level)] == ["3", "40", "2.5"]


def test_a_line_names_its_meter_filter_and_aggregation(three_meters) -> None:
    client, _, _, first, (calls, peak, level), _ = three_meters
    lines = by_meter(explained(client, first.invoice_id))
    count_line = lines[calls]
    assert count_line["meter"] == {
        "meter_id": calls,
        "name": "api.call count",
        "event_name": "api.call",
        "measurement_unit": "units",
    }
    assert count_line["aggregation"] == {"type": "count", "key": None}
    assert count_line["filter"] == client.get(f"/meters/{calls}").json()["filter"]
    assert count_line["filter"]["clauses"][0]["value"] == "pro"
    assert lines[peak]["aggregation"] == {"type": "max", "key": "tokens"}
    assert lines[peak]["filter"] is None
    assert lines[level]["meter"]["event_name"] == "gauge"


def test_max_and_last_name_their_decisive_event(three_meters) -> None:
    client, _, _, first, (calls, peak, level), day = three_meters
    lines = by_meter(explained(client, first.invoice_id))
    assert lines[calls]["decisive_event"] is None
    peak_event = lines[peak]["decisive_event"]
    assert (peak_event["event_id"], peak_event["value"]) == ("c2", "40")  # earliest of equals
    assert peak_event["timestamp"].replace("Z", "+00:00") == (day + timedelta(days=1)).isoformat()
    last_event = lines[level]["decisive_event"]
    assert (last_event["event_id"], last_event["value"]) == ("g3", "2.5")


def test_late_usage_does_not_change_the_explanation_of_a_finalized_invoice(
    three_meters, clock
) -> None:
    client, container, cid, first, (calls, peak, _), day = three_meters
    before = explained(client, first.invoice_id)
    late = event(
        cid,
        "late-1",
        timestamp=(day + timedelta(days=6)).isoformat(),
        metadata={"tokens": 500, "tier": "pro"},
    )
    send(client, late)
    assert client.post("/events/c1/void", json={"reason": "test"}).status_code in (200, 201)
    container.projector.catch_up()
    assert explained(client, first.invoice_id) == before  # both count after the cut
    clock.advance(timedelta(days=31))
    [second] = close_cycles(container, catch_up=True)
    assert explained(client, first.invoice_id) == before
    [adjustment] = explained(client, second.invoice_id)["adjustments"]
    assert (adjustment["from_cut"], adjustment["to_cut"]) == (first.cut, second.cut)
    assert (adjustment["cycle_index"], adjustment["invoice_id"]) == (0, first.invoice_id)
    changed = {line["meter_id"]: line["consumed"] for line in adjustment["lines"]}
    assert (changed[calls], changed[peak]) == ("0", "460")  # one pro call in, one out


def test_a_credit_line_shows_the_grants_it_drew_in_order(world, clock) -> None:
    client, container, cid = world
    calls = meter(client, "api.call", {"type": "count"})
    ent = entitlement(client)
    started(client, cid, credit_product(client, calls, ent, amount="100"), clock)
    expiry = (clock.now + timedelta(days=3)).isoformat()  # expires first: drawn first
    manual = client.post(
        f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries",
        json={"amount": "50", "entry_type": "credit", "expires_at": expiry},
    )
    assert manual.status_code == 200, manual.text
    send_calls(client, cid, clock.now - timedelta(hours=1), "a", 170)  # cycle 1
    clock.advance(timedelta(days=31))
    records = close_cycles(container, catch_up=True)
    cycle_1 = next(r for r in records if r.cycle_index == 1)
    [line] = explained(client, cycle_1.invoice_id)["lines"]
    grants = client.get(f"/credit-entitlements/{ent}/balances/{cid}/grants").json()["items"]
    kinds = {g["id"]: g["source_type"] for g in grants}
    drawn = [(kinds[d["grant_id"]], d["credits"]) for d in line["credit_draws"]]
    assert drawn == [("api", "50"), ("subscription", "100")]  # api: the manual credit
    assert {d["credit_entitlement_id"] for d in line["credit_draws"]} == {ent}
    assert line["credit_overage"] == [
        {"credit_entitlement_id": ent, "credits": "20", "billed_credits": "20"}
    ]
    assert line["credit_link"] == {"credit_entitlement_id": ent, "meter_units_per_credit": "1"}
    assert (line["events_counted"], line["consumed"]) == (170, line["line"]["consumed"])
    assert line["line"]["credits_applied"] == "150"


def test_unknown_and_other_business_invoices_are_404(three_meters, clock) -> None:
    client, container, _, first, _, _ = three_meters
    assert_error(client.get("/invoices/inv_nope/explain"), 404, "not_found")
    other = bearer(container.keys.create("acme", "admin", clock.now))
    response = client.get(f"/invoices/{first.invoice_id}/explain", headers=other)
    assert_error(response, 404, "not_found")

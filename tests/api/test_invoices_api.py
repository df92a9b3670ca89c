"""Finalized invoices: once per cycle, never changed, late usage carried as an adjustment."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from application.billing import recompute
from infrastructure.runtime import close_cycles
from tests.api.helpers import assert_error, bearer, client_for, make_customer
from tests.api.test_billing_api import meter, product, subscribe


@pytest.fixture
def setup(make_container, clock) -> Any:
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        product_id = product(client, [(calls, "2", 10)], fixed_price=100)
        start = clock.now - timedelta(days=35)
        response = subscribe(client, cid, product_id, start_date=start.isoformat())
        assert response.status_code == 200, response.text
        yield client, container, cid, response.json()["subscription_id"], calls


def send(client: Any, cid: str, at: Any, ids: list[str]) -> None:
    events = [
        {"event_id": i, "customer_id": cid, "event_name": "api.call", "timestamp": at.isoformat()}
        for i in ids
    ]
    assert client.post("/events/ingest", json={"events": events}).json()["ingested_count"] == len(
        ids
    )


def test_a_cycle_is_finalized_once_and_recomputes_to_the_same_bytes(setup, clock) -> None:
    client, container, cid, sub, calls = setup
    send(client, cid, clock.now - timedelta(days=20), [f"e{i}" for i in range(25)])
    [record] = close_cycles(container, catch_up=True)
    assert close_cycles(container, catch_up=True) == []  # finalizing twice changes nothing
    body = client.get(f"/invoices/{record.invoice_id}").json()
    assert body["cycle_index"] == 0
    assert body["total_minor"] == 100 + (25 - 10) * 2
    assert body["invoice"]["lines"][0]["consumed"] == "25"
    listed = client.get("/invoices", params={"subscription_id": sub}).json()["items"]
    assert [i["invoice_id"] for i in listed] == [record.invoice_id]
    assert client.get("/invoices", params={"customer_id": "cus_other"}).json()["items"] == []
    # Anyone can fold the cycle again, flat from its events, at the recorded cut and get
    # the same bytes the tallies gave.
    again = recompute(container.ledger, container.reads, record)
    assert again.canonical_bytes().decode() == record.document
    assert again.sha256 == body["sha256"]
    # What was billed may no longer change what it measures.
    changed = client.patch(f"/meters/{calls}", json={"aggregation": {"type": "sum", "key": "n"}})
    assert_error(changed, 409, "meter_definition_locked")


def test_late_usage_appears_on_the_next_invoice_as_an_adjustment(setup, clock) -> None:
    client, container, cid, _, _ = setup
    in_first_cycle = clock.now - timedelta(days=20)
    send(client, cid, in_first_cycle, [f"e{i}" for i in range(25)])
    [first] = close_cycles(container, catch_up=True)
    send(client, cid, in_first_cycle, ["late-1", "late-2", "late-3"])  # after finalization
    clock.advance(timedelta(days=31))
    send(client, cid, clock.now - timedelta(hours=1), ["now-1"])
    [second] = close_cycles(container, catch_up=True)
    assert client.get(f"/invoices/{first.invoice_id}").json()["sha256"] == first.sha256
    body = client.get(f"/invoices/{second.invoice_id}").json()
    [adjustment] = body["invoice"]["adjustments"]
    assert adjustment["lines"][0]["consumed"] == "3"
    assert adjustment["lines"][0]["amount_minor"] == 6
    assert (adjustment["from_cut"], adjustment["to_cut"]) == (first.cut, second.cut)
    # 100 fixed + nothing above 10 free in cycle 1 + the 3 late calls of cycle 0.
    assert body["total_minor"] == 100 + 6
    # A third cycle carries nothing more: cycle 0 is now folded up to the second cut.
    clock.advance(timedelta(days=31))
    [third] = close_cycles(container, catch_up=True)
    assert client.get(f"/invoices/{third.invoice_id}").json()["invoice"]["adjustments"] == []


def test_invoices_of_another_business_are_404(setup, clock) -> None:
    client, container, cid, _, _ = setup
    send(client, cid, clock.now - timedelta(days=20), ["e1"])
    [record] = close_cycles(container, catch_up=True)
    other = bearer(container.keys.create("acme", "admin", clock.now))
    assert_error(client.get(f"/invoices/{record.invoice_id}", headers=other), 404, "not_found")
    assert client.get("/invoices", headers=other).json()["items"] == []
    assert_error(client.get("/invoices/inv_nope"), 404, "not_found")
    assert_error(client.get("/invoices", params={"page_size": 0}), 400, "invalid_parameter")

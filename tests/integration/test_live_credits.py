"""Live credit: an open cycle's usage draws its credit as it arrives; finalizing draws it once."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from infrastructure.runtime import close_cycles, draw_live_now
from tests.api.helpers import client_for, make_customer
from tests.api.test_billing_api import meter, subscribe
from tests.api.test_credits_api import credit_product, entitlement, send


def balance(client: Any, ent: str, cid: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/credit-entitlements/{ent}/balances/{cid}").json()
    return body


def entries(client: Any, ent: str, cid: str) -> list[dict[str, Any]]:
    path = f"/credit-entitlements/{ent}/balances/{cid}/ledger"
    items: list[dict[str, Any]] = client.get(path, params={"page_size": 100}).json()["items"]
    return items[::-1]  # oldest first


def test_usage_draws_credit_as_it_arrives_and_finalizing_draws_it_once(
    make_container, clock
) -> None:
    container = make_container()
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client)  # overage billed at billing
        subscribe(client, cid, credit_product(client, calls, ent))  # 1,000 credits a cycle
        clock.advance(timedelta(days=3))
        send(client, cid, clock.now, "a", 600)
        container.projector.catch_up()
        assert draw_live_now(container) == 1
        container.projector.catch_up()
        assert balance(client, ent, cid)["balance"] == "400"
        deducted = [
            e for e in entries(client, ent, cid) if e["transaction_type"] == "credit_deducted"
        ]
        assert [(e["amount"], e["is_credit"], e["reference_type"]) for e in deducted] == [
            ("600", False, "subscription_cycle")
        ]
        assert draw_live_now(container) == 0  # nothing new: nothing recorded
        send(client, cid, clock.now, "b", 500)
        container.projector.catch_up()
        draw_live_now(container)
        container.projector.catch_up()
        now = balance(client, ent, cid)
        assert (now["balance"], now["overage"]) == ("0", "100")  # 1,100 used of 1,000

        clock.advance(timedelta(days=30))  # the cycle ends; finalized a grace later
        [record] = close_cycles(container, catch_up=True)
        container.projector.catch_up()
        document = json.loads(record.document)
        drawn = sum(Decimal(d["credits"]) for d in document["credit_draws"])
        assert drawn == 1000
        cycle = [e for e in entries(client, ent, cid) if e["transaction_type"] == "credit_deducted"]
        given = sum(Decimal(e["amount"]) * (-1 if e["is_credit"] else 1) for e in cycle)
        assert given == drawn  # live draws and finalization never count a credit twice
        charged = [
            e for e in entries(client, ent, cid) if e["transaction_type"] == "overage_charged"
        ]
        assert sum(Decimal(e["amount"]) for e in charged) == 100
        assert document["lines"][0]["credits_applied"] == "1000"
        assert balance(client, ent, cid)["overage"] == "0"  # reset once billed


def test_a_void_before_finalizing_gives_the_credit_back(make_container, clock) -> None:
    container = make_container()
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client)
        subscribe(client, cid, credit_product(client, calls, ent))
        clock.advance(timedelta(days=3))
        send(client, cid, clock.now, "a", 10)
        container.projector.catch_up()
        draw_live_now(container)
        container.projector.catch_up()
        assert balance(client, ent, cid)["balance"] == "990"
        assert client.post("/events/a-0/void", json={}).status_code == 200
        container.projector.catch_up()
        draw_live_now(container)
        container.projector.catch_up()
        assert balance(client, ent, cid)["balance"] == "991"
        back = entries(client, ent, cid)[-1]
        assert (back["transaction_type"], back["amount"], back["is_credit"]) == (
            "credit_deducted",
            "1",
            True,
        )


def test_the_running_service_shows_usage_drawn_within_about_a_second(make_container, clock):
    """No hand-cranking: the runtime's own loops (projector, live draw every 0.25 s)."""
    container = make_container(live_credit_seconds=0.25)
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client)
        subscribe(client, cid, credit_product(client, calls, ent))
        clock.advance(timedelta(days=3))
        send(client, cid, clock.now, "a", 600)
        sent = time.monotonic()
        seen = balance(client, ent, cid)
        while seen["balance"] != "400" and time.monotonic() - sent < 10:
            time.sleep(0.02)
            seen = balance(client, ent, cid)
        waited = time.monotonic() - sent
        assert seen["balance"] == "400", seen
        print(f"balance drawn {waited:.2f} s after the ingest answered")  # noqa: T201


def deducted(client: Any, ent: str, cid: str) -> Decimal:
    """Credits the ledger's credit_deducted entries took, net of what they gave back."""
    cycle = [e for e in entries(client, ent, cid) if e["transaction_type"] == "credit_deducted"]
    return sum((Decimal(e["amount"]) * (-1 if e["is_credit"] else 1) for e in cycle), Decimal(0))


def test_auto_repay_the_next_cycle_draws_its_grant_minus_the_deficit_live_and_finalized(
    make_container, clock
) -> None:
    container = make_container()
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client, overage_behavior="carry_deficit_auto_repay")
        subscribe(client, cid, credit_product(client, calls, ent))  # 1,000 credits a cycle
        clock.advance(timedelta(days=3))
        send(client, cid, clock.now, "a", 1100)
        container.projector.catch_up()
        draw_live_now(container)
        container.projector.catch_up()
        assert (balance(client, ent, cid)["balance"], balance(client, ent, cid)["overage"]) == (
            "0",
            "100",
        )
        clock.advance(timedelta(days=30))  # cycle 1 has begun; cycle 0 is finalized
        [first] = close_cycles(container, catch_up=True)
        container.projector.catch_up()
        assert first.total_minor == 100  # the overage is carried, not billed
        now = balance(client, ent, cid)
        assert (now["balance"], now["overage"]) == ("900", "0")  # cycle 1's grant repaid 100
        repaid = [e for e in entries(client, ent, cid) if e["transaction_type"] == "overage_reset"]
        assert [(e["amount"], e["balance_before"], e["balance_after"]) for e in repaid] == [
            ("100", "1000", "900")
        ]
        send(client, cid, clock.now, "b", 950)
        container.projector.catch_up()
        draw_live_now(container)
        container.projector.catch_up()
        live = balance(client, ent, cid)
        assert (live["balance"], live["overage"]) == ("0", "50")  # 900 of the 950 covered
        live_drawn = deducted(client, ent, cid)
        clock.advance(timedelta(days=30))
        [second] = close_cycles(container, catch_up=True)
        container.projector.catch_up()
        document = json.loads(second.document)
        drawn = sum(Decimal(d["credits"]) for d in document["credit_draws"])
        assert drawn == 900
        assert deducted(client, ent, cid) == live_drawn == 1000 + 900  # each credit once
        final = balance(client, ent, cid)
        # cycle 1's own 50 over, repaid by cycle 2's grant (it has begun)
        assert (final["balance"], final["overage"]) == ("950", "0")


def test_carry_deficit_keeps_the_deficit_and_the_next_grant_stays_whole(
    make_container, clock
) -> None:
    container = make_container()
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client, overage_behavior="carry_deficit")
        subscribe(client, cid, credit_product(client, calls, ent))
        clock.advance(timedelta(days=3))
        send(client, cid, clock.now, "a", 1100)
        clock.advance(timedelta(days=30))
        [first] = close_cycles(container, catch_up=True)
        container.projector.catch_up()
        assert first.total_minor == 100
        now = balance(client, ent, cid)
        assert (now["balance"], now["overage"]) == ("1000", "100")
        kinds = [e["transaction_type"] for e in entries(client, ent, cid)]
        assert "overage_reset" not in kinds
        assert kinds.count("overage_charged") == 1
        send(client, cid, clock.now, "b", 300)
        container.projector.catch_up()
        draw_live_now(container)
        container.projector.catch_up()
        live = balance(client, ent, cid)
        assert (live["balance"], live["overage"]) == ("700", "100")

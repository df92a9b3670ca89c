"""Webhooks delivered to a real receiver on 127.0.0.1, verified with the SDK's ``unwrap``.

Every message derives from a fact in the log (the outbox projection), is signed
with the endpoint's secret per the Standard Webhooks spec, and parses as the
``dodopayments`` SDK's webhook event.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from dodopayments import DodoPayments

from application.delivery import RETRY_SCHEDULE, Deliverer, Outcome, next_attempt
from application.webhooks import disable_failing
from infrastructure.rebuild import rebuild
from infrastructure.runtime import close_cycles, draw_live_now
from tests.api.helpers import assert_error, client_for, make_customer
from tests.api.test_billing_api import meter, subscribe
from tests.api.test_credits_api import credit_product, entitlement, send
from tests.integration.receiver import Received, Receiver

SDK = DodoPayments(bearer_token="unused", base_url="http://127.0.0.1:9", max_retries=0)


@pytest.fixture
def receiver() -> Any:
    found = Receiver().start()
    yield found
    found.stop()


def endpoint(client: Any, url: str, **fields: Any) -> tuple[str, str]:
    response = client.post("/webhooks", json={"url": url, **fields})
    assert response.status_code == 200, response.text
    webhook_id: str = response.json()["id"]
    secret: str = client.get(f"/webhooks/{webhook_id}/secret").json()["secret"]
    return webhook_id, secret


def types(received: list[Received]) -> list[str]:
    return [json.loads(r.body)["type"] for r in received]


def unwrapped(received: list[Received], secret: str) -> list[Any]:
    return [SDK.webhooks.unwrap(r.body, headers=r.headers, key=secret) for r in received]


def settle(container: Any) -> None:
    """Projections caught up and the live draw taken: the outbox has what is due."""
    container.projector.catch_up()
    draw_live_now(container)
    container.projector.catch_up()


def test_every_message_type_arrives_signed_once_and_parses_with_the_sdk(
    make_container, clock, receiver
) -> None:
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        hook, secret = endpoint(client, f"{receiver.url}/all", headers={"X-Team": "ops"})
        invoices_only, _ = endpoint(
            client, f"{receiver.url}/invoices", filter_types=["invoice.finalized"]
        )
        endpoint(client, f"{receiver.url}/off", disabled=True)
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client, rollover_enabled=True, rollover_percentage=50)
        product_id = credit_product(client, calls, ent, low_balance_threshold_percent=50)
        begun = (clock.now - timedelta(days=35)).isoformat()
        response = subscribe(client, cid, product_id, start_date=begun)
        assert response.status_code == 200, response.text
        sub = response.json()["subscription_id"]
        alert = client.post("/alerts", json={"meter_id": calls, "threshold": 100, "period": "day"})
        assert alert.status_code == 200, alert.text
        settle(container)
        send(client, cid, clock.now - timedelta(days=20), "a", 600)  # in cycle 0: 600 of 1,000
        settle(container)
        path = f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries"
        manual = client.post(path, json={"amount": "5", "entry_type": "credit", "reason": "gift"})
        assert manual.status_code == 200, manual.text
        close_cycles(container, catch_up=True)  # cycle 0 finalized, 1 begun
        settle(container)
        send(client, cid, clock.now - timedelta(days=20, hours=1), "late", 3)  # into cycle 0
        send(client, cid, clock.now - timedelta(hours=1), "b", 2500)  # cycle 1: into overage
        settle(container)
        cancel = client.patch(f"/subscriptions/{sub}", json={"cancel_at_next_billing_date": True})
        assert cancel.status_code == 200, cancel.text
        clock.advance(timedelta(days=30))
        close_cycles(container, catch_up=True)  # cycle 1 finalized; the subscription ends
        settle(container)

        wanted = {
            "credit.added",
            "credit.deducted",
            "credit.rolled_over",
            "credit.rollover_forfeited",
            "credit.overage_charged",
            "credit.overage_reset",
            "credit.manual_adjustment",
            "credit.balance_low",
            "subscription.active",
            "subscription.updated",
            "subscription.renewed",
            "subscription.cancelled",
            "invoice.finalized",
            "invoice.adjusted",
            "usage.threshold_reached",
        }
        got = receiver.wait_for(lambda r: wanted <= set(types(r)), path="/all")
        events = unwrapped(got, secret)  # every one verified and parsed by the SDK
        assert {e.type for e in events} == set(types(got))
        assert all(r.headers["x-team"] == "ops" for r in got)
        ids = [r.headers["webhook-id"] for r in got]
        assert len(ids) == len(set(ids))  # each message once
        counted = Counter(types(got))
        assert counted["usage.threshold_reached"] == 2  # one per day with 100 calls or more
        # Cycle 0's 600 were drawn from 2,000 (cycle 1 had begun): only cycle 1's draw crossed.
        assert counted["credit.balance_low"] == 1
        low = next(e for e in events if e.type == "credit.balance_low")
        assert (low.data.threshold_percent, low.data.threshold_amount) == (50, "500")
        assert low.data.available_balance == "0"
        assert low.data.subscription_id == sub
        entry = next(e for e in events if e.type == "credit.manual_adjustment")
        assert (entry.data.amount, entry.data.customer_id) == ("5", cid)
        active = next(e for e in events if e.type == "subscription.active")
        assert (active.data.subscription_id, active.data.customer.customer_id) == (sub, cid)
        adjusted = [json.loads(r.body) for r in got if "invoice.adjusted" in r.body]
        assert len(adjusted) == 3
        assert {a["data"]["cause"] for a in adjusted} == {"late_usage"}

        finalized = receiver.delivered("/invoices")
        assert set(types(finalized)) == {"invoice.finalized"}
        assert len(finalized) == 2
        document = json.loads(finalized[0].body)["data"]
        assert len(document["sha256"]) == 64
        assert document["invoice"]["lines"]
        assert receiver.delivered("/off") == []

        # The credit.deducted a receiver adds up for cycle 0 is what its invoice drew.
        cycle0 = json.loads(next(r.body for r in finalized if '"cycle_index":0' in r.body))["data"]
        drawn = sum(Decimal(d["credits"]) for d in cycle0["invoice"]["credit_draws"])
        deducted = sum(
            Decimal(e.data.amount)
            for e in events
            if e.type == "credit.deducted"
            and (e.data.reference_id or "").startswith((f"{sub}:0", cycle0["invoice_id"]))
        )
        assert deducted == drawn == 600

        listed = client.get(f"/webhooks/{hook}/messages", params={"limit": 100}).json()["data"]
        assert {m["status"] for m in listed} == {"delivered"}
        assert {m["id"] for m in listed} == set(ids)
        assert client.get(f"/webhooks/{invoices_only}/messages").json()["data"][0]["attempts"] == 1


def test_a_receiver_failing_for_a_while_gets_every_message_once_with_attempts_recorded(
    make_container, clock
) -> None:
    failing = Receiver(answer=lambda n: 500 if n < 6 else 200).start()
    container = make_container()
    try:
        with client_for(container) as client:
            hook, secret = endpoint(
                client, f"{failing.url}/x", filter_types=["credit.manual_adjustment"]
            )
            cid = make_customer(client)
            ent = entitlement(client)
            path = f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries"
            for amount in ("1", "2", "3"):
                response = client.post(path, json={"amount": amount, "entry_type": "credit"})
                assert response.status_code == 200, response.text
            container.projector.catch_up()
            for _ in range(100):  # the retry schedule's first delays, passed by hand
                if len(failing.delivered()) == 3:
                    break
                clock.advance(timedelta(minutes=10))
                time.sleep(0.1)
            delivered = failing.delivered()
            assert sorted(e.data.amount for e in unwrapped(delivered, secret)) == ["1", "2", "3"]
            ids = [r.headers["webhook-id"] for r in delivered]
            assert len(set(ids)) == 3 == len(ids)  # each id once among the successes
            every = {r.headers["webhook-id"] for r in failing.requests}
            assert every == set(ids)  # retries carry the same id
            listed = client.get(f"/webhooks/{hook}/messages").json()["data"]
            assert {m["status"] for m in listed} == {"delivered"}
            assert sum(m["attempts"] for m in listed) == len(failing.requests)
            assert any(m["attempts"] > 1 for m in listed)
    finally:
        failing.stop()


def manual_credit(client: Any, ent: str, cid: str, amount: str) -> None:
    path = f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries"
    response = client.post(path, json={"amount": amount, "entry_type": "credit"})
    assert response.status_code == 200, response.text


def test_rate_limit_spaces_deliveries_and_a_deleted_or_disabled_endpoint_gets_nothing_more(
    make_container, receiver
) -> None:
    container = make_container()
    with client_for(container) as client:
        endpoint(client, f"{receiver.url}/paced", rate_limit=5)
        doomed, _ = endpoint(client, f"{receiver.url}/doomed")
        paused, _ = endpoint(client, f"{receiver.url}/paused")
        cid = make_customer(client)
        ent = entitlement(client)
        for amount in range(1, 7):
            manual_credit(client, ent, cid, str(amount))
        container.projector.catch_up()
        got = receiver.wait_for(lambda found: len(found) == 6, path="/paced")
        times = sorted(r.received_at for r in got)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.18  # at most 5 a second (0.2 s apart, less the clock's grain)
        receiver.wait_for(lambda found: len(found) == 6, path="/doomed")
        receiver.wait_for(lambda found: len(found) == 6, path="/paused")

        assert client.delete(f"/webhooks/{doomed}").status_code == 204
        assert client.patch(f"/webhooks/{paused}", json={"disabled": True}).status_code == 200
        manual_credit(client, ent, cid, "7")
        container.projector.catch_up()
        receiver.wait_for(lambda found: len(found) == 7, path="/paced")
        time.sleep(0.5)  # a delivery loop round or two
        assert len(receiver.delivered("/doomed")) == 6
        assert len(receiver.delivered("/paused")) == 6
        # Enabled again, it receives what happens from then on, not what it missed.
        assert client.patch(f"/webhooks/{paused}", json={"disabled": False}).status_code == 200
        manual_credit(client, ent, cid, "8")
        container.projector.catch_up()
        got = receiver.wait_for(lambda found: len(found) == 7, path="/paused")
        assert json.loads(got[-1].body)["data"]["amount"] == "8"
        assert len(receiver.delivered("/doomed")) == 6


def test_unused_credit_expires_and_a_subscription_term_expires(make_container, clock, receiver):
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        _, secret = endpoint(
            client, receiver.url, filter_types=["credit.expired", "subscription.expired"]
        )
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client)
        response = client.post(
            "/products",
            json={
                "name": "One month of credits",
                "tax_category": "saas",
                "price": {
                    "type": "usage_based_price",
                    "currency": "USD",
                    "fixed_price": 100,
                    "payment_frequency_count": 1,
                    "payment_frequency_interval": "Month",
                    "subscription_period_count": 1,
                    "subscription_period_interval": "Month",
                    "meters": [
                        {
                            "meter_id": calls,
                            "price_per_unit": "2",
                            "free_threshold": 0,
                            "credit_entitlement_id": ent,
                            "meter_units_per_credit": "1",
                        }
                    ],
                },
                "credit_entitlements": [{"credit_entitlement_id": ent, "credits_amount": "1000"}],
            },
        )
        assert response.status_code == 200, response.text
        product_id = response.json()["product_id"]
        begun = (clock.now - timedelta(days=35)).isoformat()
        assert subscribe(client, cid, product_id, start_date=begun).status_code == 200
        send(client, cid, clock.now - timedelta(days=20), "a", 300)
        close_cycles(container, catch_up=True)
        settle(container)
        got = receiver.wait_for(lambda found: len(found) == 2)
        events = {e.type: e for e in unwrapped(got, secret)}
        assert events["credit.expired"].data.amount == "700"
        assert events["subscription.expired"].data.status == "expired"


def test_alerts_are_refused_naming_the_field(client) -> None:
    calls = meter(client, "api.call", {"type": "count"})
    for body, field in (
        ({"meter_id": calls, "threshold": -1}, "threshold"),
        ({"meter_id": calls, "threshold": "lots"}, "threshold"),
        ({"meter_id": "mtr_none", "threshold": 10}, "meter_id"),
        ({"threshold": 10}, "meter_id"),
        ({"meter_id": calls}, "threshold"),
        ({"meter_id": calls, "threshold": 10, "period": "week"}, "period"),
        ({"meter_id": calls, "threshold": 10, "customer_id": "cus_none"}, "customer_id"),
        ({"meter_id": calls, "threshold": 10, "colour": "red"}, "colour"),
    ):
        error = assert_error(client.post("/alerts", json=body), 422, "invalid_alert")
        assert error["message"].startswith(field), error
    assert client.get("/alerts").json()["items"] == []
    made = client.post("/alerts", json={"meter_id": calls, "threshold": "2.5", "period": "month"})
    alert = made.json()
    assert (alert["threshold"], alert["period"], alert["customer_id"]) == ("2.5", "month", None)
    assert [a["id"] for a in client.get("/alerts").json()["items"]] == [alert["id"]]
    assert client.delete(f"/alerts/{alert['id']}").status_code == 204
    assert client.get("/alerts").json()["items"] == []
    assert_error(client.get(f"/alerts/{alert['id']}"), 404, "not_found")


def test_a_rebuilt_outbox_derives_the_same_messages_and_sends_none_again(
    make_container, receiver
) -> None:
    container = make_container()
    with client_for(container) as client:
        hook, _ = endpoint(client, receiver.url)
        cid = make_customer(client)
        ent = entitlement(client)
        for amount in ("1", "2"):
            manual_credit(client, ent, cid, amount)
        container.projector.catch_up()
        receiver.wait_for(lambda found: len(found) == 2)
        before = client.get(f"/webhooks/{hook}/messages").json()["data"]
        assert rebuild(container, "outbox") > 0
        manual_credit(client, ent, cid, "3")
        container.projector.catch_up()
        receiver.wait_for(lambda found: len(found) == 3)
        time.sleep(0.5)
        assert len(receiver.requests) == 3  # the first two were not sent again
        after = client.get(f"/webhooks/{hook}/messages").json()["data"]
        assert after[:2] == before


class FailingSender:
    def __init__(self) -> None:
        self.attempts = 0

    def send(self, route: Any, pending: Any, secret: str, headers: Any) -> Outcome:
        self.attempts += 1
        return Outcome(503, "unavailable")


def test_an_endpoint_failing_every_attempt_for_a_day_is_disabled_and_says_why(
    make_container, clock
) -> None:
    container = make_container(webhook_poll_seconds=0)  # this test runs the delivery loop
    with client_for(container) as client:
        hook, _ = endpoint(client, "http://127.0.0.1:9/never")
        cid = make_customer(client)
        manual_credit(client, entitlement(client), cid, "1")
        container.projector.catch_up()
        sender = FailingSender()
        outbox = container.views["outbox"]
        disabled: list[str] = []
        deliverer = Deliverer(
            outbox,
            outbox.routes,
            container.webhook_secrets,
            sender,
            clock,
            lambda business, endpoint_id, reason, at: (
                disabled.append(reason),
                disable_failing(container.ledger, business, endpoint_id, reason, at),
            ),
        )
        try:
            for _ in range(len(RETRY_SCHEDULE) + 1):
                while not deliverer.step():
                    clock.advance(timedelta(minutes=1))
                deliverer.drain()
        finally:
            deliverer.close()
        assert sender.attempts == len(RETRY_SCHEDULE) + 1  # eight attempts, over a day
        [message] = client.get(f"/webhooks/{hook}/messages").json()["data"]
        assert (message["status"], message["attempts"]) == ("failed", 8)
        assert (message["last_status_code"], message["next_attempt_at"]) == (503, None)
        assert len(disabled) == 1
        container.projector.catch_up()
        found = client.get(f"/webhooks/{hook}").json()
        assert found["disabled"] is True
        assert found["disabled_reason"].startswith("every delivery attempt since")
        # An operator retries it once the receiver is back: same id, due at once.
        retried = client.post(f"/webhooks/{hook}/messages/{message['id']}/retry").json()
        assert (retried["id"], retried["status"]) == (message["id"], "pending")
        assert_error(client.post(f"/webhooks/{hook}/messages/msg_none/retry"), 404, "not_found")


def test_retry_schedule_covers_more_than_a_day_with_jitter() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    total = timedelta(0)
    for attempts in range(1, len(RETRY_SCHEDULE) + 1):
        low = next_attempt(attempts, at, rng=lambda: 0.0)
        high = next_attempt(attempts, at, rng=lambda: 0.999)
        assert low is not None
        assert high is not None
        assert low - at == timedelta(seconds=RETRY_SCHEDULE[attempts - 1])
        assert high - at < timedelta(seconds=RETRY_SCHEDULE[attempts - 1] * 1.1)
        total += low - at
    assert total > timedelta(hours=24)
    assert next_attempt(len(RETRY_SCHEDULE) + 1, at) is None


def test_a_carried_deficit_and_its_repayment_arrive_as_overage_messages(
    make_container, clock, receiver
):
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        _, secret = endpoint(
            client, receiver.url, filter_types=["credit.overage_charged", "credit.overage_reset"]
        )
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client, overage_behavior="carry_deficit_auto_repay")
        begun = (clock.now - timedelta(days=35)).isoformat()
        assert (
            subscribe(client, cid, credit_product(client, calls, ent), start_date=begun).status_code
            == 200
        )
        send(client, cid, clock.now - timedelta(days=20), "a", 1100)
        close_cycles(container, catch_up=True)  # 100 over: carried, then repaid from cycle 1's
        settle(container)
        got = receiver.wait_for(lambda found: len(found) == 2)
        events = sorted(unwrapped(got, secret), key=lambda e: e.type)
        assert [(e.type, e.data.amount) for e in events] == [
            ("credit.overage_charged", "100"),
            ("credit.overage_reset", "100"),
        ]
        balance = client.get(f"/credit-entitlements/{ent}/balances/{cid}").json()
        assert (balance["balance"], balance["overage"]) == ("900", "0")

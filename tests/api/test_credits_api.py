"""Credits through the API: entitlements, grants each cycle, drawdown into invoices,
expiry, rollover, manual ledger entries, and the balance projection rebuilt from the log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from dodopayments import DodoPayments

from infrastructure.rebuild import rebuild
from infrastructure.runtime import close_cycles
from tests.api.helpers import BOOTSTRAP_KEY, assert_error, bearer, client_for, make_customer
from tests.api.test_billing_api import meter, subscribe


def entitlement(client: Any, **settings: Any) -> str:
    body = {
        "name": "API credits",
        "unit": "calls",
        "precision": 0,
        "overage_enabled": True,
        "overage_behavior": "invoice_at_billing",
        "rollover_enabled": False,
        **settings,
    }
    response = client.post("/credit-entitlements", json=body)
    assert response.status_code == 200, response.text
    entitlement_id: str = response.json()["id"]
    return entitlement_id


def monthly_price(*meters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "usage_based_price",
        "currency": "USD",
        "fixed_price": 0,
        "payment_frequency_count": 1,
        "payment_frequency_interval": "Month",
        "meters": list(meters),
        **extra,
    }


def linked(meter_id: str, ent: str, per_credit: str = "1", price: str = "1") -> dict[str, Any]:
    """A priced meter that draws on ``ent``."""
    return {
        "meter_id": meter_id,
        "price_per_unit": price,
        "credit_entitlement_id": ent,
        "meter_units_per_credit": per_credit,
    }


def post_product(client: Any, price: dict[str, Any], attachments: list[Any] | None = None) -> Any:
    body = {"name": "P", "tax_category": "saas", "price": price}
    if attachments is not None:
        body["credit_entitlements"] = attachments
    return client.post("/products", json=body)


def credit_product(
    client: Any, calls: str, ent: str, amount: str = "1000", per_credit: str = "1", **attach: Any
) -> str:
    response = client.post(
        "/products",
        json={
            "name": "Credit plan",
            "tax_category": "saas",
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 100,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "meters": [
                    {
                        "meter_id": calls,
                        "price_per_unit": "2",
                        "free_threshold": 0,
                        "credit_entitlement_id": ent,
                        "meter_units_per_credit": per_credit,
                    }
                ],
            },
            "credit_entitlements": [
                {"credit_entitlement_id": ent, "credits_amount": amount, **attach}
            ],
        },
    )
    assert response.status_code == 200, response.text
    product_id: str = response.json()["product_id"]
    return product_id


def send(client: Any, cid: str, at: Any, prefix: str, count: int) -> None:
    for start in range(0, count, 1000):
        events = [
            {
                "event_id": f"{prefix}-{i}",
                "customer_id": cid,
                "event_name": "api.call",
                "timestamp": at.isoformat(),
            }
            for i in range(start, min(start + 1000, count))
        ]
        response = client.post("/events/ingest", json={"events": events})
        assert response.json()["ingested_count"] == len(events), response.text


@pytest.fixture
def world(make_container, clock) -> Any:
    """A customer, a count meter, and a subscription that began 35 days ago (cycle 0 ended)."""
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})

        def start(ent: str, **attach: Any) -> str:
            product_id = credit_product(client, calls, ent, **attach)
            begun = (clock.now - timedelta(days=35)).isoformat()
            response = subscribe(client, cid, product_id, start_date=begun)
            assert response.status_code == 200, response.text
            subscription_id: str = response.json()["subscription_id"]
            return subscription_id

        yield client, container, cid, calls, start


def ledger_of(client: Any, ent: str, cid: str) -> list[tuple[str, str, str, str]]:
    """(type, amount, balance_before, balance_after), oldest first."""
    response = client.get(
        f"/credit-entitlements/{ent}/balances/{cid}/ledger", params={"page_size": 100}
    )
    assert response.status_code == 200, response.text
    return [
        (e["transaction_type"], e["amount"], e["balance_before"], e["balance_after"])
        for e in reversed(response.json()["items"])
    ]


def test_credits_cover_part_of_a_cycle_and_the_overage_is_billed(world, clock) -> None:
    client, container, cid, _, start = world
    ent = entitlement(client)
    start(ent)
    send(client, cid, clock.now - timedelta(days=20), "a", 1500)
    [record] = close_cycles(container, catch_up=True)
    line = client.get(f"/invoices/{record.invoice_id}").json()["invoice"]["lines"][0]
    assert (line["consumed"], line["credits_applied"], line["billed_units"]) == (
        "1500",
        "1000",
        "500",
    )
    assert record.total_minor == 100 + 500 * 2
    assert ledger_of(client, ent, cid)[:4] == [
        ("credit_added", "1000", "0", "1000"),  # cycle 0's grant
        ("credit_added", "1000", "1000", "2000"),  # cycle 1's grant (it has begun)
        ("credit_deducted", "1000", "2000", "1000"),
        ("overage_charged", "500", "1000", "1000"),
    ]
    balance = client.get(f"/credit-entitlements/{ent}/balances/{cid}").json()
    assert balance["balance"] == "1000"  # cycle 1's grant; cycle 0's is spent


def test_unused_credits_expire_at_the_cycle_end(world, clock) -> None:
    client, container, cid, _, start = world
    ent = entitlement(client)
    start(ent)
    send(client, cid, clock.now - timedelta(days=20), "a", 300)
    [record] = close_cycles(container, catch_up=True)
    assert record.total_minor == 100  # all 300 covered
    assert ("credit_expired", "700", "1700", "1000") in ledger_of(client, ent, cid)
    expired = client.get(
        f"/credit-entitlements/{ent}/balances/{cid}/grants", params={"status": "expired"}
    ).json()["items"]
    assert [(g["initial_amount"], g["remaining_amount"], g["is_expired"]) for g in expired] == [
        ("1000", "0", True)
    ]


def test_credits_roll_over_by_percentage_up_to_the_maximum_count(world, clock) -> None:
    client, container, cid, _, start = world
    ent = entitlement(client, rollover_enabled=True, rollover_percentage=50, max_rollover_count=1)
    sub = start(ent)
    send(client, cid, clock.now - timedelta(days=20), "a", 300)
    close_cycles(container, catch_up=True)
    entries = ledger_of(client, ent, cid)
    assert ("rollover_forfeited", "350", "1700", "1350") in entries
    assert ("credit_rolled_over", "350", "1350", "1350") in entries
    # Cycle 1 may draw on its own 1,000 and the 350 rolled over: 1,200 calls cost nothing.
    send(client, cid, clock.now - timedelta(hours=2), "b", 1200)
    body = client.get(f"/subscriptions/{sub}/invoice-preview").json()
    line = body["invoice"]["lines"][0]
    assert (line["credits_applied"], line["billed_units"]) == ("1200", "0")
    grants = client.get(f"/credit-entitlements/{ent}/balances/{cid}/grants").json()["items"]
    rolled = [g for g in grants if g["source_type"] == "rollover"]
    assert [(g["initial_amount"], g["rollover_count"]) for g in rolled] == [("350", 1)]


def test_without_overage_billing_uncovered_usage_is_forgiven(world, clock) -> None:
    client, container, cid, _, start = world
    ent = entitlement(client, overage_enabled=False, overage_behavior=None)
    start(ent)
    send(client, cid, clock.now - timedelta(days=20), "a", 1500)
    [record] = close_cycles(container, catch_up=True)
    line = client.get(f"/invoices/{record.invoice_id}").json()["invoice"]["lines"][0]
    assert (line["credits_applied"], line["forgiven"], line["billed_units"]) == (
        "1000",
        "500",
        "0",
    )
    assert record.total_minor == 100


def test_units_per_credit_and_the_overage_limit(world, clock) -> None:
    client, container, cid, _, start = world
    ent = entitlement(client, overage_limit=100)
    start(ent, amount="10", per_credit="50")  # 10 credits cover 500 calls
    send(client, cid, clock.now - timedelta(days=20), "a", 10_000)
    [record] = close_cycles(container, catch_up=True)
    line = client.get(f"/invoices/{record.invoice_id}").json()["invoice"]["lines"][0]
    # 9,500 calls uncovered = 190 credits; only 100 credits (5,000 calls) may be billed.
    assert (line["credits_applied"], line["billed_units"], line["forgiven"]) == (
        "500",
        "5000",
        "4500",
    )
    ledger = client.get(
        f"/credit-entitlements/{ent}/balances/{cid}/ledger",
        params={"transaction_type": "overage_charged"},
    ).json()["items"]
    assert [(e["amount"], e["description"]) for e in ledger] == [
        ("190", "100 billed on the invoice, 90 forgiven")
    ]


def test_a_price_change_of_credits_applies_from_the_next_cycle(world, clock) -> None:
    client, container, cid, _, start = world
    ent = entitlement(client)
    sub = start(ent)
    product_id = client.get(f"/subscriptions/{sub}").json()["product_id"]
    changed = client.patch(
        f"/products/{product_id}",
        json={"credit_entitlements": [{"credit_entitlement_id": ent, "credits_amount": "5"}]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["credit_entitlements"][0]["credits_amount"] == "5"
    send(client, cid, clock.now - timedelta(days=20), "a", 800)
    [record] = close_cycles(container, catch_up=True)
    assert record.total_minor == 100  # cycle 0 began before the change: 1,000 credits
    send(client, cid, clock.now - timedelta(hours=1), "b", 10)
    clock.advance(timedelta(days=32))
    close_cycles(container, catch_up=True)  # cycle 1 began before the change too
    send(client, cid, clock.now - timedelta(hours=1), "c", 10)
    clock.advance(timedelta(days=32))
    close_cycles(container, catch_up=True)
    items = client.get("/invoices", params={"subscription_id": sub}).json()["items"]
    assert [i["total_minor"] for i in items] == [100 + 5 * 2, 100, 100]  # newest first


def test_manual_ledger_entries_are_idempotent_and_debits_never_overdraw(world) -> None:
    client, _, cid, _, _ = world
    ent = entitlement(client)
    path = f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries"
    entry = {"amount": "100", "entry_type": "credit", "idempotency_key": "k1", "reason": "gift"}
    first = client.post(path, json=entry)
    assert first.status_code == 200, first.text
    again = client.post(path, json=entry)
    assert again.json()["id"] == first.json()["id"]
    assert (first.json()["balance_before"], first.json()["balance_after"]) == ("0", "100")
    debit = client.post(path, json={"amount": "30", "entry_type": "debit"})
    assert (debit.json()["balance_after"], debit.json()["is_credit"]) == ("70", False)
    assert_error(
        client.post(path, json={"amount": "71", "entry_type": "debit"}), 422, "insufficient_credits"
    )
    balance = client.get(f"/credit-entitlements/{ent}/balances/{cid}").json()
    assert balance["balance"] == "70"
    assert [e[0] for e in ledger_of(client, ent, cid)] == ["manual_adjustment"] * 2


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"amount": "abc", "entry_type": "credit"}, 422, "invalid_credit"),
        ({"amount": "0", "entry_type": "credit"}, 422, "invalid_credit"),
        ({"amount": "-5", "entry_type": "credit"}, 422, "invalid_credit"),
        ({"amount": "1.5", "entry_type": "credit"}, 422, "invalid_credit"),  # precision 0
        ({"amount": "1e20", "entry_type": "credit"}, 422, "invalid_credit"),
        ({"amount": "5", "entry_type": "gift"}, 422, "invalid_credit"),
        (
            {"amount": "5", "entry_type": "credit", "expires_at": "2001-01-01T00:00:00Z"},
            422,
            "invalid_credit",
        ),
        (
            {"amount": "5", "entry_type": "credit", "expires_at": "2031-01-01T00:00:00"},
            400,
            "invalid_request",
        ),
        ({"amount": "5", "entry_type": "credit", "surprise": 1}, 400, "invalid_request"),
        ({"entry_type": "credit"}, 400, "invalid_request"),
        (
            {"amount": "5", "entry_type": "credit", "customer_id": "cus_else"},
            400,
            "invalid_request",
        ),
    ],
)
def test_bad_ledger_entries_are_refused_and_nothing_is_written(world, body, status, code) -> None:
    client, _, cid, _, _ = world
    ent = entitlement(client)
    response = client.post(f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries", json=body)
    assert response.status_code in (status, 422 if status == 400 else status), response.text
    assert response.json()["code"] in (code, "invalid_request", "validation_error")
    assert ledger_of(client, ent, cid) == []


def test_unknown_entitlement_customer_and_other_business(world, clock) -> None:
    client, container, cid, _, _ = world
    ent = entitlement(client)
    entry = {"amount": "5", "entry_type": "credit"}
    missing = client.post(
        f"/credit-entitlements/cet_nope/balances/{cid}/ledger-entries", json=entry
    )
    assert_error(missing, 404, "not_found")
    stranger = client.post(
        f"/credit-entitlements/{ent}/balances/cus_nope/ledger-entries", json=entry
    )
    assert_error(stranger, 404, "not_found")
    other = bearer(container.keys.create("acme", "admin", clock.now))
    assert_error(client.get(f"/credit-entitlements/{ent}", headers=other), 404, "not_found")
    assert client.get("/credit-entitlements", headers=other).json()["items"] == []
    assert_error(client.get(f"/credit-entitlements/{ent}/balances/{cid}"), 404, "not_found")
    assert_error(
        client.get(f"/credit-entitlements/{ent}/balances/{cid}/grants", params={"status": "x"}),
        422,
        "invalid_request",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"name": ""},
        {"precision": 13},
        {"precision": "2"},
        {"overage_enabled": "yes"},
        {"overage_behavior": "whatever"},
        {"rollover_enabled": True, "rollover_percentage": 101},
        {"rollover_enabled": True, "rollover_timeframe_count": 2},
        {"currency": "XYZ"},
        {"price_per_unit": "-1"},
        {"overage_limit": -1},
        {"expires_after_days": 0},
        {"surprise": True},
    ],
)
def test_bad_entitlements_are_refused(world, change) -> None:
    client, _, _, _, _ = world
    body = {
        "name": "API credits",
        "unit": "calls",
        "precision": 0,
        "overage_enabled": True,
        "rollover_enabled": False,
        **change,
    }
    assert_error(client.post("/credit-entitlements", json=body), 422, "invalid_credit")
    assert client.get("/credit-entitlements").json()["items"] == []


def test_bad_attachments_are_refused(world) -> None:
    client, _, _, calls, _ = world
    ent = entitlement(client)
    cases = [
        ({"credit_entitlement_id": "cet_nope", "credits_amount": "5"}, "1"),
        ({"credit_entitlement_id": ent, "credits_amount": "x"}, "1"),
        ({"credit_entitlement_id": ent, "credits_amount": "1.5"}, "1"),
        ({"credit_entitlement_id": ent, "credits_amount": "5", "trial_credits": "0.5"}, "1"),
        ({"credit_entitlement_id": ent, "credits_amount": "5"}, "0"),
    ]
    for attachment, per_credit in cases:
        response = post_product(client, monthly_price(linked(calls, ent, per_credit)), [attachment])
        assert response.status_code == 422, (attachment, per_credit, response.text)
    # A meter may only draw on an entitlement the product attaches.
    unattached = credit_product(client, calls, ent)
    assert unattached
    inside = [{"credit_entitlement_id": ent, "credits_amount": "1"}]
    response = post_product(client, monthly_price(linked(calls, ent), credit_entitlements=inside))
    assert_error(response, 422, "invalid_price")


def test_the_balance_projection_rebuilds_to_the_same_rows(world, clock) -> None:
    client, container, cid, _, start = world
    ent = entitlement(client, rollover_enabled=True, rollover_percentage=50)
    start(ent)
    send(client, cid, clock.now - timedelta(days=20), "a", 300)
    close_cycles(container, catch_up=True)
    path = f"/credit-entitlements/{ent}/balances/{cid}"
    client.post(f"{path}/ledger-entries", json={"amount": "7", "entry_type": "credit"})
    before = [client.get(f"{path}{tail}").json() for tail in ("", "/grants", "/ledger")]
    rebuild(container, "credit_balances")
    after = [client.get(f"{path}{tail}").json() for tail in ("", "/grants", "/ledger")]
    assert after == before


def test_the_sdk_drives_entitlements_balances_and_ledger(live_server) -> None:
    dodo = DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live_server.base_url, max_retries=0)
    created = dodo.credit_entitlements.create(
        name="Tokens", unit="tokens", precision=2, overage_enabled=False, rollover_enabled=False
    )
    assert dodo.credit_entitlements.retrieve(created.id).precision == 2
    assert [e.id for e in dodo.credit_entitlements.list()] == [created.id]
    customer = dodo.customers.create(email="sdk@example.com", name="Sdk")
    entry = dodo.credit_entitlements.balances.create_ledger_entry(
        customer.customer_id,
        credit_entitlement_id=created.id,
        amount="12.50",
        entry_type="credit",
        idempotency_key="once",
    )
    assert (entry.balance_after, entry.is_credit) == ("12.5", True)
    balance = dodo.credit_entitlements.balances.retrieve(
        customer.customer_id, credit_entitlement_id=created.id
    )
    assert balance.balance == "12.5"
    grants = list(
        dodo.credit_entitlements.balances.list_grants(
            customer.customer_id, credit_entitlement_id=created.id
        )
    )
    assert [g.remaining_amount for g in grants] == ["12.5"]
    ledger = list(
        dodo.credit_entitlements.balances.list_ledger(
            customer.customer_id, credit_entitlement_id=created.id
        )
    )
    assert [e.transaction_type for e in ledger] == ["manual_adjustment"]


def test_subscribing_grants_each_begun_cycle_once(world) -> None:
    client, container, cid, _, start = world
    ent = entitlement(client)
    start(ent)  # began 35 days ago: cycles 0 and 1 have begun
    grants = client.get(f"/credit-entitlements/{ent}/balances/{cid}/grants").json()["items"]
    assert sorted((g["source_type"], g["initial_amount"]) for g in grants) == [
        ("subscription", "1000"),
        ("subscription", "1000"),
    ]
    close_cycles(container, catch_up=True)
    close_cycles(container, catch_up=True)
    again = client.get(f"/credit-entitlements/{ent}/balances/{cid}/grants").json()["items"]
    assert len(again) == 2  # the billing loop grants by the same ids: nothing twice


def test_an_idempotency_key_sent_with_another_entry_is_a_conflict(world) -> None:
    client, _, cid, _, _ = world
    ent = entitlement(client)
    path = f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries"
    entry = {"amount": "10", "entry_type": "credit", "idempotency_key": "k"}
    assert client.post(path, json=entry).status_code == 200
    assert_error(client.post(path, json={**entry, "amount": "11"}), 409, "idempotency_key_reused")
    assert_error(
        client.post(path, json={**entry, "entry_type": "debit"}), 409, "idempotency_key_reused"
    )
    assert [e[1] for e in ledger_of(client, ent, cid)] == ["10"]


@pytest.mark.parametrize("amount", ["0." + "1" * 1001, "1_0", "1e3", " 5", "12345678901"])
def test_odd_amounts_are_refused_not_a_500(world, amount) -> None:
    client, _, cid, _, _ = world
    ent = entitlement(client, precision=12)
    path = f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries"
    response = client.post(path, json={"amount": amount, "entry_type": "credit"})
    assert_error(response, 422, "invalid_credit")


@pytest.mark.parametrize(
    "override",
    [
        {"overage_enabled": "false"},
        {"rollover_enabled": 1},
        {"rollover_percentage": "50"},
        {"max_rollover_count": -1},
        {"price_per_unit": {"a": 1}},
        {"currency": 5},
        {"proration_behavior": []},
        {"low_balance_threshold_percent": 101},
        {"overage_behavior": "sometimes"},
        {"rollover_timeframe_interval": "Fortnight", "rollover_timeframe_count": 1},
    ],
)
def test_attachment_overrides_of_the_wrong_type_are_refused(world, override) -> None:
    client, _, _, calls, _ = world
    ent = entitlement(client)
    attachment = {"credit_entitlement_id": ent, "credits_amount": "5", **override}
    response = post_product(
        client, monthly_price({"meter_id": calls, "price_per_unit": "1"}), [attachment]
    )
    assert_error(response, 422, "invalid_credit")


def test_two_subscriptions_sharing_credit_never_spend_it_twice(world, clock) -> None:
    """Two plans of one customer attach the same entitlement: their invoices draw on
    one account, and what they apply is what the account's ledger deducts."""
    client, container, cid, _, start = world
    ent = entitlement(client, overage_enabled=False, overage_behavior=None)
    start(ent)
    start(ent)
    send(client, cid, clock.now - timedelta(days=20), "a", 1500)
    records = close_cycles(container, catch_up=True)
    assert len(records) == 2
    applied = 0
    for record in records:
        [line] = client.get(f"/invoices/{record.invoice_id}").json()["invoice"]["lines"]
        applied += int(line["credits_applied"])
    deducted = sum(int(e[1]) for e in ledger_of(client, ent, cid) if e[0] == "credit_deducted")
    # each plan bills the customer's 1,500 calls; cycle 0 has the two plans' 2,000 credits
    assert applied == deducted == 2000
    balance = client.get(f"/credit-entitlements/{ent}/balances/{cid}").json()["balance"]
    assert int(balance) >= 0

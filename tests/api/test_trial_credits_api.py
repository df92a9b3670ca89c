"""Trial credits: granted once when a subscription with a trial begins, drawn first, and
gone at the trial's end or kept until spent, as the attachment says."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from infrastructure.runtime import close_cycles
from tests.api.helpers import assert_error, client_for, make_customer
from tests.api.test_billing_api import meter, subscribe
from tests.api.test_credits_api import credit_product, entitlement, ledger_of, send


@pytest.fixture
def trial(make_container, clock) -> Any:
    """A customer, a count meter; ``start`` subscribes 35 days ago with a trial."""
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})

        def start(ent: str, days: int | None = 7, **attach: Any) -> Any:
            product_id = credit_product(client, calls, ent, **attach)
            begun = (clock.now - timedelta(days=35)).isoformat()
            extra = {} if days is None else {"trial_period_days": days}
            return subscribe(client, cid, product_id, start_date=begun, **extra)

        yield client, container, cid, start


def grants_of(client: Any, ent: str, cid: str) -> list[dict[str, Any]]:
    path = f"/credit-entitlements/{ent}/balances/{cid}/grants"
    items: list[dict[str, Any]] = client.get(path, params={"page_size": 100}).json()["items"]
    return items


def test_trial_credits_expiring_after_the_trial_are_drawn_first_and_then_forfeited(
    trial, clock
) -> None:
    client, container, cid, start = trial
    ent = entitlement(client)
    response = start(ent, trial_credits="50", trial_credits_expire_after_trial=True)
    assert response.status_code == 200, response.text
    shown = client.get(f"/subscriptions/{response.json()['subscription_id']}").json()
    assert shown["trial_period_days"] == 7
    begun = clock.now - timedelta(days=35)
    trial_grant = [g for g in grants_of(client, ent, cid) if g["initial_amount"] == "50"]
    assert [g["expires_at"][:10] for g in trial_grant] == [str((begun + timedelta(days=7)).date())]
    send(client, cid, clock.now - timedelta(days=20), "a", 1020)
    [record] = close_cycles(container, catch_up=True)
    line = client.get(f"/invoices/{record.invoice_id}").json()["invoice"]["lines"][0]
    assert (line["credits_applied"], line["billed_units"]) == ("1020", "0")  # 50 + 970 of 1,000
    assert record.total_minor == 100
    entries = ledger_of(client, ent, cid)
    assert entries[0] == ("credit_added", "50", "0", "50")  # the trial's, before cycle 0's
    assert ("credit_expired", "30", "1030", "1000") in entries  # what cycle 0's grant left


def test_trial_credits_that_outlive_the_trial_stay_until_spent(trial, clock) -> None:
    client, container, cid, start = trial
    ent = entitlement(client)
    assert start(ent, trial_credits="500").status_code == 200
    send(client, cid, clock.now - timedelta(days=20), "a", 1200)
    close_cycles(container, catch_up=True)
    grants = {g["initial_amount"]: g for g in grants_of(client, ent, cid)}
    # cycle 0's 1,000 (soonest expiry) is drawn first, then 200 of the trial's 500
    assert (grants["500"]["remaining_amount"], grants["500"]["expires_at"]) == ("300", None)
    balance = client.get(f"/credit-entitlements/{ent}/balances/{cid}").json()["balance"]
    assert balance == "1300"  # the trial's 300 and cycle 1's 1,000


def test_no_trial_no_trial_credits(trial) -> None:
    client, _, cid, start = trial
    ent = entitlement(client)
    assert start(ent, days=None, trial_credits="50").status_code == 200
    assert [g["initial_amount"] for g in grants_of(client, ent, cid)] == ["1000", "1000"]


def test_a_bad_trial_is_refused_and_nothing_is_written(trial) -> None:
    client, _, _, start = trial
    ent = entitlement(client)
    assert_error(start(ent, days=-1, trial_credits="50"), 422, "invalid_subscription")
    assert client.get("/subscriptions").json()["items"] == []
    bad = client.post(
        "/products",
        json={
            "name": "P",
            "tax_category": "saas",
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 0,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
            },
            "credit_entitlements": [
                {"credit_entitlement_id": ent, "credits_amount": "10", "trial_credits": "0.5"}
            ],
        },
    )
    body = assert_error(bad, 422, "invalid_credit")
    assert "trial_credits" in body["message"]

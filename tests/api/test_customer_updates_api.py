"""PATCH /customers/{id} and GET /customers/{id}/credit-entitlements, through the SDK."""

from __future__ import annotations

import pytest
from dodopayments import DodoPayments, NotFoundError

from tests.api.helpers import assert_error, bearer, make_customer
from tests.api.test_billing_api import meter, subscribe
from tests.api.test_credits_api import credit_product, entitlement
from tests.conftest import BOOTSTRAP_KEY


@pytest.fixture
def dodo(live_server) -> DodoPayments:
    return DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live_server.base_url, max_retries=0)


def test_the_sdk_updates_only_the_fields_it_sends(dodo, client) -> None:
    cid = make_customer(client, "ada@example.com", "Ada", phone_number="+44123", metadata={"a": 1})
    updated = dodo.customers.update(cid, name=" Ada L. ", email="ada@lovelace.dev")
    assert (updated.name, updated.email, updated.phone_number, updated.metadata) == (
        "Ada L.",
        "ada@lovelace.dev",
        "+44123",
        {"a": 1},
    )
    cleared = dodo.customers.update(cid, phone_number=None, metadata={"plan": "pro"})
    assert (cleared.phone_number, cleared.metadata, cleared.name) == (
        None,
        {"plan": "pro"},
        "Ada L.",
    )
    assert dodo.customers.retrieve(cid).email == "ada@lovelace.dev"


def test_the_list_and_subscriptions_show_the_new_details(dodo, client) -> None:
    cid = make_customer(client, "ada@example.com", "Ada")
    dodo.customers.update(cid, email="countess@example.com", name="Countess")
    assert [c.name for c in dodo.customers.list(email="countess@example.com").items] == ["Countess"]
    assert dodo.customers.list(email="ada@example.com").items == []
    plan = client.post(
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
            },
        },
    ).json()["product_id"]
    sub = subscribe(client, cid, plan).json()["subscription_id"]
    dodo.customers.update(cid, name="Ada again")
    assert dodo.subscriptions.retrieve(sub).customer.name == "Ada again"
    assert dodo.subscriptions.list().items[0].customer.name == "Ada again"


def test_bad_updates_are_422_naming_the_field_and_change_nothing(client) -> None:
    cid = make_customer(client, "ada@example.com", "Ada")
    path = f"/customers/{cid}"
    body = assert_error(client.patch(path, json={"email": None}), 422, "invalid_request")
    assert body["detail"]["path"] == "$.email"
    body = assert_error(client.patch(path, json={"nickname": "x"}), 422, "invalid_request")
    assert "nickname" in body["message"]
    assert_error(client.patch(path, json={"email": "not-an-email"}), 422, "invalid_customer")
    assert_error(client.patch(path, json={"name": "  "}), 422, "invalid_customer")
    assert_error(client.patch(path, json={"metadata": {"k": [1]}}), 422, "invalid_metadata")
    assert client.get(path).json()["email"] == "ada@example.com"


def test_another_business_cannot_update_or_read_the_customer(client, container, clock) -> None:
    cid = make_customer(client)
    other = bearer(container.keys.create("acme", "admin", clock.now))
    patched = client.patch(f"/customers/{cid}", json={"name": "Eve"}, headers=other)
    assert_error(patched, 404, "not_found")
    path = f"/customers/{cid}/credit-entitlements"
    assert_error(client.get(path, headers=other), 404, "not_found")
    assert client.get(f"/customers/{cid}").json()["name"] == "Ada"
    reader = bearer(container.keys.create("default", "read", clock.now))
    assert_error(
        client.patch(f"/customers/{cid}", json={"name": "R"}, headers=reader), 403, "forbidden"
    )


def test_the_sdk_lists_the_customers_credit_entitlements_with_balances(dodo, client) -> None:
    cid = make_customer(client)
    assert dodo.customers.list_credit_entitlements(cid).items == []
    calls = meter(client, "api.call", {"type": "count"})
    ent = entitlement(client, name="API credits", description="Calls to the API")
    subscribe(client, cid, credit_product(client, calls, ent, amount="1000"))
    entry = client.post(
        f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries",
        json={"amount": "250", "entry_type": "debit", "idempotency_key": "k1"},
    )
    assert entry.status_code == 200, entry.text
    [item] = dodo.customers.list_credit_entitlements(cid).items
    assert (item.credit_entitlement_id, item.name, item.unit, item.description) == (
        ent,
        "API credits",
        "calls",
        "Calls to the API",
    )
    assert (item.balance, item.overage) == ("750", "0")
    other = make_customer(client, "bob@example.com")
    assert dodo.customers.list_credit_entitlements(other).items == []


def test_credit_entitlements_of_an_unknown_customer_are_404(dodo) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        dodo.customers.list_credit_entitlements("cus_nobody")

"""Subscriptions read through the SDK: the list and its filters, a subscription's meters and
credit cart as the catalogue names them, and the credit usage of its entitlements."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from dodopayments import DodoPayments, NotFoundError

from infrastructure.runtime import draw_live_now
from tests.api.helpers import assert_error, bearer, make_customer
from tests.api.test_billing_api import meter, product, subscribe
from tests.api.test_credits_api import credit_product, entitlement, send
from tests.conftest import BOOTSTRAP_KEY


@pytest.fixture
def dodo(live_server) -> DodoPayments:
    return DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live_server.base_url, max_retries=0)


@pytest.fixture
def plan(client) -> str:
    return product(client, [(meter(client, "api.call", {"type": "count"}), "2", 0)], 500)


def subscribed(client: Any, cid: str, product_id: str, **extra: Any) -> str:
    response = subscribe(client, cid, product_id, **extra)
    assert response.status_code == 200, response.text
    subscription_id: str = response.json()["subscription_id"]
    return subscription_id


def listed(dodo: DodoPayments, **params: Any) -> list[str]:
    return [s.subscription_id for s in dodo.subscriptions.list(**params).items]


def test_the_sdk_lists_subscriptions_newest_first_in_pages(dodo, client, plan, clock) -> None:
    cid = make_customer(client, "ada@example.com", "Ada")
    made = []
    for _ in range(3):
        made.append(subscribed(client, cid, plan))
        clock.advance(timedelta(seconds=1))
    assert listed(dodo, page_size=2) == [made[2], made[1]]
    assert listed(dodo, page_size=2, page_number=1) == [made[0]]
    [item] = dodo.subscriptions.list(page_size=1).items
    assert (item.status, item.product_name, item.customer.email) == (
        "active",
        "Plan",
        "ada@example.com",
    )
    assert (item.recurring_pre_tax_amount, item.currency, item.discounts) == (500, "USD", [])
    assert item.next_billing_date == item.previous_billing_date.replace(month=12)


def test_the_list_filters_by_customer_product_and_scheduled_cancellation(
    dodo, client, plan
) -> None:
    ada, bob = make_customer(client, "ada@example.com"), make_customer(client, "bob@example.com")
    other_plan = product(client, [], 100)
    first = subscribed(client, ada, plan)
    second = subscribed(client, bob, plan)
    third = subscribed(client, ada, other_plan)
    dodo.subscriptions.update(second, cancel_at_next_billing_date=True)
    assert set(listed(dodo, customer_id=ada)) == {first, third}
    assert set(listed(dodo, product_id=plan)) == {first, second}
    assert listed(dodo, cancel_at_next_billing_date=True) == [second]
    assert set(listed(dodo, cancel_at_next_billing_date=False)) == {first, third}
    assert listed(dodo, customer_id=ada, product_id=other_plan) == [third]


def test_the_status_filter_is_the_status_at_the_moment_asked(dodo, client, plan, clock) -> None:
    cid = make_customer(client)
    staying, leaving = subscribed(client, cid, plan), subscribed(client, cid, plan)
    dodo.subscriptions.update(leaving, cancel_at_next_billing_date=True)
    assert set(listed(dodo, status="active")) == {staying, leaving}
    assert listed(dodo, status="cancelled") == []
    clock.advance(timedelta(days=31))  # the cycle of the cancellation has ended
    assert listed(dodo, status="active") == [staying]
    assert listed(dodo, status="cancelled") == [leaving]
    assert dodo.subscriptions.list(status="cancelled").items[0].status == "cancelled"
    assert listed(dodo, status="expired") == []
    for never in ("pending", "on_hold", "paused", "failed", "past_due"):
        assert listed(dodo, status=never) == []


def test_the_created_at_filters_are_inclusive(dodo, client, plan, clock) -> None:
    cid = make_customer(client)
    early = subscribed(client, cid, plan)
    first_moment = clock.now
    clock.advance(timedelta(hours=1))
    late = subscribed(client, cid, plan)
    assert listed(dodo, created_at_gte=clock.now) == [late]
    assert listed(dodo, created_at_lte=first_moment) == [early]
    assert listed(dodo, created_at_gte=first_moment, created_at_lte=clock.now) == [late, early]


def test_another_brand_finds_none_and_a_locale_is_accepted(dodo, client, plan) -> None:
    sub = subscribed(client, make_customer(client), plan)
    assert listed(dodo, brand_id="default", locale="fr") == [sub]
    assert listed(dodo, brand_id="acme") == []


def test_a_status_the_sdk_does_not_know_is_400_naming_it(client) -> None:
    body = assert_error(
        client.get("/subscriptions", params={"status": "gone"}), 400, "invalid_parameter"
    )
    assert "status" in body["message"]


def test_another_business_sees_none_of_the_subscriptions(client, container, clock, plan) -> None:
    sub = subscribed(client, make_customer(client), plan)
    other = bearer(container.keys.create("acme", "admin", clock.now))
    assert client.get("/subscriptions", headers=other).json() == {"items": []}
    assert_error(client.get(f"/subscriptions/{sub}", headers=other), 404, "not_found")
    path = f"/subscriptions/{sub}/credit-usage"
    assert_error(client.get(path, headers=other), 404, "not_found")


def test_retrieve_names_the_meters_as_the_catalogue_does(dodo, client) -> None:
    calls = meter(client, "api.call", {"type": "count"}, description="Each API call")
    sub = subscribed(client, make_customer(client), product(client, [(calls, "2.5", 100)]))
    [line] = dodo.subscriptions.retrieve(sub).meters
    assert (line.meter_id, line.name, line.measurement_unit) == (calls, "api.call count", "units")
    assert (line.description, line.price_per_unit, line.free_threshold) == (
        "Each API call",
        "2.5",
        100,
    )
    client.patch(f"/meters/{calls}", json={"name": "API calls", "measurement_unit": "calls"})
    [renamed] = dodo.subscriptions.retrieve(sub).meters
    assert (renamed.name, renamed.measurement_unit) == ("API calls", "calls")
    updated = dodo.subscriptions.update(sub, cancel_at_next_billing_date=True)
    assert updated.meters[0].name == "API calls"


def test_retrieve_carries_the_credit_cart_with_the_customer_balance(dodo, client) -> None:
    cid = make_customer(client)
    calls = meter(client, "api.call", {"type": "count"})
    ent = entitlement(client, overage_limit=800)
    product_id = credit_product(client, calls, ent, amount="1000", per_credit="2")
    sub = subscribed(client, cid, product_id)
    fetched = dodo.subscriptions.retrieve(sub)
    [cart] = fetched.credit_entitlement_cart
    assert (cart.credit_entitlement_id, cart.credit_entitlement_name, cart.unit) == (
        ent,
        "API credits",
        "calls",
    )
    assert (cart.credits_amount, cart.remaining_balance, cart.overage_balance) == (
        "1000",
        "1000",
        "0",
    )
    assert (cart.overage_enabled, cart.overage_behavior, cart.overage_limit) == (
        True,
        "invoice_at_billing",
        "800",
    )
    assert (cart.product_id, cart.rollover_enabled) == (product_id, False)
    [link] = fetched.meter_credit_entitlement_cart
    assert (link.meter_id, link.meter_name, link.meter_units_per_credit) == (
        calls,
        "api.call count",
        "2",
    )
    assert link.credit_entitlement_id == ent


def test_credit_usage_shows_balance_overage_and_headroom(dodo, client, container, clock) -> None:
    cid = make_customer(client)
    calls = meter(client, "api.call", {"type": "count"})
    limited = entitlement(client, name="Limited", overage_limit=800)
    sub = subscribed(client, cid, credit_product(client, calls, limited, amount="1000"))
    usage = dodo.subscriptions.retrieve_credit_usage(sub)
    assert usage.subscription_id == sub
    [item] = usage.items
    assert (item.credit_entitlement_id, item.credit_entitlement_name, item.unit) == (
        limited,
        "Limited",
        "calls",
    )
    assert (item.balance, item.overage, item.overage_limit, item.remaining_headroom) == (
        "1000",
        "0",
        "800",
        "800",
    )
    assert (item.overage_enabled, item.limit_reached) == (True, False)
    send(client, cid, clock.now, "a", 1500)  # 500 past the credits
    container.projector.catch_up()
    draw_live_now(container)
    [drawn] = dodo.subscriptions.retrieve_credit_usage(sub).items
    assert (drawn.balance, drawn.overage, drawn.remaining_headroom) == ("0", "500", "300")
    assert drawn.limit_reached is False
    send(client, cid, clock.now, "b", 400)  # 900 past: more than the limit allows
    container.projector.catch_up()
    draw_live_now(container)
    [capped] = dodo.subscriptions.retrieve_credit_usage(sub).items
    assert (capped.remaining_headroom, capped.limit_reached) == ("0", True)


def test_credit_usage_without_overage_has_no_limit_or_headroom(dodo, client) -> None:
    cid = make_customer(client)
    calls = meter(client, "api.call", {"type": "count"})
    ent = entitlement(client, overage_enabled=False)
    sub = subscribed(client, cid, credit_product(client, calls, ent))
    [item] = dodo.subscriptions.retrieve_credit_usage(sub).items
    assert (item.overage_enabled, item.overage_limit, item.remaining_headroom) == (
        False,
        None,
        None,
    )
    assert item.limit_reached is False
    plain = subscribed(client, cid, product(client, [(calls, "1", 0)]))
    assert dodo.subscriptions.retrieve_credit_usage(plain).items == []


def test_credit_usage_of_an_unknown_subscription_is_404(dodo) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        dodo.subscriptions.retrieve_credit_usage("sub_nope")

"""Credit entitlements change and are deleted softly: the SDK's update, delete, undelete
and ``deleted`` listing, and what each means for products and subscriptions using them."""

from __future__ import annotations

from datetime import timedelta

import dodopayments
import pytest
from dodopayments import DodoPayments

from infrastructure.runtime import close_cycles
from tests.api.helpers import BOOTSTRAP_KEY, assert_error
from tests.api.test_credits_api import (
    entitlement,
    ledger_of,
    linked,
    monthly_price,
    post_product,
    send,
    world,  # noqa: F401 - the fixture
)


def test_the_sdk_updates_deletes_lists_deleted_and_undeletes(live_server) -> None:
    dodo = DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live_server.base_url, max_retries=0)
    kept = dodo.credit_entitlements.create(
        name="Kept", unit="calls", precision=0, overage_enabled=False, rollover_enabled=False
    )
    gone = dodo.credit_entitlements.create(
        name="Tokens", unit="tokens", precision=2, overage_enabled=False, rollover_enabled=False
    )
    dodo.credit_entitlements.update(
        gone.id,
        name="AI tokens",
        overage_enabled=True,
        overage_behavior="carry_deficit_auto_repay",
        overage_limit=500,
        description="per model call",
    )
    changed = dodo.credit_entitlements.retrieve(gone.id)
    assert (changed.name, changed.overage_behavior, changed.overage_limit) == (
        "AI tokens",
        "carry_deficit_auto_repay",
        500,
    )
    assert (changed.precision, changed.unit, changed.description) == (2, "tokens", "per model call")
    dodo.credit_entitlements.delete(gone.id)
    dodo.credit_entitlements.delete(gone.id)  # again: still deleted, no error
    assert [e.id for e in dodo.credit_entitlements.list()] == [kept.id]
    assert [e.id for e in dodo.credit_entitlements.list(deleted=True)] == [gone.id]
    assert dodo.credit_entitlements.retrieve(gone.id).name == "AI tokens"  # still readable
    with pytest.raises(dodopayments.UnprocessableEntityError, match="is deleted"):
        dodo.credit_entitlements.update(gone.id, name="again")
    dodo.credit_entitlements.undelete(gone.id)
    assert {e.id for e in dodo.credit_entitlements.list()} == {kept.id, gone.id}
    assert list(dodo.credit_entitlements.list(deleted=True)) == []


def test_an_update_refuses_what_it_may_not_change_naming_the_field(world) -> None:  # noqa: F811
    client, *_ = world
    ent = entitlement(client)
    path = f"/credit-entitlements/{ent}"
    body = assert_error(client.patch(path, json={"precision": 2}), 422, "invalid_credit")
    assert "precision" in body["message"]
    body = assert_error(
        client.patch(path, json={"rollover_percentage": 101}), 422, "invalid_credit"
    )
    assert "rollover_percentage" in body["message"]
    assert_error(client.patch(path, json={"surprise": 1}), 422, "invalid_credit")
    assert_error(client.patch("/credit-entitlements/cet_nope", json={}), 404, "not_found")
    assert client.get(path).json()["precision"] == 0  # nothing was written


def test_a_deleted_entitlement_is_refused_for_new_attachments_only(world) -> None:  # noqa: F811
    client, _, _, calls, _ = world
    ent = entitlement(client)
    attach = [{"credit_entitlement_id": ent, "credits_amount": "10"}]
    attached = post_product(client, monthly_price(linked(calls, ent)), attach)
    assert attached.status_code == 200, attached.text
    product_id = attached.json()["product_id"]
    assert client.delete(f"/credit-entitlements/{ent}").status_code == 204
    refused = post_product(client, monthly_price(linked(calls, ent)), attach)
    body = assert_error(refused, 422, "credit_entitlement_deleted")
    assert body["detail"]["path"] == "$.credit_entitlements[0].credit_entitlement_id"
    # The product that attaches it already may send it again (a price change), not a new one.
    again = {"credit_entitlements": [{"credit_entitlement_id": ent, "credits_amount": "20"}]}
    response = client.patch(f"/products/{product_id}", json=again)
    assert response.status_code == 200, response.text
    client.post(f"/credit-entitlements/{ent}/undelete")
    assert post_product(client, monthly_price(linked(calls, ent)), attach).status_code == 200


def test_a_deleted_entitlement_keeps_granting_and_drawing_for_its_subscriptions(
    world,  # noqa: F811
    clock,
) -> None:
    client, container, cid, _, start = world
    ent = entitlement(client)
    start(ent)  # began 35 days ago: cycles 0 and 1 have begun
    assert client.delete(f"/credit-entitlements/{ent}").status_code == 204
    send(client, cid, clock.now - timedelta(days=20), "a", 300)
    [first] = close_cycles(container, catch_up=True)
    assert first.total_minor == 100  # the 300 calls drawn on the credit
    clock.advance(timedelta(days=30))
    [second] = close_cycles(container, catch_up=True)
    assert second.cycle_index == 1
    added = [e for e in ledger_of(client, ent, cid) if e[0] == "credit_added"]
    assert len(added) == 3  # cycle 2 renewed with its grant, deletion notwithstanding
    assert ("credit_deducted", "300", "2000", "1700") in ledger_of(client, ent, cid)


def test_an_update_is_for_later_attachments_and_never_changes_a_begun_cycle(
    world,  # noqa: F811
    clock,
) -> None:
    client, container, cid, calls, start = world
    ent = entitlement(client)  # overage billed at billing
    start(ent)
    changed = client.patch(f"/credit-entitlements/{ent}", json={"overage_enabled": False})
    assert changed.status_code == 200, changed.text
    assert changed.json()["overage_enabled"] is False
    send(client, cid, clock.now - timedelta(days=20), "a", 1500)
    [record] = close_cycles(container, catch_up=True)
    assert record.total_minor == 100 + 500 * 2  # the product resolved the rules it attached
    later = post_product(
        client,
        monthly_price(linked(calls, ent)),
        [{"credit_entitlement_id": ent, "credits_amount": "10"}],
    )
    [mapping] = later.json()["credit_entitlements"]
    assert mapping["overage_enabled"] is False  # a new attachment takes the new rules

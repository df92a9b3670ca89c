"""Two writers of one aggregate at once (two server processes): the one that loses the
race loads again and applies its change, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from application.credits import update_entitlement
from application.customers import update_customer
from application.products import archive_product
from tests.api.helpers import make_customer
from tests.api.test_billing_api import product
from tests.api.test_credits_api import entitlement


def racing(container: Any, monkeypatch: pytest.MonkeyPatch, other_write: Callable[[], Any]) -> None:
    """Just before the request's first save, another process's write of the same aggregate
    lands (as two PATCHes interleave): the request's save then collides once."""
    original = container.ledger.save
    raced: list[bool] = []

    def save(*aggregates: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(True)
            other_write()
        return original(*aggregates, **kwargs)

    monkeypatch.setattr(container.ledger, "save", save)


def test_a_customer_update_that_loses_a_race_is_applied_on_a_fresh_load(
    client, container, make_container, monkeypatch, clock
) -> None:
    other = make_container()  # a second process over the same store
    cid = make_customer(client)
    racing(
        container,
        monkeypatch,
        lambda: update_customer(
            other.ledger, "default", cid, changes={"phone_number": "+15550100"}, now=clock.now
        ),
    )
    response = client.patch(f"/customers/{cid}", json={"name": "Mine"})
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["phone_number"]) == ("Mine", "+15550100")


def test_archiving_a_product_another_process_archived_is_no_error(
    client, container, make_container, monkeypatch, clock
) -> None:
    other = make_container()
    plan = product(client, [], 100)
    racing(
        container, monkeypatch, lambda: archive_product(other.ledger, "default", plan, clock.now)
    )
    assert client.delete(f"/products/{plan}").status_code == 204
    assert client.get(f"/products/{plan}").json()["archived"] is True


def test_an_entitlement_update_that_loses_a_race_keeps_both_changes(
    client, container, make_container, monkeypatch, clock
) -> None:
    other = make_container()
    ent = entitlement(client)
    racing(
        container,
        monkeypatch,
        lambda: update_entitlement(
            other.ledger, "default", ent, {"description": "theirs"}, clock.now
        ),
    )
    response = client.patch(f"/credit-entitlements/{ent}", json={"name": "Mine"})
    assert response.status_code == 200, response.text
    shown = client.get(f"/credit-entitlements/{ent}").json()
    assert (shown["name"], shown["description"]) == ("Mine", "theirs")


@pytest.mark.parametrize("customer_id", ["a%00b", "%00"])
def test_a_customer_id_no_store_can_hold_is_404(client, customer_id) -> None:
    response = client.get(f"/customers/{customer_id}/credit-entitlements")
    assert response.status_code == 404, response.text


def test_a_product_update_that_loses_a_race_is_decided_again(
    client, container, make_container, monkeypatch, clock
) -> None:
    other = make_container()
    plan = product(client, [], 100)
    racing(
        container,
        monkeypatch,
        lambda: other.ledger.update_product(
            "default", plan, changes={"description": "theirs"}, now=clock.now
        ),
    )
    response = client.patch(f"/products/{plan}", json={"name": "Mine"})
    assert response.status_code < 300, response.text
    shown = client.get(f"/products/{plan}").json()
    assert (shown["name"], shown["description"]) == ("Mine", "theirs")

"""Archived products: off the default list, refusing new subscriptions, billing the old ones."""

from __future__ import annotations

from datetime import timedelta

from dodopayments import DodoPayments

from infrastructure.runtime import close_cycles
from tests.api.helpers import assert_error, bearer, client_for, make_customer
from tests.api.test_billing_api import meter, preview, product, send, subscribe
from tests.conftest import BOOTSTRAP_KEY


def product_ids(client, **params) -> list[str]:
    response = client.get("/products", params=params)
    assert response.status_code == 200, response.text
    return [p["product_id"] for p in response.json()["items"]]


def test_the_sdk_archives_and_unarchives_a_product(live_server, client) -> None:
    dodo = DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live_server.base_url, max_retries=0)
    kept, archived = product(client, [], 100), product(client, [], 200)
    assert dodo.products.archive(archived) is None
    assert [p.product_id for p in dodo.products.list().items] == [kept]
    assert [p.product_id for p in dodo.products.list(archived=True).items] == [archived]
    assert client.get(f"/products/{archived}").json()["archived"] is True
    dodo.products.archive(archived)  # again: nothing changes
    assert dodo.products.unarchive(archived) is None
    assert {p.product_id for p in dodo.products.list().items} == {archived, kept}
    assert dodo.products.list(archived=True).items == []
    assert client.get(f"/products/{archived}").json()["archived"] is False


def test_an_archived_product_refuses_new_subscriptions_with_product_archived(client) -> None:
    cid = make_customer(client)
    plan = product(client, [], 100)
    assert client.delete(f"/products/{plan}").status_code == 204
    body = assert_error(subscribe(client, cid, plan), 422, "product_archived")
    assert plan in body["message"]
    assert client.get("/subscriptions").json()["items"] == []  # nothing was written
    assert client.post(f"/products/{plan}/unarchive").status_code == 200
    assert subscribe(client, cid, plan).status_code == 200


def test_an_archived_product_keeps_billing_its_subscriptions(make_container, clock) -> None:
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        plan = product(client, [(calls, "2", 0)], 100)
        begun = (clock.now - timedelta(days=35)).isoformat()
        response = subscribe(client, cid, plan, start_date=begun)
        sub = response.json()["subscription_id"]
        client.delete(f"/products/{plan}")
        clock.advance(timedelta(days=-20))
        send(client, clock, cid, "api.call", 10)  # in cycle 0
        clock.advance(timedelta(days=20))
        [record] = close_cycles(container, catch_up=True)  # cycle 0 finalized, cycle 1 begun
        assert (record.subscription_id, record.total_minor) == (sub, 100 + 10 * 2)
        send(client, clock, cid, "api.call", 3)  # in cycle 1
        assert preview(client, sub)["invoice"]["total_minor"] == 100 + 3 * 2
        fetched = client.get(f"/subscriptions/{sub}").json()
        assert (fetched["status"], fetched["previous_billing_date"] > begun) == ("active", True)


def test_archive_of_an_unknown_or_foreign_product_is_404(client, container, clock) -> None:
    plan = product(client, [], 100)
    assert_error(client.delete("/products/pdt_nope"), 404, "not_found")
    assert_error(client.post("/products/pdt_nope/unarchive"), 404, "not_found")
    other = bearer(container.keys.create("acme", "admin", clock.now))
    assert_error(client.delete(f"/products/{plan}", headers=other), 404, "not_found")
    assert_error(client.post(f"/products/{plan}/unarchive", headers=other), 404, "not_found")
    reader = bearer(container.keys.create("default", "read", clock.now))
    assert_error(client.delete(f"/products/{plan}", headers=reader), 403, "forbidden")
    assert product_ids(client) == [plan]


def test_the_list_takes_the_sdk_filters_it_cannot_narrow(client) -> None:
    plan = product(client, [], 100)
    assert product_ids(client, recurring="true", brand_id="default", locale="fr") == [plan]
    assert product_ids(client, recurring="false") == []  # every product here is recurring
    assert product_ids(client, brand_id="acme") == []

"""A catalogue made by an older version (no subscription state, no product archive flag) is
dropped and built again from the log on start, on both stores; other projections stay."""

from __future__ import annotations

from typing import Any

from application.views import ProductQuery, SubscriptionQuery
from tests.api.helpers import client_for, make_customer
from tests.api.test_billing_api import product, subscribe

OLD_TABLES = (
    "CREATE TABLE catalogue_products (business_id TEXT NOT NULL, product_id TEXT NOT NULL, "
    "created_at BIGINT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (business_id, product_id))",
    "CREATE TABLE catalogue_subscriptions (business_id TEXT NOT NULL, "
    "subscription_id TEXT NOT NULL, customer_id TEXT NOT NULL, product_id TEXT NOT NULL, "
    "created_at BIGINT NOT NULL, PRIMARY KEY (business_id, subscription_id))",
)


def make_old(container: Any) -> None:
    """Put the catalogue's product and subscription tables back as the first version made
    them, empty, with the catalogue's position left where it was."""
    with container.views["catalogue"].datastore.transaction(commit=True) as curs:
        for table in ("catalogue_products", "catalogue_subscriptions"):
            curs.execute(f"DROP TABLE {table}")
        for statement in OLD_TABLES:
            curs.execute(statement)


def test_an_old_catalogue_is_rebuilt_from_the_log_on_start(make_container, clock) -> None:
    first = make_container()
    with client_for(first) as client:
        cid = make_customer(client)
        plan = product(client, [], 100)
        sub = subscribe(client, cid, plan).json()["subscription_id"]
        client.delete(f"/products/{plan}")
        first.projector.catch_up()
        usage_position = first.views["usage_log"].max_tracking_id("ledger")
        make_old(first)

    upgraded = make_container()
    assert upgraded.views["catalogue"].max_tracking_id("ledger") is None  # forgotten
    assert upgraded.views["usage_log"].max_tracking_id("ledger") == usage_position  # kept
    upgraded.projector.catch_up()
    catalogue = upgraded.reads.catalogue
    [state] = catalogue.list_subscriptions(SubscriptionQuery("default"), clock.now)
    assert (state.subscription_id, state.customer_id) == (sub, cid)
    assert [p.product_id for p in catalogue.list_products(ProductQuery("default"))] == []
    archived = catalogue.list_products(ProductQuery("default", archived=True))
    assert [p.product_id for p in archived] == [plan]
    assert [c.customer_id for c in catalogue.customers_by_id("default", [cid]).values()] == [cid]


def test_a_current_catalogue_is_left_as_it_is(make_container) -> None:
    first = make_container()
    with client_for(first) as client:
        make_customer(client)
        first.projector.catch_up()
        position = first.views["catalogue"].max_tracking_id("ledger")
    assert position is not None
    assert make_container().views["catalogue"].max_tracking_id("ledger") == position

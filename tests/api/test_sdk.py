"""The official dodopayments SDK against the live server: the wire format is Dodo's."""

from __future__ import annotations

from datetime import timedelta

import dodopayments
import pytest
from dodopayments import DodoPayments

from tests.conftest import BOOTSTRAP_KEY


def sdk(live_server, key: str = BOOTSTRAP_KEY) -> DodoPayments:
    return DodoPayments(bearer_token=key, base_url=live_server.base_url, max_retries=0)


@pytest.fixture
def dodo(live_server) -> DodoPayments:
    return sdk(live_server)


@pytest.fixture
def customer_id(dodo) -> str:
    return dodo.customers.create(email="ada@example.com", name="Ada").customer_id


def test_create_a_customer(dodo, clock) -> None:
    customer = dodo.customers.create(
        email="ada@example.com", name="Ada", phone_number="+441234567890", metadata={"plan": "pro"}
    )
    assert customer.customer_id.startswith("cus_")
    assert (customer.email, customer.name, customer.business_id) == (
        "ada@example.com",
        "Ada",
        "default",
    )
    assert customer.phone_number == "+441234567890"
    assert customer.metadata == {"plan": "pro"}
    assert customer.created_at == clock.now


def test_retrieve_a_customer(dodo, customer_id) -> None:
    customer = dodo.customers.retrieve(customer_id)
    assert (customer.customer_id, customer.email, customer.name) == (
        customer_id,
        "ada@example.com",
        "Ada",
    )


def test_list_customers(dodo, customer_id) -> None:
    page = dodo.customers.list()
    assert [c.customer_id for c in page.items] == [customer_id]
    assert dodo.customers.list(email="nobody@example.com").items == []


def test_ingest_events(dodo, customer_id, clock) -> None:
    response = dodo.usage_events.ingest(
        events=[
            {
                "event_id": "e1",
                "customer_id": customer_id,
                "event_name": "api.call",
                "timestamp": clock.now - timedelta(minutes=1),
            },
            {"event_id": "e2", "customer_id": customer_id, "event_name": "api.call"},
        ]
    )
    assert response.ingested_count == 2


def test_ingest_is_idempotent(dodo, customer_id) -> None:
    events = [{"event_id": "e1", "customer_id": customer_id, "event_name": "api.call"}]
    assert dodo.usage_events.ingest(events=events).ingested_count == 1
    assert dodo.usage_events.ingest(events=events).ingested_count == 0


def test_retrieve_an_event(dodo, customer_id, clock) -> None:
    moment = clock.now - timedelta(minutes=2)
    dodo.usage_events.ingest(
        events=[
            {
                "event_id": "e1",
                "customer_id": customer_id,
                "event_name": "llm.tokens",
                "timestamp": moment,
                "metadata": {"cost": 0.1, "model": "small", "cached": True},
            }
        ]
    )
    usage = dodo.usage_events.retrieve("e1")
    assert (usage.event_id, usage.customer_id, usage.event_name, usage.business_id) == (
        "e1",
        customer_id,
        "llm.tokens",
        "default",
    )
    assert usage.timestamp == moment
    assert usage.metadata == {"cost": 0.1, "model": "small", "cached": True}


def test_retrieve_an_event_raw_keeps_0_1(dodo, customer_id) -> None:
    dodo.usage_events.ingest(
        events=[
            {
                "event_id": "e1",
                "customer_id": customer_id,
                "event_name": "x",
                "metadata": {"cost": 0.1},
            }
        ]
    )
    raw = dodo.usage_events.with_raw_response.retrieve("e1")
    assert '"cost":0.1}' in raw.text()


def test_list_events_of_a_customer(dodo, customer_id, clock) -> None:
    other = dodo.customers.create(email="bob@example.com", name="Bob").customer_id
    dodo.usage_events.ingest(
        events=[
            {
                "event_id": f"a{i}",
                "customer_id": customer_id,
                "event_name": "x",
                "timestamp": clock.now - timedelta(minutes=i),
            }
            for i in range(3)
        ]
        + [{"event_id": "b0", "customer_id": other, "event_name": "x"}]
    )
    page = dodo.usage_events.list(customer_id=customer_id)
    assert [e.event_id for e in page.items] == ["a0", "a1", "a2"]
    assert [e.event_id for e in dodo.usage_events.list(customer_id=other).items] == ["b0"]


def test_list_events_with_a_time_range_and_page(dodo, customer_id, clock) -> None:
    dodo.usage_events.ingest(
        events=[
            {
                "event_id": f"a{i}",
                "customer_id": customer_id,
                "event_name": "x",
                "timestamp": clock.now - timedelta(minutes=i),
            }
            for i in range(5)
        ]
    )
    page = dodo.usage_events.list(
        start=clock.now - timedelta(minutes=3), end=clock.now, page_size=2, page_number=1
    )
    assert [e.event_id for e in page.items] == ["a3"]


def test_retrieving_an_unknown_event_raises_not_found(dodo) -> None:
    with pytest.raises(dodopayments.NotFoundError):
        dodo.usage_events.retrieve("nope")


def test_retrieving_an_unknown_customer_raises_not_found(dodo) -> None:
    with pytest.raises(dodopayments.NotFoundError):
        dodo.customers.retrieve("cus_nobody")


def test_a_wrong_key_raises_authentication_error(live_server) -> None:
    with pytest.raises(dodopayments.AuthenticationError):
        sdk(live_server, "wrong-key-0123456789").customers.list()


def test_an_ingest_key_gets_permission_denied_on_listing(live_server, container, clock) -> None:
    key = container.keys.create("default", "ingest", clock.now)
    with pytest.raises(dodopayments.PermissionDeniedError):
        sdk(live_server, key).usage_events.list()


def test_a_batch_of_only_bad_events_raises_unprocessable(dodo) -> None:
    with pytest.raises(dodopayments.UnprocessableEntityError) as raised:
        dodo.usage_events.ingest(
            events=[{"event_id": "e1", "customer_id": "cus_nobody", "event_name": "x"}]
        )
    assert raised.value.body["rejected"][0]["code"] == "unknown_customer"

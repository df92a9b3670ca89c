"""Webhook attempts counted where the outbox records them; messages by status read when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from application.delivery import Deliverer, Outcome
from application.outbox import OutboxProjection
from infrastructure.scrape import read_state
from tests.api.helpers import client_for, make_customer
from tests.api.test_credits_api import entitlement
from tests.integration.test_webhook_delivery import endpoint


class ScriptedSender:
    """Answers each attempt with the next status of its script."""

    def __init__(self, *statuses: int) -> None:
        self._statuses = list(statuses)

    def send(self, route: Any, pending: Any, secret: str, headers: dict[str, str]) -> Outcome:
        status = self._statuses.pop(0)
        return Outcome(status, None if status < 300 else "refused")


@pytest.fixture
def one_message(make_container: Callable[..., Any]) -> Iterator[Any]:
    """A container whose outbox holds one message (a manual credit entry), not delivered."""
    container = make_container(webhook_poll_seconds=0)  # no delivery loop: the test delivers
    with client_for(container) as client:  # the app closes the container as it stops
        endpoint(client, "http://127.0.0.1:9/in")
        cid = make_customer(client)
        entry = client.post(
            f"/credit-entitlements/{entitlement(client)}/balances/{cid}/ledger-entries",
            json={"amount": "5", "entry_type": "credit"},
        )
        assert entry.status_code == 200, entry.text
        container.projector.catch_up()
        yield container


def deliver(container: Any, sender: ScriptedSender, attempts: int) -> None:
    outbox = container.views[OutboxProjection.name]
    deliverer = Deliverer(
        outbox,
        outbox.routes,
        container.webhook_secrets,
        sender,
        container.clock,
        lambda *_: None,
        schedule=(0.0,),  # one retry, due at once; then given up
    )
    try:
        for _ in range(attempts):
            assert deliverer.step() == 1
            deliverer.drain()
    finally:
        deliverer.close()


def attempts(outcome: str) -> Callable[[], float]:
    name = "ledger_webhook_attempts_total"
    before = REGISTRY.get_sample_value(name, {"outcome": outcome}) or 0.0
    return lambda: (REGISTRY.get_sample_value(name, {"outcome": outcome}) or 0.0) - before


def test_a_delivered_attempt_is_counted_and_the_message_shows_delivered(one_message) -> None:
    container = one_message
    delivered = attempts("delivered")
    deliver(container, ScriptedSender(204), attempts=1)
    assert delivered() == 1
    state = read_state(container)
    assert state is not None
    assert state.messages == {"delivered": 1}


def test_a_failed_attempt_tried_again_then_given_up_is_counted_as_retry_then_failed(
    one_message,
) -> None:
    container = one_message
    retry, failed = attempts("retry"), attempts("failed")
    deliver(container, ScriptedSender(500, 503), attempts=2)
    assert (retry(), failed()) == (1, 1)
    state = read_state(container)
    assert state is not None
    assert state.messages == {"failed": 1}

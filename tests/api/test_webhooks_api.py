"""Webhook endpoints through the ``dodopayments`` SDK (``client.webhooks``) and over HTTP."""

from __future__ import annotations

import base64
from datetime import timedelta

import dodopayments
import pytest
from dodopayments import DodoPayments

from tests.api.helpers import assert_error, bearer
from tests.conftest import BOOTSTRAP_KEY


@pytest.fixture
def dodo(live_server) -> DodoPayments:
    return DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live_server.base_url, max_retries=0)


def test_the_sdk_creates_reads_changes_lists_and_deletes_endpoints(dodo, clock) -> None:
    created = dodo.webhooks.create(
        url="https://example.com/hooks",
        description="billing",
        filter_types=["credit.added", "invoice.finalized"],  # type: ignore[list-item]
        metadata={"team": "ops"},
        rate_limit=5,
        headers={"X-Team": "ops", "Authorization": "Bearer s3cret"},
    )
    assert created.id.startswith("wh_")
    assert (created.url, created.description, created.rate_limit) == (
        "https://example.com/hooks",
        "billing",
        5,
    )
    assert created.filter_types == ["credit.added", "invoice.finalized"]
    assert dodo.webhooks.retrieve(created.id).metadata == {"team": "ops"}
    changed = dodo.webhooks.update(created.id, disabled=True, url="http://127.0.0.1:9/x")
    assert (changed.disabled, changed.url) == (True, "http://127.0.0.1:9/x")
    secret = dodo.webhooks.retrieve_secret(created.id).secret
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    headers = dodo.webhooks.headers.retrieve(created.id)
    assert headers.headers == {"X-Team": "ops"}
    assert headers.sensitive == ["Authorization"]  # named, never shown
    dodo.webhooks.headers.update(created.id, headers={"X-Team": "billing", "X-More": "1"})
    assert dodo.webhooks.headers.retrieve(created.id).headers == {
        "X-More": "1",
        "X-Team": "billing",
    }
    others = []
    for i in range(3):  # listed oldest first
        clock.advance(timedelta(seconds=1))
        others.append(dodo.webhooks.create(url=f"https://example.com/{i}"))
    listed = [w.id for w in dodo.webhooks.list(limit=2)]  # three pages, followed by the SDK
    assert listed == [created.id, *(w.id for w in others)]
    dodo.webhooks.delete(created.id)
    with pytest.raises(dodopayments.NotFoundError, match="not found"):
        dodo.webhooks.retrieve(created.id)
    assert [w.id for w in dodo.webhooks.list()] == [w.id for w in others]


def test_the_same_idempotency_key_gives_the_same_endpoint(dodo) -> None:
    first = dodo.webhooks.create(url="https://example.com/a", idempotency_key="setup-1")
    again = dodo.webhooks.create(url="https://example.com/a", idempotency_key="setup-1")
    assert again.id == first.id
    assert (
        dodo.webhooks.retrieve_secret(again.id).secret
        == dodo.webhooks.retrieve_secret(first.id).secret
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "ftp://example.com/x"}, "url: must be an http or https URL"),
        ({"url": "https:///nohost"}, "url: must be an http or https URL"),
        ({"url": "https://x.co", "filter_types": ["payment.succeeded"]}, "filter_types[0]"),
        ({"url": "https://x.co", "rate_limit": 0}, "rate_limit"),
        ({"url": "https://x.co", "headers": {"webhook-id": "x"}}, "set by the sender"),
        ({"url": "https://x.co", "headers": {"X": "a\r\nb"}}, "headers.X"),
        ({"url": "https://x.co", "metadata": {"a": 1}}, "metadata.a"),
        ({"url": "https://x.co", "colour": "red"}, "unknown field 'colour'"),
        ({"description": "no url"}, "url"),
    ],
)
def test_a_bad_endpoint_is_refused_naming_the_field(client, body, message) -> None:
    response = client.post("/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]


def test_endpoints_are_the_business_s_own_and_admin_only(client, container, clock) -> None:
    created = client.post("/webhooks", json={"url": "https://example.com/h"}).json()
    other = bearer(container.keys.create("acme", "admin", clock.now))
    assert_error(client.get(f"/webhooks/{created['id']}", headers=other), 404, "not_found")
    assert_error(client.get(f"/webhooks/{created['id']}/secret", headers=other), 404, "not_found")
    assert client.get("/webhooks", headers=other).json()["data"] == []
    ingest = bearer(container.keys.create("default", "ingest", clock.now))
    assert_error(client.get("/webhooks", headers=ingest), 403, "forbidden")
    assert_error(
        client.post("/webhooks", headers=ingest, json={"url": "https://x.co"}), 403, "forbidden"
    )

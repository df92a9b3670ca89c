"""The ``read`` scope, for dashboards and reporting tools: it reads business data, nothing more.

The rule (``api.auth.scope_guard``): a GET handler needs ``read`` unless marked
``admin``; any other handler needs ``admin`` unless marked (ingest). The sweeps
go over every route the app has, so a route added later is held to it too.
"""

from __future__ import annotations

import re

import pytest

from api.auth import PUBLIC_PATHS
from tests.api.helpers import assert_error, bearer, event, ingest, make_customer

ADMIN_GETS = {  # GETs that show a secret or manage keys: admin keys only
    "/webhooks/{webhook_id:str}/secret",
    "/webhooks/{webhook_id:str}/headers",
    "/api-keys",
    "/api-keys/audit",
    "/api-keys/{key_id:str}",
}
_PARAMETER = re.compile(r"\{[^}]+\}")
METER = {"name": "Calls", "event_name": "api.call", "measurement_unit": "calls"}


@pytest.fixture
def read(container, clock) -> dict[str, str]:
    return bearer(container.keys.create("default", "read", clock.now))


@pytest.fixture
def world(client) -> dict[str, str]:
    """A customer with an event, a meter and a webhook endpoint, made by the admin key."""
    customer = make_customer(client)
    assert ingest(client, event(customer, "e1")).status_code == 200
    meter = client.post("/meters", json={**METER, "aggregation": {"type": "count"}}).json()
    endpoint = client.post("/webhooks", json={"url": "https://example.com/hooks"}).json()
    return {"customer": customer, "meter": meter["id"], "webhook": endpoint["id"]}


def routes(client) -> list[tuple[str, str]]:
    """(method, path template) of every handler that asks for a key."""
    found = []
    for route in client.app.routes:
        for method, handler in getattr(route, "route_handler_map", {}).items():
            owner = handler[0] if isinstance(handler, tuple) else handler
            public = owner.opt.get("public") or any(
                route.path == p or route.path.startswith(f"{p}/") for p in PUBLIC_PATHS
            )
            if method != "OPTIONS" and not public:
                found.append((method, route.path))
    return sorted(found)


@pytest.mark.parametrize(
    "path",
    [
        "/customers",
        "/customers/{customer}",
        "/events",
        "/events/e1",
        "/meters",
        "/meters/{meter}",
        "/products",
        "/invoices",
        "/credit-entitlements",
        "/webhooks",
        "/webhooks/{webhook}",
        "/webhooks/{webhook}/messages",
        "/alerts",
    ],
)
def test_a_read_key_reads_business_data(client, world, read, path) -> None:
    response = client.get(path.format(**world), headers=read)
    assert response.status_code == 200, response.text
    assert response.json() == client.get(path.format(**world)).json()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/customers", {"email": "b@example.com", "name": "B"}),
        ("POST", "/meters", {**METER, "aggregation": {"type": "count"}}),
        ("PATCH", "/meters/{meter}", {"name": "Renamed"}),
        ("DELETE", "/meters/{meter}", None),
        ("POST", "/events/ingest", {"events": [event("cus_1", "e2")]}),
        ("POST", "/events/e1/void", None),
        ("DELETE", "/webhooks/{webhook}", None),
        ("POST", "/api-keys", {"scope": "admin"}),
    ],
)
def test_a_read_key_is_forbidden_every_write(client, world, read, method, path, body) -> None:
    before = {p: client.get(p).json() for p in ("/customers", "/meters", "/events", "/webhooks")}
    response = client.request(method, path.format(**world), json=body, headers=read)
    assert_error(response, 403, "forbidden")
    after = {p: client.get(p).json() for p in before}
    assert after == before


@pytest.mark.parametrize("what", ["secret", "headers"])
def test_a_read_key_never_sees_a_webhook_secret(client, world, read, what) -> None:
    response = client.get(f"/webhooks/{world['webhook']}/{what}", headers=read)
    assert_error(response, 403, "forbidden")
    assert client.get(f"/webhooks/{world['webhook']}/{what}").status_code == 200


def test_every_route_holds_a_read_key_to_reads(client, read) -> None:
    refused, answered = set(), set()
    for method, template in routes(client):
        response = client.request(method, _PARAMETER.sub("x", template), json={}, headers=read)
        assert response.status_code != 401, (method, template)
        (refused if response.status_code == 403 else answered).add((method, template))
    assert {(m, t) for m, t in refused if m == "GET"} == {("GET", t) for t in ADMIN_GETS}
    assert {m for m, _ in answered} == {"GET"}


def test_every_route_but_ingest_refuses_an_ingest_key(client, container, clock) -> None:
    key = bearer(container.keys.create("default", "ingest", clock.now))
    answered = {
        (method, template)
        for method, template in routes(client)
        if client.request(method, _PARAMETER.sub("x", template), json={}, headers=key).status_code
        != 403
    }
    assert answered == {("POST", "/events/ingest")}

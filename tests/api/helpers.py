"""Small builders shared by the API tests: customers, events, requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from tests.conftest import BOOTSTRAP_KEY


def client_for(container: Any) -> TestClient:
    """A client (use it as a context manager) over its own app and container."""
    test_client = TestClient(create_app(container))
    test_client.headers["Authorization"] = f"Bearer {BOOTSTRAP_KEY}"
    return test_client


def bearer(key: str) -> dict[str, str]:
    """Headers that make one request act with ``key`` instead of the client's key."""
    return {"Authorization": f"Bearer {key}"}


def iso(moment: datetime) -> str:
    return moment.isoformat()


def make_customer(
    client: TestClient, email: str = "ada@example.com", name: str = "Ada", **extra: Any
) -> str:
    """Create a customer and return its customer_id."""
    headers = extra.pop("headers", None) or {}
    response = client.post(
        "/customers", json={"email": email, "name": name, **extra}, headers=headers
    )
    assert response.status_code == 200, response.text
    customer_id: str = response.json()["customer_id"]
    return customer_id


def event(
    customer_id: str, event_id: str, event_name: str = "api.call", **fields: Any
) -> dict[str, Any]:
    """One event as the wire format spells it; ``fields`` adds timestamp, metadata..."""
    return {"event_id": event_id, "customer_id": customer_id, "event_name": event_name, **fields}


def ingest(client: TestClient, *events: dict[str, Any], **kwargs: Any) -> Any:
    return client.post("/events/ingest", json={"events": list(events)}, **kwargs)


def listed_ids(client: TestClient, **params: Any) -> list[str]:
    """The event_ids GET /events returns for ``params`` (page_size 1000 by default)."""
    response = client.get("/events", params={"page_size": 1000, **params})
    assert response.status_code == 200, response.text
    return [item["event_id"] for item in response.json()["items"]]


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is a JSON error with ``status`` and ``code``; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body

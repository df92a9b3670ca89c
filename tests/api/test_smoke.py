from __future__ import annotations

from litestar.testing import TestClient

from api.app import create_app


def test_health_answers_without_a_key(client) -> None:
    client.headers.pop("Authorization")
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_an_ingested_event_can_be_read_back(client) -> None:
    customer = client.post("/customers", json={"email": "a@b.co", "name": "A"}).json()
    body = {
        "events": [
            {
                "event_id": "e1",
                "customer_id": customer["customer_id"],
                "event_name": "api",
                "metadata": {"x": 0.1},
            }
        ]
    }
    assert client.post("/events/ingest", json=body).json()["ingested_count"] == 1
    assert client.get("/events/e1").json()["metadata"] == {"x": 0.1}


def test_the_openapi_document_is_served_without_a_key_and_names_every_route(container) -> None:
    with TestClient(create_app(container)) as anonymous:
        response = anonymous.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    paths = response.json()["paths"]
    for path in (
        "/events/ingest",
        "/meters/{meter_id}/usage",
        "/subscriptions/{subscription_id}/invoice-preview",
        "/invoices/{invoice_id}/explain",
        "/credit-entitlements/{entitlement_id}/balances/{customer_id}/ledger-entries",
    ):
        assert path in paths, sorted(paths)

from __future__ import annotations


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

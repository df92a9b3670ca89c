"""Bearer keys: who may call, which business they see, what their scope allows, how stored."""

from __future__ import annotations

import hashlib

import pytest

from tests.api.helpers import assert_error, bearer, event, ingest, listed_ids, make_customer
from tests.conftest import BOOTSTRAP_KEY


@pytest.fixture
def acme(container, clock) -> dict[str, str]:
    """Headers acting as an admin of a second business, "acme"."""
    return bearer(container.keys.create("acme", "admin", clock.now))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"Authorization": "Basic xyz"},
        {"Authorization": "Bearer "},
        {"Authorization": BOOTSTRAP_KEY},
    ],
    ids=["missing", "wrong-key", "basic-scheme", "empty-bearer", "no-scheme"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/events"),
        ("POST", "/events/ingest"),
        ("GET", "/customers"),
        ("POST", "/customers"),
        ("GET", "/events/e1"),
    ],
)
def test_a_request_without_a_valid_key_is_401(client, headers, method, path) -> None:
    client.headers.pop("Authorization")
    response = client.request(method, path, headers=headers, json={"events": []})
    assert_error(response, 401, "unauthorized")


def test_the_bearer_scheme_is_case_insensitive(client) -> None:
    assert client.get("/events", headers={"Authorization": f"bearer {BOOTSTRAP_KEY}"}).json() == {
        "items": []
    }


def test_a_created_key_works_for_its_business(client, acme) -> None:
    assert client.get("/customers", headers=acme).status_code == 200


def test_another_business_cannot_read_the_first_ones_event(client, acme) -> None:
    cid = make_customer(client)
    ingest(client, event(cid, "e1"))
    assert_error(client.get("/events/e1", headers=acme), 404, "not_found")
    assert client.get("/events/e1").status_code == 200


def test_another_business_cannot_read_the_first_ones_customer(client, acme) -> None:
    cid = make_customer(client)
    assert_error(client.get(f"/customers/{cid}", headers=acme), 404, "not_found")


def test_another_business_sees_empty_listings(client, acme) -> None:
    cid = make_customer(client)
    ingest(client, event(cid, "e1"))
    assert client.get("/events", headers=acme).json() == {"items": []}
    assert client.get("/customers", headers=acme).json() == {"items": []}
    assert client.get("/customers", params={"email": "ada@example.com"}, headers=acme).json() == {
        "items": []
    }


def test_the_same_event_id_in_two_businesses_is_two_events(client, acme) -> None:
    ours = make_customer(client)
    theirs = make_customer(client, headers=acme)
    assert ingest(client, event(ours, "shared")).json()["ingested_count"] == 1
    assert ingest(client, event(theirs, "shared"), headers=acme).json()["ingested_count"] == 1
    assert client.get("/events/shared").json()["customer_id"] == ours
    assert client.get("/events/shared", headers=acme).json()["customer_id"] == theirs
    assert client.get("/events/shared", headers=acme).json()["business_id"] == "acme"
    assert listed_ids(client) == ["shared"]


def test_a_customer_of_one_business_cannot_be_used_by_another(client, acme) -> None:
    cid = make_customer(client)
    response = ingest(client, event(cid, "e1"), headers=acme)
    assert response.status_code == 422
    assert [r["code"] for r in response.json()["rejected"]] == ["unknown_customer"]
    assert_error(client.get("/events/e1"), 404, "not_found")


def test_an_ingest_key_can_ingest(client, container, clock) -> None:
    cid = make_customer(client)
    key = bearer(container.keys.create("default", "ingest", clock.now))
    assert ingest(client, event(cid, "e1"), headers=key).json()["ingested_count"] == 1
    assert client.get("/events/e1").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/events"), ("GET", "/events/e1"), ("POST", "/customers"), ("GET", "/customers")],
)
def test_an_ingest_key_is_forbidden_everything_else(client, container, clock, method, path) -> None:
    key = bearer(container.keys.create("default", "ingest", clock.now))
    body = {"email": "ada@example.com", "name": "Ada"}
    assert_error(client.request(method, path, headers=key, json=body), 403, "forbidden")
    assert client.get("/customers").json()["items"] == []


def test_keys_are_stored_hashed(container, clock) -> None:
    plain = container.keys.create("acme", "admin", clock.now)
    with container.ledger.recorder.datastore.transaction(commit=False) as curs:
        curs.execute("SELECT * FROM api_keys")
        # sqlite3.Row iterates values, a psycopg dict row keys: keys() names the columns on both.
        rows = [[str(row[col]) for col in row.keys()] for row in curs.fetchall()]  # noqa: SIM118
    assert len(rows) == 1
    assert all(plain not in value for value in rows[0])
    assert hashlib.sha256(plain.encode()).hexdigest() in rows[0]

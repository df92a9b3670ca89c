"""``/api-keys`` over HTTP: create, list, retrieve, rotate, revoke, audit; one business each."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest

from infrastructure.key_records import KeyQuery
from tests.api.helpers import assert_error, bearer
from tests.conftest import BOOTSTRAP_KEY

LISTED = {
    "id",
    "prefix",
    "scope",
    "name",
    "status",
    "created_at",
    "created_by",
    "last_used_at",
    "revoked_at",
    "revoked_by",
    "expires_at",
}


def create(client, scope: str = "ingest", **body: object) -> dict:
    response = client.post("/api-keys", json={"scope": scope, **body})
    assert response.status_code == 201, response.text
    created: dict = response.json()
    return created


@pytest.fixture
def acme(container, clock) -> dict[str, str]:
    return bearer(container.keys.create("acme", "admin", clock.now))


def test_a_new_key_is_shown_once_with_its_listing(client, clock) -> None:
    created = create(client, "read", name="grafana")
    assert set(created) == {*LISTED, "key"}
    assert created["key"].startswith("ldg_r_")
    assert created["prefix"] == created["key"][:12]
    assert (created["scope"], created["name"], created["status"]) == ("read", "grafana", "active")
    assert created["created_by"] == "bootstrap"
    assert datetime.fromisoformat(created["created_at"]) == clock.now
    assert client.get("/customers", headers=bearer(created["key"])).status_code == 200


def test_a_listing_shows_neither_a_key_nor_its_hash(client) -> None:
    created = create(client)
    response = client.get("/api-keys")
    assert [set(item) for item in response.json()["items"]] == [LISTED]
    assert created["key"] not in response.text
    assert hashlib.sha256(created["key"].encode()).hexdigest()[:16] not in response.text
    assert client.get(f"/api-keys/{created['id']}").json() == response.json()["items"][0]


def test_a_listing_pages_newest_first(client, clock) -> None:
    made = []
    for _ in range(3):
        made.append(create(client)["id"])
        clock.advance(timedelta(seconds=1))
    pages = [
        [
            k["id"]
            for k in client.get("/api-keys", params={"page_size": 2, "page_number": n}).json()[
                "items"
            ]
        ]
        for n in (0, 1)
    ]
    assert pages == [made[:0:-1], made[:1]]


def test_a_listing_leaves_revoked_keys_out_unless_asked(client) -> None:
    kept, gone = create(client)["id"], create(client)["id"]
    client.delete(f"/api-keys/{gone}")
    assert [k["id"] for k in client.get("/api-keys").json()["items"]] == [kept]
    everything = client.get("/api-keys", params={"include_inactive": "true"}).json()["items"]
    assert {k["id"]: k["status"] for k in everything} == {kept: "active", gone: "revoked"}


def test_last_use_is_listed(client, clock) -> None:
    created = create(client, "read")
    client.get("/meters", headers=bearer(created["key"]))
    listed = client.get(f"/api-keys/{created['id']}").json()
    assert datetime.fromisoformat(listed["last_used_at"]) == clock.now


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        ({"scope": "owner"}, 422, "invalid_request", "$.scope"),
        ({}, 422, "invalid_request", "$"),
        ({"scope": "read", "name": ""}, 422, "invalid_request", "$.name"),
        ({"scope": "read", "name": "x" * 101}, 422, "invalid_request", "$.name"),
        ({"scope": "read", "name": "a\u0000b"}, 422, "invalid_request", "$.name"),
        ({"scope": "read", "business_id": "acme"}, 422, "invalid_request", "$"),
        ({"scope": 1}, 422, "invalid_request", "$.scope"),
    ],
    ids=["scope", "no-scope", "empty-name", "long-name", "nul-name", "business", "number"],
)
def test_a_bad_new_key_is_refused_naming_the_field(client, body, status, code, path) -> None:
    found = assert_error(client.post("/api-keys", json=body), status, code)
    assert found["detail"]["path"] == path
    assert client.get("/api-keys").json()["items"] == []


def test_a_body_that_is_not_json_is_400(client) -> None:
    response = client.post("/api-keys", content=b"{", headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_json")


def test_a_revoked_key_is_401_at_once_and_the_answer_says_who(client, clock) -> None:
    created = create(client)
    response = client.delete(f"/api-keys/{created['id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert response.json()["revoked_by"] == "bootstrap"
    assert datetime.fromisoformat(response.json()["revoked_at"]) == clock.now
    ingest = client.post("/events/ingest", json={"events": []}, headers=bearer(created["key"]))
    assert_error(ingest, 401, "unauthorized")


def test_revoking_again_answers_the_first_revocation(client, clock) -> None:
    key_id = create(client)["id"]
    first = client.delete(f"/api-keys/{key_id}").json()
    clock.advance(timedelta(minutes=5))
    again = client.delete(f"/api-keys/{key_id}")
    assert (again.status_code, again.json()) == (200, first)


@pytest.mark.parametrize("key_id", ["key_0000000000000000", "bootstrap", "x%00y"])
def test_an_unknown_key_is_404(client, key_id) -> None:
    assert_error(client.delete(f"/api-keys/{key_id}"), 404, "not_found")
    assert_error(client.get(f"/api-keys/{key_id}"), 404, "not_found")
    rotate = client.post(f"/api-keys/{key_id}/rotate", json={"grace_seconds": 0})
    assert_error(rotate, 404, "not_found")


def test_another_business_key_is_404_and_stays_working(client, acme) -> None:
    created = create(client)
    assert_error(client.delete(f"/api-keys/{created['id']}", headers=acme), 404, "not_found")
    assert_error(client.get(f"/api-keys/{created['id']}", headers=acme), 404, "not_found")
    rotate = client.post(
        f"/api-keys/{created['id']}/rotate", json={"grace_seconds": 0}, headers=acme
    )
    assert_error(rotate, 404, "not_found")
    assert [k["id"] for k in client.get("/api-keys", headers=acme).json()["items"]] != [
        created["id"]
    ]
    headers = bearer(created["key"])
    assert client.post("/events/ingest", json={"events": []}, headers=headers).status_code != 401


def test_a_key_cannot_revoke_itself(client) -> None:
    own = create(client, "admin")
    response = client.delete(f"/api-keys/{own['id']}", headers=bearer(own["key"]))
    assert_error(response, 422, "cannot_revoke_own_key")
    assert client.get("/api-keys", headers=bearer(own["key"])).status_code == 200


def test_a_rotation_gives_a_new_key_and_the_old_works_through_the_grace(client, clock) -> None:
    old = create(client, "read", name="dashboards")
    response = client.post(f"/api-keys/{old['id']}/rotate", json={"grace_seconds": 3600})
    assert response.status_code == 201, response.text
    new = response.json()
    assert (new["scope"], new["name"], new["status"]) == ("read", "dashboards", "active")
    assert datetime.fromisoformat(new["previous"]["expires_at"]) == clock.now + timedelta(hours=1)
    assert new["previous"]["status"] == "expiring"
    clock.advance(timedelta(minutes=59))
    assert client.get("/meters", headers=bearer(old["key"])).status_code == 200
    clock.advance(timedelta(minutes=1))
    assert_error(client.get("/meters", headers=bearer(old["key"])), 401, "unauthorized")
    assert client.get("/meters", headers=bearer(new["key"])).status_code == 200


def test_a_key_may_rotate_itself(client) -> None:
    own = create(client, "admin")
    response = client.post(
        f"/api-keys/{own['id']}/rotate", json={"grace_seconds": 60}, headers=bearer(own["key"])
    )
    assert response.status_code == 201
    assert response.json()["created_by"] == own["id"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"grace_seconds": -1}, "$.grace_seconds"),
        ({"grace_seconds": 30 * 86400 + 1}, "$.grace_seconds"),
        ({"grace_seconds": "1h"}, "$.grace_seconds"),
        ({}, "$"),
        ({"grace_seconds": 1, "scope": "admin"}, "$"),
    ],
    ids=["negative", "over-30-days", "text", "missing", "unknown-field"],
)
def test_a_bad_grace_is_refused_naming_the_field(client, body, path) -> None:
    key_id = create(client)["id"]
    found = assert_error(
        client.post(f"/api-keys/{key_id}/rotate", json=body), 422, "invalid_request"
    )
    assert found["detail"]["path"] == path
    assert client.get(f"/api-keys/{key_id}").json()["expires_at"] is None


def test_a_rotated_or_revoked_key_is_not_rotated_again(client) -> None:
    rotated, revoked = create(client)["id"], create(client)["id"]
    client.post(f"/api-keys/{rotated}/rotate", json={"grace_seconds": 60})
    client.delete(f"/api-keys/{revoked}")
    again = client.post(f"/api-keys/{rotated}/rotate", json={"grace_seconds": 60})
    assert_error(again, 422, "key_already_rotated")
    dead = client.post(f"/api-keys/{revoked}/rotate", json={"grace_seconds": 60})
    assert_error(dead, 422, "key_revoked")
    assert len(client.get("/api-keys", params={"include_inactive": "true"}).json()["items"]) == 3


def test_the_audit_lists_who_did_what_newest_first(client, container, clock) -> None:
    admin = create(client, "admin")
    clock.advance(timedelta(seconds=1))
    target = create(client, "ingest", name="edge")
    rotated = client.post(
        f"/api-keys/{target['id']}/rotate", json={"grace_seconds": 60}, headers=bearer(admin["key"])
    ).json()
    client.delete(f"/api-keys/{target['id']}", headers=bearer(admin["key"]))
    items = client.get("/api-keys/audit").json()["items"]
    assert [(e["key_id"], e["action"], e["actor"], e["related_key_id"]) for e in items] == [
        (target["id"], "revoked", admin["id"], None),
        (target["id"], "rotated", admin["id"], rotated["id"]),
        (rotated["id"], "created", admin["id"], target["id"]),
        (target["id"], "created", "bootstrap", None),
        (admin["id"], "created", "bootstrap", None),
    ]
    one = client.get("/api-keys/audit", params={"key_id": rotated["id"], "page_size": 5})
    assert [e["action"] for e in one.json()["items"]] == ["created"]


def test_the_audit_of_another_business_is_not_shown(client, acme) -> None:
    ours = create(client)["id"]
    theirs = client.get("/api-keys/audit", headers=acme).json()["items"]
    assert [e["actor"] for e in theirs] == ["system"]  # acme's own key, made in code
    assert ours not in {e["key_id"] for e in theirs}
    assert [e["key_id"] for e in client.get("/api-keys/audit").json()["items"]] == [ours]


@pytest.mark.parametrize("scope", ["ingest", "read"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api-keys"),
        ("POST", "/api-keys"),
        ("GET", "/api-keys/audit"),
        ("GET", "/api-keys/KEY"),
        ("DELETE", "/api-keys/KEY"),
        ("POST", "/api-keys/KEY/rotate"),
    ],
)
def test_only_an_admin_key_manages_keys(client, container, clock, scope, method, path) -> None:
    issued = container.keys.issue("default", scope, clock.now)
    response = client.request(
        method,
        path.replace("KEY", issued.record.key_id),
        json={"scope": "admin", "grace_seconds": 0},
        headers=bearer(issued.token),
    )
    assert_error(response, 403, "forbidden")
    assert container.keys.authenticate(issued.token, clock.now) is not None
    assert len(container.keys.keys(_all(clock))) == 1


def _all(clock) -> KeyQuery:
    return KeyQuery(None, clock.now, include_inactive=True)


def test_the_bootstrap_key_is_not_listed(client) -> None:
    assert client.get("/api-keys").json()["items"] == []
    assert BOOTSTRAP_KEY not in client.get("/api-keys/audit").text

"""Meters over HTTP: create, retrieve, list, update, archive, unarchive; keys; bad input.

The tests of a module share one store of each kind (``store``); each test acts
for a business of its own (``api``), so it sees only its own meters. A refused
request must write nothing: those tests check that the log's head did not move.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings
from tests.api.helpers import assert_error, bearer
from tests.conftest import (
    BOOTSTRAP_KEY,
    PG_HOST,
    PG_PORT,
    PG_USER,
    STORES,
    FakeClock,
    _create_pg_database,
    _drop_pg_database,
)

SHAPE = {
    "id",
    "aggregation",
    "business_id",
    "created_at",
    "event_name",
    "measurement_unit",
    "name",
    "updated_at",
    "description",
    "filter",
    "archived",
}
METER: dict[str, Any] = {
    "name": "Tokens",
    "event_name": "api.call",
    "measurement_unit": "tokens",
    "aggregation": {"type": "sum", "key": "tokens"},
}
MISSING = object()
EXACT = msgspec.json.Encoder(decimal_format="number")
CONDITION = {"key": "tier", "operator": "equals", "value": "pro"}


def body(**changes: Any) -> dict[str, Any]:
    """METER with ``changes``; a field set to MISSING is left out."""
    merged = {**METER, **changes}
    return {k: v for k, v in merged.items() if v is not MISSING}


def where(*clauses: Any, conjunction: str = "and") -> dict[str, Any]:
    return {"conjunction": conjunction, "clauses": list(clauses)}


def cond(**changes: Any) -> dict[str, Any]:
    merged = {**CONDITION, **changes}
    return {k: v for k, v in merged.items() if v is not MISSING}


def exact(text: str) -> Any:
    """A JSON answer with every fractional number read as an exact Decimal."""
    return json.loads(text, parse_float=Decimal)


def create_meter(client: TestClient, **changes: Any) -> dict[str, Any]:
    response = client.post("/meters", json=body(**changes))
    assert response.status_code == 200, response.text
    meter: dict[str, Any] = response.json()
    return meter


def meter_ids(client: TestClient, **params: Any) -> list[str]:
    response = client.get("/meters", params=params)
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["items"]]


def log_head(container: Container) -> int:
    return container.ledger.recorder.max_notification_id() or 0


def send(client: TestClient, method: str, path: str, payload: Any) -> Any:
    if isinstance(payload, bytes):
        return client.request(
            method, path, content=payload, headers={"content-type": "application/json"}
        )
    return client.request(method, path, json=payload)


@dataclass
class Store:
    """One store per module and kind; each test acts for a business of its own."""

    container: Container
    clock: FakeClock
    client: TestClient
    business: str = "default"

    def new_business(self, scope: str = "admin") -> tuple[str, dict[str, str]]:
        business = f"biz-{next(_BUSINESS_NUMBERS)}"
        key = self.container.keys.create(business, scope, self.clock.now)
        return business, bearer(key)


_BUSINESS_NUMBERS = itertools.count()
START = FakeClock().now


@contextmanager
def module_store(kind: str, folder: Path, **overrides: Any) -> Iterator[Store]:
    """A store of ``kind`` ("sqlite" or "postgres") with a running app over it."""
    pg_name = None
    if kind == "sqlite":
        url = f"sqlite:///{folder}/ledger.sqlite"
    else:
        pg_name = _create_pg_database()
        url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{pg_name}"
    clock = FakeClock()
    settings = Settings(
        database_url=url,
        bootstrap_api_key=BOOTSTRAP_KEY,
        follower_poll_seconds=0.01,
        **overrides,
    )
    container = build(settings, clock)
    try:
        with TestClient(create_app(container)) as client:
            yield Store(container, clock, client)
    finally:
        container.close()
        if pg_name is not None:
            _drop_pg_database(pg_name)


@pytest.fixture(scope="module", params=STORES)
def store(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Store]:
    with module_store(request.param, tmp_path_factory.mktemp("meters")) as shared:
        yield shared


@pytest.fixture
def api(store: Store) -> TestClient:
    """The module's client, acting for a new business: it sees no other test's meters."""
    store.clock.now = START
    store.business, headers = store.new_business()
    store.client.headers.update(headers)
    return store.client


@pytest.fixture
def acme(store: Store, api: TestClient) -> dict[str, str]:
    """Headers acting as an admin of a second business."""
    return store.new_business()[1]


@pytest.fixture
def ingest_key(store: Store, api: TestClient) -> dict[str, str]:
    """Headers acting for the test's business with an ingest-scoped key."""
    return bearer(store.container.keys.create(store.business, "ingest", store.clock.now))


@pytest.fixture
def meter(api: TestClient) -> dict[str, Any]:
    return create_meter(api, description="LLM tokens", filter=where(CONDITION, cond(key="region")))


# Create and retrieve


def test_create_answers_200_with_the_meter_in_the_sdk_shape(api, store) -> None:
    response = api.post(
        "/meters",
        json=body(description="LLM tokens", filter=where(CONDITION)),
    )
    assert response.status_code == 200, response.text
    meter = response.json()
    assert set(meter) == SHAPE
    assert meter["id"].startswith("mtr_")
    assert {k: v for k, v in meter.items() if k != "id"} == {
        "aggregation": {"type": "sum", "key": "tokens"},
        "business_id": store.business,
        "created_at": "2026-11-25T12:00:00Z",
        "updated_at": "2026-11-25T12:00:00Z",
        "event_name": "api.call",
        "measurement_unit": "tokens",
        "name": "Tokens",
        "description": "LLM tokens",
        "filter": {"conjunction": "and", "clauses": [CONDITION]},
        "archived": False,
    }


def test_a_count_meter_has_a_null_key_and_no_filter_by_default(api) -> None:
    meter = create_meter(api, aggregation={"type": "count"})
    assert meter["aggregation"] == {"type": "count", "key": None}
    assert meter["filter"] is None
    assert meter["description"] is None


def test_a_count_meter_may_name_a_null_key(api) -> None:
    meter = create_meter(api, aggregation={"type": "count", "key": None})
    assert meter["aggregation"] == {"type": "count", "key": None}


@pytest.mark.parametrize("kind", ["sum", "max", "min", "last", "unique_count"])
def test_every_keyed_aggregation_can_be_created(api, kind) -> None:
    meter = create_meter(api, aggregation={"type": kind, "key": "tokens"})
    assert meter["aggregation"] == {"type": kind, "key": "tokens"}
    assert api.get(f"/meters/{meter['id']}").json()["aggregation"] == meter["aggregation"]


def test_every_operator_is_accepted_and_read_back_exactly(api) -> None:
    clauses = [
        {"key": "tier", "operator": "equals", "value": "pro"},
        {"key": "beta", "operator": "not_equals", "value": True},
        {"key": "tokens", "operator": "greater_than", "value": 10},
        {"key": "tokens", "operator": "greater_than_or_equals", "value": Decimal("0.5")},
        {"key": "tokens", "operator": "less_than", "value": -3},
        {
            "key": "tokens",
            "operator": "less_than_or_equals",
            "value": Decimal("-12345678901234567890.25"),
        },
        {"key": "model", "operator": "contains", "value": "gpt"},
        {"key": "model", "operator": "does_not_contain", "value": "mini"},
    ]
    response = send(api, "POST", "/meters", EXACT.encode(body(filter=where(*clauses))))
    assert response.status_code == 200, response.text
    assert exact(response.text)["filter"] == where(*clauses)
    again = api.get(f"/meters/{response.json()['id']}")
    assert exact(again.text)["filter"] == where(*clauses)
    assert '"value":-12345678901234567890.25' in again.text


def test_a_filter_nested_three_levels_deep_is_accepted(api) -> None:
    deepest = where(CONDITION, cond(key="region", value="eu"), conjunction="or")
    three = where(where(deepest, where(CONDITION)), where(cond(key="plan")), conjunction="or")
    meter = create_meter(api, filter=three)
    assert meter["filter"] == three
    assert api.get(f"/meters/{meter['id']}").json()["filter"] == three


def test_names_and_units_at_their_length_limits_are_accepted(api) -> None:
    meter = create_meter(
        api,
        name="n" * 255,
        measurement_unit="u" * 100,
        description="d" * 1000,
        event_name="e" * 255,
        aggregation={"type": "sum", "key": "k" * 100},
    )
    assert (len(meter["name"]), len(meter["measurement_unit"])) == (255, 100)
    assert (len(meter["description"]), len(meter["event_name"])) == (1000, 255)


def test_each_create_makes_a_new_meter(api) -> None:
    assert create_meter(api)["id"] != create_meter(api)["id"]


def test_retrieve_returns_what_create_returned(api) -> None:
    meter = create_meter(api, description="d", filter=where(CONDITION))
    response = api.get(f"/meters/{meter['id']}")
    assert response.status_code == 200
    assert response.json() == meter


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/meters/mtr_unknown"),
        ("PATCH", "/meters/mtr_unknown"),
        ("DELETE", "/meters/mtr_unknown"),
        ("POST", "/meters/mtr_unknown/unarchive"),
        ("GET", "/meters/mtr_unknown/usage"),
    ],
)
def test_an_unknown_meter_is_404_not_found(api, store, method, path) -> None:
    head = log_head(store.container)
    response = api.request(
        method,
        path,
        json={"name": "x"} if method == "PATCH" else None,
        params={"start": "2026-11-25T00:00:00Z", "end": "2026-11-26T00:00:00Z"},
    )
    assert_error(response, 404, "not_found")
    assert log_head(store.container) == head


# Listing


def test_list_is_newest_first(api, store) -> None:
    ids = []
    for _ in range(3):
        ids.append(create_meter(api)["id"])
        store.clock.advance(timedelta(minutes=1))
    assert meter_ids(api) == ids[::-1]


def test_list_items_have_the_meter_shape(api) -> None:
    meter = create_meter(api, description="d", filter=where(CONDITION))
    assert api.get("/meters").json() == {"items": [meter]}


def test_list_pages_are_0_based(api, store) -> None:
    ids = []
    for _ in range(5):
        ids.append(create_meter(api)["id"])
        store.clock.advance(timedelta(seconds=1))
    newest = ids[::-1]
    assert meter_ids(api, page_size=2) == newest[:2]
    assert meter_ids(api, page_size=2, page_number=1) == newest[2:4]
    assert meter_ids(api, page_size=2, page_number=2) == newest[4:]
    assert meter_ids(api, page_size=2, page_number=3) == []


def test_list_default_page_size_is_10(api, store) -> None:
    for _ in range(11):
        create_meter(api)
        store.clock.advance(timedelta(seconds=1))
    assert len(meter_ids(api)) == 10
    assert len(meter_ids(api, page_number=1)) == 1
    assert len(meter_ids(api, page_size=100)) == 11


def test_an_empty_catalogue_lists_no_meters(api) -> None:
    assert api.get("/meters").json() == {"items": []}


def test_archived_meters_are_listed_only_with_archived_true(api, store) -> None:
    kept = create_meter(api)["id"]
    store.clock.advance(timedelta(seconds=1))
    gone = create_meter(api)["id"]
    assert api.delete(f"/meters/{gone}").status_code == 204
    assert meter_ids(api) == [kept]
    assert meter_ids(api, archived="false") == [kept]
    assert meter_ids(api, archived="true") == [gone]


def test_an_unarchived_meter_is_listed_again(api) -> None:
    meter_id = create_meter(api)["id"]
    api.delete(f"/meters/{meter_id}")
    assert api.post(f"/meters/{meter_id}/unarchive").status_code == 200
    assert meter_ids(api) == [meter_id]
    assert meter_ids(api, archived=True) == []


def test_the_list_shows_a_meter_as_last_updated(api, store) -> None:
    meter_id = create_meter(api)["id"]
    store.clock.advance(timedelta(minutes=5))
    api.patch(f"/meters/{meter_id}", json={"name": "Renamed", "filter": where(CONDITION)})
    [item] = api.get("/meters").json()["items"]
    assert (item["name"], item["filter"], item["updated_at"]) == (
        "Renamed",
        where(CONDITION),
        "2026-11-25T12:05:00Z",
    )


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": 0},
        {"page_size": 101},
        {"page_size": -1},
        {"page_size": "ten"},
        {"page_number": -1},
        {"page_number": 1_000_001},
        {"page_number": "first"},
        {"archived": "maybe"},
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_bad_list_parameters_are_400_invalid_parameter(api, params) -> None:
    body_ = assert_error(api.get("/meters", params=params), 400, "invalid_parameter")
    assert next(iter(params)) in str(body_["detail"])


def test_list_parameters_at_their_limits_are_accepted(api) -> None:
    ok = api.get("/meters", params={"page_size": 100, "page_number": 1_000_000})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"items": []}


# Update


def test_patch_changes_name_description_and_unit_and_keeps_the_rest(api, store) -> None:
    meter = create_meter(api, description="old", filter=where(CONDITION))
    store.clock.advance(timedelta(hours=1))
    response = api.patch(
        f"/meters/{meter['id']}",
        json={"name": "Input tokens", "description": "new", "measurement_unit": "ktok"},
    )
    assert response.status_code == 200, response.text
    expected = {
        **meter,
        "name": "Input tokens",
        "description": "new",
        "measurement_unit": "ktok",
        "updated_at": "2026-11-25T13:00:00Z",
    }
    assert response.json() == expected
    assert api.get(f"/meters/{meter['id']}").json() == expected


def test_patch_of_one_field_leaves_the_others(api) -> None:
    meter = create_meter(api, description="keep me")
    patched = api.patch(f"/meters/{meter['id']}", json={"measurement_unit": "calls"}).json()
    assert (patched["name"], patched["description"], patched["measurement_unit"]) == (
        "Tokens",
        "keep me",
        "calls",
    )


def test_patch_with_a_null_description_removes_it(api) -> None:
    meter = create_meter(api, description="soon gone")
    patched = api.patch(f"/meters/{meter['id']}", json={"description": None})
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] is None
    assert api.get(f"/meters/{meter['id']}").json()["description"] is None


def test_patch_changes_the_definition(api, store) -> None:
    meter = create_meter(api, filter=where(CONDITION))
    store.clock.advance(timedelta(minutes=1))
    changes = {
        "event_name": "llm.completion",
        "aggregation": {"type": "max", "key": "latency_ms"},
        "filter": where(cond(operator="not_equals"), conjunction="or"),
    }
    response = api.patch(f"/meters/{meter['id']}", json=changes)
    assert response.status_code == 200, response.text
    read = api.get(f"/meters/{meter['id']}").json()
    assert {k: read[k] for k in changes} == changes
    assert read["updated_at"] == "2026-11-25T12:01:00Z"


def test_patch_with_a_null_filter_removes_the_filter(api) -> None:
    meter = create_meter(api, filter=where(CONDITION))
    assert api.patch(f"/meters/{meter['id']}", json={"filter": None}).json()["filter"] is None
    assert api.get(f"/meters/{meter['id']}").json()["filter"] is None


def test_an_empty_patch_changes_nothing_and_writes_nothing(api, store) -> None:
    meter = create_meter(api)
    head = log_head(store.container)
    store.clock.advance(timedelta(hours=1))
    response = api.patch(f"/meters/{meter['id']}", json={})
    assert response.status_code == 200
    assert response.json() == meter
    assert log_head(store.container) == head


def test_a_patch_to_the_same_values_writes_nothing(api, store) -> None:
    meter = create_meter(api, filter=where(CONDITION))
    head = log_head(store.container)
    store.clock.advance(timedelta(hours=1))
    same = {k: meter[k] for k in ("name", "event_name", "aggregation", "filter")}
    response = api.patch(f"/meters/{meter['id']}", json=same)
    assert response.json()["updated_at"] == meter["updated_at"]
    assert log_head(store.container) == head


# Archive and unarchive


def test_delete_archives_with_204_and_no_body(api, store) -> None:
    meter = create_meter(api)
    store.clock.advance(timedelta(minutes=3))
    response = api.delete(f"/meters/{meter['id']}")
    assert response.status_code == 204
    assert response.content == b""
    read = api.get(f"/meters/{meter['id']}").json()
    assert read == {**meter, "archived": True, "updated_at": "2026-11-25T12:03:00Z"}


def test_archiving_an_archived_meter_is_204_and_writes_nothing(api, store) -> None:
    meter_id = create_meter(api)["id"]
    api.delete(f"/meters/{meter_id}")
    head = log_head(store.container)
    assert api.delete(f"/meters/{meter_id}").status_code == 204
    assert log_head(store.container) == head


def test_unarchive_answers_the_active_meter(api, store) -> None:
    meter = create_meter(api)
    api.delete(f"/meters/{meter['id']}")
    store.clock.advance(timedelta(minutes=7))
    response = api.post(f"/meters/{meter['id']}/unarchive")
    assert response.status_code == 200, response.text
    expected = {**meter, "archived": False, "updated_at": "2026-11-25T12:07:00Z"}
    assert response.json() == expected
    assert api.get(f"/meters/{meter['id']}").json() == expected


def test_unarchiving_an_active_meter_writes_nothing(api, store) -> None:
    meter = create_meter(api)
    head = log_head(store.container)
    response = api.post(f"/meters/{meter['id']}/unarchive")
    assert response.json() == meter
    assert log_head(store.container) == head


def test_an_archived_meter_can_be_renamed(api) -> None:
    meter_id = create_meter(api)["id"]
    api.delete(f"/meters/{meter_id}")
    renamed = api.patch(f"/meters/{meter_id}", json={"name": "Old tokens"}).json()
    assert (renamed["name"], renamed["archived"]) == ("Old tokens", True)


# Keys: tenants and scopes

METER_CALLS = [
    ("GET", "/meters"),
    ("POST", "/meters"),
    ("GET", "/meters/{id}"),
    ("PATCH", "/meters/{id}"),
    ("DELETE", "/meters/{id}"),
    ("POST", "/meters/{id}/unarchive"),
    ("GET", "/meters/{id}/usage"),
]
USAGE_PARAMS = {"start": "2026-11-25T00:00:00Z", "end": "2026-11-26T00:00:00Z"}


def call(
    api: TestClient, meter: dict[str, Any], method: str, path: str, headers: dict[str, str]
) -> Any:
    payload = METER if method == "POST" else {"name": "Hijacked"}
    return api.request(
        method,
        path.format(id=meter["id"]),
        json=payload if method in {"POST", "PATCH"} else None,
        params=USAGE_PARAMS if path.endswith("usage") else None,
        headers=headers,
    )


@pytest.mark.parametrize(("method", "path"), METER_CALLS)
def test_an_ingest_key_is_403_on_every_meter_endpoint(
    api, store, meter, ingest_key, method, path
) -> None:
    head = log_head(store.container)
    assert_error(call(api, meter, method, path, ingest_key), 403, "forbidden")
    assert log_head(store.container) == head


@pytest.mark.parametrize(("method", "path"), METER_CALLS)
def test_a_request_without_a_key_is_401_on_every_meter_endpoint(
    api, store, meter, method, path
) -> None:
    head = log_head(store.container)
    response = call(api, meter, method, path, {"Authorization": "Bearer not-a-key-0123456789"})
    assert_error(response, 401, "unauthorized")
    assert log_head(store.container) == head


@pytest.mark.parametrize(("method", "path"), [c for c in METER_CALLS if "{id}" in c[1]])
def test_another_business_cannot_see_or_change_a_meter(
    api, store, meter, acme, method, path
) -> None:
    head = log_head(store.container)
    assert_error(call(api, meter, method, path, acme), 404, "not_found")
    assert log_head(store.container) == head
    assert api.get(f"/meters/{meter['id']}").json() == meter


def test_each_business_lists_only_its_own_meters(api, store, acme) -> None:
    ours = create_meter(api)["id"]
    response = api.post("/meters", json=METER, headers=acme)
    assert response.status_code == 200, response.text
    theirs = response.json()
    assert theirs["business_id"].startswith("biz-")
    assert theirs["business_id"] != store.business
    assert meter_ids(api) == [ours]
    assert [m["id"] for m in api.get("/meters", headers=acme).json()["items"]] == [theirs["id"]]
    assert_error(api.get(f"/meters/{theirs['id']}"), 404, "not_found")


def test_another_business_cannot_archive_a_meter(api, acme) -> None:
    meter_id = create_meter(api)["id"]
    assert_error(api.delete(f"/meters/{meter_id}", headers=acme), 404, "not_found")
    assert api.get(f"/meters/{meter_id}").json()["archived"] is False
    assert meter_ids(api) == [meter_id]


# Bad input to POST /meters

DEPTH_4 = where(where(where(where(CONDITION))))
CREATE_CASES = [
    ("not-json", b'{"name": ', 400, "invalid_json", None),
    ("empty-body", b"", 400, "invalid_json", None),
    ("array", [METER], 422, "invalid_request", "$"),
    ("name-missing", body(name=MISSING), 422, "invalid_request", "$"),
    ("name-null", body(name=None), 422, "invalid_request", "$.name"),
    ("name-number", body(name=5), 422, "invalid_request", "$.name"),
    ("name-blank", body(name="   "), 422, "invalid_meter", "name"),
    ("name-too-long", body(name="n" * 256), 422, "invalid_meter", "name"),
    ("unit-missing", body(measurement_unit=MISSING), 422, "invalid_request", "$"),
    ("unit-empty", body(measurement_unit=""), 422, "invalid_meter", "measurement_unit"),
    ("unit-too-long", body(measurement_unit="u" * 101), 422, "invalid_meter", "measurement_unit"),
    ("description-number", body(description=5), 422, "invalid_request", "$.description"),
    ("description-too-long", body(description="d" * 1001), 422, "invalid_meter", "description"),
    ("event-name-missing", body(event_name=MISSING), 422, "invalid_request", "$"),
    ("event-name-number", body(event_name=7), 422, "invalid_request", "$.event_name"),
    ("event-name-blank", body(event_name=" "), 422, "invalid_meter", "event_name"),
    ("event-name-too-long", body(event_name="e" * 256), 422, "invalid_meter", "event_name"),
    ("aggregation-missing", body(aggregation=MISSING), 422, "invalid_request", "$"),
    ("aggregation-null", body(aggregation=None), 422, "invalid_meter", "aggregation"),
    ("aggregation-string", body(aggregation="sum"), 422, "invalid_meter", "aggregation"),
    ("aggregation-list", body(aggregation=["sum"]), 422, "invalid_meter", "aggregation"),
    (
        "aggregation-unknown-type",
        body(aggregation={"type": "average", "key": "tokens"}),
        422,
        "invalid_meter",
        "aggregation.type",
    ),
    (
        "aggregation-type-in-capitals",
        body(aggregation={"type": "SUM", "key": "tokens"}),
        422,
        "invalid_meter",
        "aggregation.type",
    ),
    (
        "aggregation-type-missing",
        body(aggregation={"key": "tokens"}),
        422,
        "invalid_meter",
        "aggregation.type",
    ),
    (
        "aggregation-unknown-field",
        body(aggregation={"type": "sum", "key": "tokens", "window": "hour"}),
        422,
        "invalid_meter",
        "aggregation",
    ),
    ("sum-without-key", body(aggregation={"type": "sum"}), 422, "invalid_meter", "aggregation.key"),
    (
        "unique-count-with-null-key",
        body(aggregation={"type": "unique_count", "key": None}),
        422,
        "invalid_meter",
        "aggregation.key",
    ),
    (
        "key-on-count",
        body(aggregation={"type": "count", "key": "tokens"}),
        422,
        "invalid_meter",
        "aggregation.key",
    ),
    (
        "key-empty",
        body(aggregation={"type": "max", "key": ""}),
        422,
        "invalid_meter",
        "aggregation.key",
    ),
    (
        "key-number",
        body(aggregation={"type": "last", "key": 5}),
        422,
        "invalid_meter",
        "aggregation.key",
    ),
    (
        "key-too-long",
        body(aggregation={"type": "min", "key": "k" * 101}),
        422,
        "invalid_meter",
        "aggregation.key",
    ),
    ("filter-string", body(filter="tier=pro"), 422, "invalid_meter", "filter"),
    ("filter-list", body(filter=[CONDITION]), 422, "invalid_meter", "filter"),
    (
        "filter-unknown-conjunction",
        body(filter=where(CONDITION, conjunction="xor")),
        422,
        "invalid_meter",
        "filter.conjunction",
    ),
    (
        "filter-conjunction-missing",
        body(filter={"clauses": [CONDITION]}),
        422,
        "invalid_meter",
        "filter.conjunction",
    ),
    (
        "filter-unknown-field",
        body(filter={**where(CONDITION), "negate": True}),
        422,
        "invalid_meter",
        "filter",
    ),
    ("filter-empty-clauses", body(filter=where()), 422, "invalid_meter", "filter.clauses"),
    (
        "filter-clauses-missing",
        body(filter={"conjunction": "and"}),
        422,
        "invalid_meter",
        "filter.clauses",
    ),
    (
        "filter-clauses-object",
        body(filter={"conjunction": "and", "clauses": CONDITION}),
        422,
        "invalid_meter",
        "filter.clauses",
    ),
    (
        "filter-mixed-clauses",
        body(filter=where(CONDITION, where(CONDITION))),
        422,
        "invalid_meter",
        "filter.clauses",
    ),
    (
        "filter-nested-empty-clauses",
        body(filter=where(where())),
        422,
        "invalid_meter",
        "filter.clauses[0].clauses",
    ),
    (
        "filter-depth-4",
        body(filter=DEPTH_4),
        422,
        "invalid_meter",
        "filter.clauses[0].clauses[0].clauses[0]",
    ),
    (
        "filter-deep-bad-operator",
        body(
            filter=where(
                where(CONDITION),
                where(CONDITION, cond(operator="like")),
                conjunction="or",
            )
        ),
        422,
        "invalid_meter",
        "filter.clauses[1].clauses[1].operator",
    ),
    ("clause-string", body(filter=where("tier")), 422, "invalid_meter", "filter.clauses[0]"),
    ("clause-null", body(filter=where(None)), 422, "invalid_meter", "filter.clauses[0]"),
    (
        "condition-unknown-operator",
        body(filter=where(cond(operator="regex"))),
        422,
        "invalid_meter",
        "filter.clauses[0].operator",
    ),
    (
        "condition-operator-missing",
        body(filter=where(cond(operator=MISSING))),
        422,
        "invalid_meter",
        "filter.clauses[0].operator",
    ),
    (
        "condition-key-missing",
        body(filter=where(cond(key=MISSING))),
        422,
        "invalid_meter",
        "filter.clauses[0].key",
    ),
    (
        "condition-key-empty",
        body(filter=where(cond(key=""))),
        422,
        "invalid_meter",
        "filter.clauses[0].key",
    ),
    (
        "condition-key-too-long",
        body(filter=where(cond(key="k" * 101))),
        422,
        "invalid_meter",
        "filter.clauses[0].key",
    ),
    (
        "condition-value-missing",
        body(filter=where(cond(value=MISSING))),
        422,
        "invalid_meter",
        "filter.clauses[0].value",
    ),
    (
        "condition-value-null",
        body(filter=where(cond(value=None))),
        422,
        "invalid_meter",
        "filter.clauses[0].value",
    ),
    (
        "condition-value-list",
        body(filter=where(cond(value=["pro", "team"]))),
        422,
        "invalid_meter",
        "filter.clauses[0].value",
    ),
    (
        "condition-value-object",
        body(filter=where(cond(value={"tier": "pro"}))),
        422,
        "invalid_meter",
        "filter.clauses[0].value",
    ),
    (
        "condition-value-too-long",
        body(filter=where(cond(value="v" * 501))),
        422,
        "invalid_meter",
        "filter.clauses[0].value",
    ),
    (
        "condition-unknown-field",
        body(filter=where({**CONDITION, "case_sensitive": False})),
        422,
        "invalid_meter",
        "filter.clauses[0]",
    ),
    (
        "greater-than-a-string",
        body(filter=where(cond(operator="greater_than", value="5"))),
        422,
        "invalid_meter",
        "filter.clauses[0].value",
    ),
    (
        "less-than-a-boolean",
        body(filter=where(cond(operator="less_than_or_equals", value=True))),
        422,
        "invalid_meter",
        "filter.clauses[0].value",
    ),
    (
        "contains-a-number",
        body(filter=where(cond(operator="contains", value=5))),
        422,
        "invalid_meter",
        "filter.clauses[0].value",
    ),
    (
        "does-not-contain-a-boolean",
        body(filter=where(cond(operator="does_not_contain", value=False))),
        422,
        "invalid_meter",
        "filter.clauses[0].value",
    ),
]


@pytest.mark.parametrize(
    ("payload", "status", "code", "path"),
    [case[1:] for case in CREATE_CASES],
    ids=[case[0] for case in CREATE_CASES],
)
def test_bad_create_input_is_refused_with_a_code_and_writes_nothing(
    api, store, meter, payload, status, code, path
) -> None:
    head = log_head(store.container)
    error = assert_error(send(api, "POST", "/meters", payload), status, code)
    if path is not None:
        assert error["detail"]["path"] == path
        assert error["message"]
    assert log_head(store.container) == head
    assert meter_ids(api) == [meter["id"]]


# Bad input to PATCH /meters/{id}

PATCH_CASES = [
    ("not-json", b"{", 400, "invalid_json", None),
    ("array", [{"name": "x"}], 422, "invalid_request", "$"),
    ("string", "Renamed", 422, "invalid_request", "$"),
    ("unknown-field", {"unit": "calls"}, 422, "invalid_request", "$.unit"),
    ("id", {"id": "mtr_other"}, 422, "invalid_request", "$.id"),
    ("archived", {"archived": True}, 422, "invalid_request", "$.archived"),
    ("business-id", {"business_id": "acme"}, 422, "invalid_request", "$.business_id"),
    ("name-null", {"name": None}, 422, "invalid_request", "$.name"),
    ("unit-null", {"measurement_unit": None}, 422, "invalid_request", "$.measurement_unit"),
    ("event-name-null", {"event_name": None}, 422, "invalid_request", "$.event_name"),
    ("aggregation-null", {"aggregation": None}, 422, "invalid_request", "$.aggregation"),
    ("name-blank", {"name": "  "}, 422, "invalid_meter", "name"),
    ("name-too-long", {"name": "n" * 256}, 422, "invalid_meter", "name"),
    ("name-number", {"name": 5}, 422, "invalid_meter", "name"),
    ("unit-too-long", {"measurement_unit": "u" * 101}, 422, "invalid_meter", "measurement_unit"),
    ("description-too-long", {"description": "d" * 1001}, 422, "invalid_meter", "description"),
    ("event-name-empty", {"event_name": ""}, 422, "invalid_meter", "event_name"),
    ("event-name-number", {"event_name": 3}, 422, "invalid_meter", "event_name"),
    (
        "unknown-aggregation",
        {"aggregation": {"type": "avg", "key": "t"}},
        422,
        "invalid_meter",
        "aggregation.type",
    ),
    (
        "key-on-count",
        {"aggregation": {"type": "count", "key": "tokens"}},
        422,
        "invalid_meter",
        "aggregation.key",
    ),
    ("sum-without-key", {"aggregation": {"type": "sum"}}, 422, "invalid_meter", "aggregation.key"),
    ("filter-string", {"filter": "tier=pro"}, 422, "invalid_meter", "filter"),
    ("filter-empty-clauses", {"filter": where()}, 422, "invalid_meter", "filter.clauses"),
    (
        "filter-mixed-clauses",
        {"filter": where(where(CONDITION), CONDITION)},
        422,
        "invalid_meter",
        "filter.clauses",
    ),
    (
        "filter-depth-4",
        {"filter": DEPTH_4},
        422,
        "invalid_meter",
        "filter.clauses[0].clauses[0].clauses[0]",
    ),
    (
        "filter-unknown-operator",
        {"filter": where(cond(operator="matches"))},
        422,
        "invalid_meter",
        "filter.clauses[0].operator",
    ),
    (
        "valid-name-with-a-bad-filter",
        {"name": "Renamed", "filter": where(cond(operator="greater_than", value="x"))},
        422,
        "invalid_meter",
        "filter.clauses[0].value",
    ),
    (
        "valid-definition-with-a-bad-name",
        {"aggregation": {"type": "max", "key": "tokens"}, "name": ""},
        422,
        "invalid_meter",
        "name",
    ),
]


@pytest.mark.parametrize(
    ("payload", "status", "code", "path"),
    [case[1:] for case in PATCH_CASES],
    ids=[case[0] for case in PATCH_CASES],
)
def test_bad_patch_input_is_refused_with_a_code_and_writes_nothing(
    api, store, meter, payload, status, code, path
) -> None:
    head = log_head(store.container)
    url = f"/meters/{meter['id']}"
    error = assert_error(send(api, "PATCH", url, payload), status, code)
    if path is not None:
        assert error["detail"]["path"] == path
    assert log_head(store.container) == head
    assert api.get(url).json() == meter


def test_patch_with_a_numeric_description_is_422(client) -> None:
    meter_id = create_meter(client)["id"]
    response = client.patch(f"/meters/{meter_id}", json={"description": 123})
    assert_error(response, 422, "invalid_meter")


def test_patch_with_a_list_description_is_refused_and_the_meter_stays_readable(client) -> None:
    meter_id = create_meter(client)["id"]
    response = client.patch(f"/meters/{meter_id}", json={"description": ["a", "b"]})
    assert response.status_code == 422, response.text
    assert client.get(f"/meters/{meter_id}").status_code == 200


def test_an_unknown_field_in_a_new_meter_is_refused_not_ignored(api, store) -> None:
    head = log_head(store.container)
    response = api.post("/meters", json=body(filters=where(cond())))
    assert_error(response, 422, "invalid_request")
    assert "filters" in response.json()["message"]
    assert log_head(store.container) == head


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"name": "a\x00b"}, "name"),
        ({"measurement_unit": "\x00"}, "measurement_unit"),
        ({"description": "x\x00"}, "description"),
        ({"filter": where(cond(value="p\x00ro"))}, "filter.clauses[0].value"),
        ({"filter": where(cond(key="t\x00ier"))}, "filter.clauses[0].key"),
        ({"aggregation": {"type": "sum", "key": "to\x00kens"}}, "aggregation.key"),
    ],
    ids=["name", "unit", "description", "filter-value", "filter-key", "aggregation-key"],
)
def test_nul_in_any_meter_text_is_refused(api, store, changes, path) -> None:
    head = log_head(store.container)
    response = api.post("/meters", json=body(**changes))
    assert_error(response, 422, "invalid_meter")
    assert response.json()["detail"]["path"] == path
    assert log_head(store.container) == head

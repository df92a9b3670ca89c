"""GET /metrics over HTTP: requests, events, projections and the pool, as a scraper parses them.

Counters are process-wide (one prometheus-client registry per process), so a
test compares two scrapes: what its own requests added is exact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.helpers import assert_error, bearer, client_for, event, ingest, make_customer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
TOKEN = "metrics-token-0123456789"


def scrape(client: TestClient, **kwargs) -> Samples:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grown(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def caught_up(client: TestClient, timeout: float = 20.0) -> Samples:
    """A scrape in which every projection has reached the log's head."""
    deadline = time.monotonic() + timeout
    while True:
        found = scrape(client)
        behind = [v for (name, _), v in found.items() if name == "ledger_projection_behind"]
        if behind and not any(behind):
            return found
        assert time.monotonic() < deadline, f"projections still behind: {behind}"
        time.sleep(0.05)


@pytest.fixture
def guarded(make_container) -> Iterator[TestClient]:
    """A client over an app whose metrics ask for ``TOKEN``."""
    with client_for(make_container(metrics_token=TOKEN)) as test_client:
        yield test_client


def test_requests_are_counted_by_route_template_and_final_status(client) -> None:
    before = scrape(client)
    cid = make_customer(client)
    client.get(f"/customers/{cid}")
    client.get("/customers/cus_nobody")
    client.get("/no/such/path")
    client.get("/customers", headers=bearer("wrong-key-0123456789"))
    after = scrape(client)
    requests = "ledger_http_requests_total"
    route = "/customers/{customer_id}"
    assert grown(before, after, requests, method="POST", route="/customers", status="200") == 1
    assert grown(before, after, requests, method="GET", route=route, status="200") == 1
    assert grown(before, after, requests, method="GET", route=route, status="404") == 1
    assert grown(before, after, requests, method="GET", route="unmatched", status="404") == 1
    assert grown(before, after, requests, method="GET", route="/customers", status="401") == 1
    assert not [labels for (_, labels) in after if ("route", f"/customers/{cid}") in labels]


def test_each_route_has_a_latency_histogram(client) -> None:
    before = scrape(client)
    make_customer(client)
    after = scrape(client)
    labels = {"method": "POST", "route": "/customers"}
    name = "ledger_http_request_duration_seconds"
    assert grown(before, after, f"{name}_count", **labels) == 1
    assert grown(before, after, f"{name}_bucket", le="+Inf", **labels) == 1
    assert grown(before, after, f"{name}_sum", **labels) > 0


def test_ingested_events_are_counted_accepted_duplicate_and_rejected_by_code(client) -> None:
    cid = make_customer(client)
    before = scrape(client)
    assert ingest(client, event(cid, "e1"), event(cid, "e2")).status_code == 200
    again = ingest(client, event(cid, "e1"), event("cus_nobody", "bad"), event(cid, "e3"))
    assert again.json()["rejected"][0]["code"] == "unknown_customer"
    after = scrape(client)
    assert grown(before, after, "ledger_events_total", outcome="accepted") == 3
    assert grown(before, after, "ledger_events_total", outcome="duplicate") == 1
    assert grown(before, after, "ledger_events_total", outcome="rejected") == 1
    assert grown(before, after, "ledger_events_rejected_total", code="unknown_customer") == 1
    assert (
        grown(
            before,
            after,
            "ledger_http_requests_total",
            method="POST",
            route="/events/ingest",
            status="200",
        )
        == 2
    )


def test_each_projection_reports_its_position_and_how_far_behind_the_head_it_is(client) -> None:
    cid = make_customer(client)
    ingest(client, event(cid, "e1"), event(cid, "e2"))
    found = caught_up(client)
    head = value(found, "ledger_log_head")
    positions = {
        dict(labels)["projection"]: v
        for (name, labels), v in found.items()
        if name == "ledger_projection_position"
    }
    assert head >= 3  # the customer and two events
    assert {"catalogue", "usage_log", "usage", "outbox"} <= positions.keys()
    assert set(positions.values()) == {head}
    assert value(found, "ledger_database_up") == 1


def test_the_pool_is_reported_on_postgres_and_not_on_sqlite(client, container) -> None:
    found = scrape(client)
    names = {name for name, _ in found}
    pool = {
        "ledger_db_pool_connections_in_use",
        "ledger_db_pool_requests_waiting",
        "ledger_db_pool_connections_max",
    }
    if not container.settings.is_postgres:
        assert not names & pool
        return
    assert pool <= names
    assert value(found, "ledger_db_pool_connections_max") >= 1
    assert (
        0
        <= value(found, "ledger_db_pool_connections_in_use")
        <= value(found, "ledger_db_pool_connections_max")
    )
    assert value(found, "ledger_db_pool_requests_waiting") == 0


def test_webhook_messages_are_reported_by_status(client) -> None:
    found = scrape(client)
    statuses = {
        dict(labels)["status"] for name, labels in found if name == "ledger_webhook_messages"
    }
    assert statuses == {"pending", "delivered", "failed"}


def test_the_metrics_need_no_api_key(client) -> None:
    del client.headers["Authorization"]
    assert value(scrape(client), "ledger_database_up") == 1


def test_with_a_metrics_token_a_scrape_without_it_is_refused(guarded) -> None:
    del guarded.headers["Authorization"]
    assert_error(guarded.get("/metrics"), 401, "unauthorized")


def test_with_a_metrics_token_a_scrape_with_another_is_refused(guarded) -> None:
    assert_error(guarded.get("/metrics", headers=bearer(TOKEN + "x")), 401, "unauthorized")
    assert_error(guarded.get("/metrics"), 401, "unauthorized")  # an API key is not it


def test_with_a_metrics_token_a_scrape_with_it_is_answered(guarded) -> None:
    assert value(scrape(guarded, headers=bearer(TOKEN)), "ledger_database_up") == 1


def test_the_metrics_token_opens_nothing_else(guarded) -> None:
    assert_error(guarded.get("/customers", headers=bearer(TOKEN)), 401, "unauthorized")


def test_a_refused_scrape_is_counted_as_a_401(guarded) -> None:
    before = scrape(guarded, headers=bearer(TOKEN))
    guarded.get("/metrics", headers=bearer("not-the-token-0123456789"))
    after = scrape(guarded, headers=bearer(TOKEN))
    labels = {"method": "GET", "route": "/metrics", "status": "401"}
    assert grown(before, after, "ledger_http_requests_total", **labels) == 1

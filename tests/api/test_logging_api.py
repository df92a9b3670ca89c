"""Request ids on responses, and one structured "request" log line per request."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from tests.api.helpers import bearer, event, ingest, make_customer

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Captured log entries, info level and up, with contextvars (the request id) merged.

    conftest configures a warning-level filtering logger, which would drop the info-level
    request line before any processor runs; so the level is lowered for the test.
    """
    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
            yield entries
    finally:
        structlog.configure(wrapper_class=wrapper)


def request_lines(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["event"] == "request"]


def test_a_response_carries_a_generated_request_id(client) -> None:
    response = client.get("/events")
    assert GENERATED_ID.match(response.headers["x-request-id"])


def test_each_request_gets_its_own_id(client) -> None:
    first, second = (client.get("/health").headers["x-request-id"] for _ in range(2))
    assert first != second


def test_a_client_request_id_is_echoed(client) -> None:
    response = client.get("/events", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


@pytest.mark.parametrize("given", ["has spaces", "x" * 65, "semi;colon", ""])
def test_an_unsafe_client_request_id_is_replaced(client, given) -> None:
    response = client.get("/events", headers={"X-Request-ID": given})
    assert GENERATED_ID.match(response.headers["x-request-id"])


def test_an_error_response_carries_the_request_id(client) -> None:
    response = client.get("/events/nope", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "abc-123"


def test_a_401_response_carries_the_request_id(client) -> None:
    response = client.get(
        "/events",
        headers={"Authorization": "Bearer wrong-key-0123456789", "X-Request-ID": "abc-123"},
    )
    assert response.status_code == 401
    assert response.headers.get("x-request-id") == "abc-123"


def test_one_request_line_per_request(client, logs) -> None:
    client.get("/events")
    client.get("/customers")
    assert [line["path"] for line in request_lines(logs)] == ["/events", "/customers"]


def test_the_request_line_has_method_path_status_duration_business(client, logs) -> None:
    cid = make_customer(client)
    logs.clear()
    ingest(client, event(cid, "e1"), headers={"X-Request-ID": "abc-123"})
    [line] = request_lines(logs)
    assert (line["method"], line["path"], line["status"], line["business"]) == (
        "POST",
        "/events/ingest",
        200,
        "default",
    )
    assert line["log_level"] == "info"
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0


def test_the_request_line_carries_the_request_id_from_contextvars(client, logs) -> None:
    client.get("/events", headers={"X-Request-ID": "abc-123"})
    [line] = request_lines(logs)
    assert line["request_id"] == "abc-123"


def test_the_request_line_has_the_same_generated_id_as_the_response(client, logs) -> None:
    response = client.get("/events")
    [line] = request_lines(logs)
    assert line["request_id"] == response.headers["x-request-id"]


def test_the_request_line_names_the_keys_business(client, container, clock, logs) -> None:
    client.get("/events", headers=bearer(container.keys.create("acme", "admin", clock.now)))
    assert request_lines(logs)[0]["business"] == "acme"


def test_an_unauthorised_request_is_logged_with_401_and_no_business(client, logs) -> None:
    client.get("/events", headers={"Authorization": "Basic xyz", "X-Request-ID": "abc-123"})
    [line] = request_lines(logs)
    assert (line["status"], line["business"], line["request_id"]) == (401, None, "abc-123")


def test_an_error_status_is_logged(client, logs) -> None:
    client.get("/customers/cus_nobody")
    client.get("/events", params={"page_size": 0})
    assert [line["status"] for line in request_lines(logs)] == [404, 400]


def test_a_public_path_is_logged_without_a_business(client, logs) -> None:
    client.get("/health")
    [line] = request_lines(logs)
    assert (line["path"], line["status"], line["business"]) == ("/health", 200, None)

"""The HTTP contract of operating concerns: CORS preflights and per-key rate limits."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from litestar.testing import TestClient

from api.app import create_app
from infrastructure.bootstrap import Container
from tests.api.helpers import assert_error, event, ingest, make_customer
from tests.conftest import BOOTSTRAP_KEY

ALLOWED = "https://app.example.com"
_PARAM = re.compile(r"\{[^}]+\}")


def every_path(client: TestClient) -> list[str]:  # type: ignore[type-arg]
    client.app.state.dashboard.register()  # else registered at the first dashboard request
    paths = {_PARAM.sub("x1", route.path) for route in client.app.routes}
    return sorted(paths)


@pytest.fixture
def cors_client(make_container: Callable[..., Container]) -> Iterator[TestClient]:  # type: ignore[type-arg]
    container = make_container(cors_origins=(ALLOWED,))
    with TestClient(create_app(container)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {BOOTSTRAP_KEY}"
        yield test_client


def preflight(client: TestClient, path: str, origin: str) -> object:  # type: ignore[type-arg]
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_options_answers_on_every_path_without_a_key_and_without_cors_by_default(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    paths = every_path(client)
    assert len(paths) > 20
    for path in paths:
        response = client.options(path, headers={"Authorization": ""})
        assert response.status_code == 204, (path, response.text)
        assert "OPTIONS" in response.headers["allow"]
        response = preflight(client, path, ALLOWED)
        assert response.status_code == 204, (path, response.text)  # type: ignore[attr-defined]
        assert "access-control-allow-origin" not in response.headers  # type: ignore[attr-defined]


def test_a_preflight_from_an_allowed_origin_is_answered_on_every_path(
    cors_client: TestClient,  # type: ignore[type-arg]
) -> None:
    for path in every_path(cors_client):
        response = preflight(cors_client, path, ALLOWED)
        assert response.status_code == 204, (path, response.text)  # type: ignore[attr-defined]
        headers = response.headers  # type: ignore[attr-defined]
        assert headers["access-control-allow-origin"] == ALLOWED
        assert "POST" in headers["access-control-allow-methods"]
        assert "authorization" in headers["access-control-allow-headers"]


def test_a_preflight_from_another_origin_gets_no_cors_headers_and_no_500(
    cors_client: TestClient,  # type: ignore[type-arg]
) -> None:
    for path in every_path(cors_client):
        response = preflight(cors_client, path, "https://evil.example")
        assert response.status_code == 400, (path, response.text)  # type: ignore[attr-defined]
        assert "access-control-allow-origin" not in response.headers  # type: ignore[attr-defined]


def test_a_request_from_an_allowed_origin_can_read_the_answer(
    cors_client: TestClient,  # type: ignore[type-arg]
) -> None:
    response = cors_client.get("/meters", headers={"Origin": ALLOWED})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "retry-after" in response.headers["access-control-expose-headers"]
    other = cors_client.get("/meters", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers


def test_over_the_request_limit_is_429_with_retry_after_and_a_code(
    make_container: Callable[..., Container],
) -> None:
    container = make_container(rate_limit_requests=0.2)  # one request, then one per 5 s
    with TestClient(create_app(container)) as limited:
        limited.headers["Authorization"] = f"Bearer {BOOTSTRAP_KEY}"
        assert limited.get("/meters").status_code == 200
        body = assert_error(limited.get("/meters"), 429, "rate_limited")
        assert body["detail"]["limit"] == 0.2
        assert body["detail"]["unit"] == "requests/s"
        refused = limited.get("/customers")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] in {"4", "5"}
        assert limited.get("/health").status_code == 200  # no key, no bucket
        assert limited.get("/meters", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_over_the_event_limit_ingest_is_429_and_writes_nothing(
    make_container: Callable[..., Container],
) -> None:
    container = make_container(rate_limit_events=10)
    with TestClient(create_app(container)) as limited:
        limited.headers["Authorization"] = f"Bearer {BOOTSTRAP_KEY}"
        customer = make_customer(limited)
        first = [event(customer, f"e{n}") for n in range(995)]
        assert ingest(limited, *first).status_code == 200
        refused = ingest(limited, *[event(customer, f"f{n}") for n in range(100)])
        body = assert_error(refused, 429, "rate_limited")
        assert body["detail"]["unit"] == "events/s"
        assert int(refused.headers["retry-after"]) >= 9  # 95 events missing at 10 a second
        assert limited.get("/events/f0").status_code == 404
        assert ingest(limited, *[event(customer, f"g{n}") for n in range(5)]).status_code == 200

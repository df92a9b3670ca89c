"""GET /health: 503 with the reason while PostgreSQL is unreachable, 200 once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from api.app import create_app
from infrastructure.bootstrap import build
from infrastructure.settings import Settings
from tests.conftest import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    _create_pg_database,
    _drop_pg_database,
    free_port,
)
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied_client() -> Iterator[tuple[TestClient, TcpProxy]]:  # type: ignore[type-arg]
    name = _create_pg_database()
    proxy = TcpProxy(PG_PORT, free_port())
    proxy.start()
    url = f"postgresql://{PG_USER}@{PG_HOST}:{proxy.listen_port}/{name}"
    container = build(Settings(database_url=url, follower_poll_seconds=0.05))
    try:
        with TestClient(create_app(container)) as client:
            yield client, proxy
    finally:
        proxy.close()
        _drop_pg_database(name)


def wait_for_status(client: TestClient, status: int, seconds: float = 20) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + seconds
    while True:
        response = client.get("/health")
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response.json()
        time.sleep(0.2)


def test_health_reports_the_outage_and_recovers_by_itself(proxied_client) -> None:
    client, proxy = proxied_client
    assert wait_for_status(client, 200)["database"] == "ok"
    proxy.stop()
    body = wait_for_status(client, 503)
    assert body["status"] == "unavailable"
    assert body["reason"]
    proxy.start()
    assert wait_for_status(client, 200)["status"] == "ok"

"""Fixtures: each test gets a fresh store, on SQLite and on the real PostgreSQL.

PostgreSQL databases are created per test and dropped after it, named after the
xdist worker, so parallel workers and earlier runs never see each other's data.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg
import pytest
import uvicorn
from litestar.testing import TestClient

from api.app import create_app
from infrastructure.bootstrap import Container, build
from infrastructure.logging import configure_logging
from infrastructure.settings import Settings

PG_HOST = os.environ.get("LEDGER_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("LEDGER_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("LEDGER_TEST_PG_USER", "postgres")
ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres"
BOOTSTRAP_KEY = "test-bootstrap-key-0123456789"
STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

configure_logging("json", "warning")


@dataclass
class FakeClock:
    """Time is passed in: tests move it by hand."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 25, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def _create_pg_database() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"ledger_test_{worker}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for an empty store of the parametrised kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.sqlite"
        return
    name = _create_pg_database()
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _drop_pg_database(name)


@pytest.fixture
def settings(store_url: str) -> Settings:
    return Settings(
        database_url=store_url,
        bootstrap_api_key=BOOTSTRAP_KEY,
        follower_poll_seconds=0.01,
        live_credit_seconds=0,  # a test draws live credit when it means to
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_container(settings: Settings, clock: FakeClock) -> Iterator[Callable[..., Container]]:
    """Build containers over the test's store; all are closed at the end."""
    built: list[Container] = []

    def make(**overrides: object) -> Container:
        container = build(settings if not overrides else _replace(settings, overrides), clock)
        built.append(container)
        return container

    yield make
    for container in built:
        container.close()


def _replace(settings: Settings, overrides: dict[str, object]) -> Settings:
    return msgspec.structs.replace(settings, **overrides)


@pytest.fixture
def container(make_container: Callable[..., Container]) -> Container:
    return make_container()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(container)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {BOOTSTRAP_KEY}"
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    base_url: str
    container: Container
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start_live_server(container: Container) -> LiveServer:
    port = free_port()
    config = uvicorn.Config(create_app(container), host="127.0.0.1", port=port,
                            log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("live server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", container, server, thread)


@pytest.fixture
def live_server(container: Container) -> Iterator[LiveServer]:
    """The real app on a real port (uvicorn in a thread), for the dodopayments SDK."""
    live = start_live_server(container)
    yield live
    live.stop()

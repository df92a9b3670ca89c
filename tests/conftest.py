"""Fixtures: each test gets a fresh store, on SQLite and on the real PostgreSQL.

PostgreSQL databases are created per test and dropped after it, named after the
xdist worker, so parallel workers and earlier runs never see each other's data.
Each is a copy of a template that ``build()`` made once for this process (per
xdist worker) when the session's tests were collected: the schema of the code
under test and no rows of its own (the server's secrets are deleted from it, so
every test database still makes fresh ones). The template is dropped when the
session ends; one left by a killed run is dropped by a later one after three hours.
A test marked ``empty_database`` gets a database with no schema at all.
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


def _pg_url(name: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def _create_pg_database(*, schema: bool = True) -> str:
    """A new database; with ``schema``, a copy of this process's template when there is one
    (the same as an empty database after ``build()``)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"ledger_test_{worker}_{uuid.uuid4().hex[:10]}"
    template = f' TEMPLATE "{_template.name}"' if schema and _template.name else ""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{template}')
    return name


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


TEMPLATE_PREFIX = "ledger_tmpl_"
STALE_TEMPLATE_SECONDS = 3 * 3600  # a template this old was left by a killed run


@dataclass
class _Template:
    name: str | None = None


_template = _Template()


def _build_pg_template() -> str:
    """A database holding the schema ``build()`` makes, and no rows a test could see.

    Its name holds the time it was made (``ledger_tmpl_<seconds>_<worker>_<random>``).
    Every connection to it is closed before it is used: ``CREATE DATABASE ... TEMPLATE``
    refuses a template anyone is connected to; then connections to it are refused.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{TEMPLATE_PREFIX}{int(time.time())}_{worker}_{uuid.uuid4().hex[:8]}"
    _drop_stale_templates()
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        build(Settings(database_url=_pg_url(name))).close()
        with psycopg.connect(_pg_url(name), autocommit=True) as conn:
            conn.execute("DELETE FROM server_secrets")  # each test database makes its own
        _refuse_connections(name)
    except BaseException:
        _drop_pg_database(name)
        raise
    return name


def _refuse_connections(name: str, wait: float = 10.0) -> None:
    """No one may connect to the template from now on, and no one is connected (a closed
    connection's server process leaves a moment after the client: it is waited for)."""
    deadline = time.monotonic() + wait
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
            if not row or not row[0]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{row[0]} connection(s) to the template {name} still open")
            time.sleep(0.02)


def _drop_stale_templates() -> None:
    oldest = time.time() - STALE_TEMPLATE_SECONDS
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (f"{TEMPLATE_PREFIX}%",),
            )
        ]
        for name in names:
            made = name.removeprefix(TEMPLATE_PREFIX).split("_", 1)[0]
            if made.isdigit() and int(made) < oldest:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_collection_finish(session: pytest.Session) -> None:
    """Make the template before any test runs (never inside one: a test may have patched
    ``secrets``), and only when the session holds a PostgreSQL test."""
    if session.config.option.collectonly or _template.name is not None:
        return
    if not any(item.get_closest_marker("postgres") for item in session.items):
        return
    try:
        _template.name = _build_pg_template()
    except psycopg.OperationalError:
        return  # no server: each PostgreSQL test fails on its own, as it would anyway


def pytest_sessionfinish(session: pytest.Session) -> None:
    name, _template.name = _template.name, None
    if name is not None:
        _drop_pg_database(name)


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for an empty store of the parametrised kind (on PostgreSQL with
    the schema already made, unless the test is marked ``empty_database``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.sqlite"
        return
    name = _create_pg_database(schema=request.node.get_closest_marker("empty_database") is None)
    try:
        yield _pg_url(name)
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
    config = uvicorn.Config(
        create_app(container),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
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

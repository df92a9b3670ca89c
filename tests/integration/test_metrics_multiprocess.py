"""Metrics across processes: the shared directory's life cycle, and one scrape that sums them all.

The last test runs the real ``ledger serve --workers 2``: two HTTP workers and
a ``ledger projections run`` child, each writing its own files; whichever
worker answers a scrape must report what all of them counted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from infrastructure.metrics import (
    MULTIPROC_ENV,
    forget_dead_processes,
    fresh_directory,
    share_directory,
)
from infrastructure.scrape import exposition
from infrastructure.settings import Settings
from infrastructure.store import eventsourcing_env
from tests.conftest import BOOTSTRAP_KEY, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
HEADERS = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
CUSTOMERS = {"method": "GET", "route": "/customers", "status": "200"}
REQUESTS = "ledger_http_requests_total"


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def count_in_a_process(directory: Path, requests: int) -> None:
    """Another process counts ``requests`` GET /customers into ``directory``, and exits."""
    script = textwrap.dedent(
        f"""
        from infrastructure.metrics import IN_PROGRESS, record_request
        for _ in range({requests}):
            record_request("GET", "/customers", 200, 0.01)
        IN_PROGRESS.inc()  # left in progress: the process dies with it
        """
    )
    env = {**os.environ, MULTIPROC_ENV: str(directory)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- the directory


def test_a_fresh_directory_loses_an_earlier_runs_files_but_not_this_processs(tmp_path) -> None:
    (tmp_path / "counter_4000001.db").write_bytes(b"old")
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"mine")
    fresh_directory(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"counter_{os.getpid()}.db"]


def test_for_several_processes_a_temporary_directory_is_shared_and_removed_after() -> None:
    env: dict[str, str] = {}
    shared = share_directory(env, 2)
    assert shared is not None
    assert env[MULTIPROC_ENV] == str(shared.path)
    assert shared.path.is_dir()
    shared.close(env)
    assert MULTIPROC_ENV not in env
    assert not shared.path.exists()


def test_one_process_shares_no_directory() -> None:
    env: dict[str, str] = {}
    assert share_directory(env, 1) is None
    assert env == {}


def test_the_operators_directory_is_emptied_and_kept(tmp_path) -> None:
    (tmp_path / "counter_4000001.db").write_bytes(b"old")
    env = {MULTIPROC_ENV: str(tmp_path)}
    shared = share_directory(env, 1)
    assert shared is not None
    shared.close(env)
    assert (tmp_path.is_dir(), list(tmp_path.iterdir()), env[MULTIPROC_ENV]) == (
        True,
        [],
        str(tmp_path),
    )


def test_a_dead_processs_live_gauges_are_forgotten_and_its_counters_kept(tmp_path) -> None:
    gone = dead_pid()
    for name in (
        f"gauge_livesum_{gone}.db",
        f"counter_{gone}.db",
        f"gauge_livesum_{os.getpid()}.db",
    ):
        (tmp_path / name).write_bytes(b"")
    forget_dead_processes(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{gone}.db", f"gauge_livesum_{os.getpid()}.db"]
    )


# -- one scrape over several processes' files


def test_a_scrape_sums_every_processs_counters(container, tmp_path, monkeypatch) -> None:
    count_in_a_process(tmp_path, 2)
    count_in_a_process(tmp_path, 3)
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    body, _ = exposition(container, "")
    found = parse(body.decode())
    assert value(found, REQUESTS, **CUSTOMERS) == 5
    assert value(found, "ledger_http_requests_in_progress") == 0  # both died: forgotten
    assert value(found, "ledger_database_up") == 1


def test_a_scrape_in_multiprocess_mode_reads_no_pool_of_its_own(container, tmp_path, monkeypatch):
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    body, _ = exposition(container, "")
    assert b"ledger_db_pool" not in body  # each process publishes its own; none did here


# -- the real server


class Serve:
    """``ledger serve --workers 2`` in a subprocess, its output in a file."""

    def __init__(self, url: str, directory: Path, log_path: Path) -> None:
        self.url = url
        self.port = free_port()
        self.directory = directory
        self.log_path = log_path
        env = {
            **os.environ,
            "LEDGER_DATABASE_URL": url,
            "LEDGER_BOOTSTRAP_API_KEY": BOOTSTRAP_KEY,
            "LEDGER_LOG_FORMAT": "json",
            "LEDGER_BILLING_INTERVAL": "0.2",
            MULTIPROC_ENV: str(directory),
        }
        command = [sys.executable, "-m", "api.cli", "serve", "--workers", "2"]
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.base_url = f"http://127.0.0.1:{self.port}"

    def wait_until_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(f"{self.base_url}/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not become healthy:\n{self.log_path.read_text()}")

    def get(self, path: str) -> httpx.Response:
        """On a connection of its own, so the kernel may hand it to either worker."""
        return httpx.get(f"{self.base_url}{path}", headers=HEADERS, timeout=30)

    def post(self, path: str, body: object) -> Any:
        response = httpx.post(f"{self.base_url}{path}", json=body, headers=HEADERS, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def scrape(self) -> Samples:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return parse(response.text)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture
def serve(store_url, tmp_path) -> Iterator[Serve]:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    count_in_a_process(directory, 1000)  # an earlier run's counts: serve must wipe them
    server = Serve(store_url, directory, tmp_path / "serve.log")
    try:
        server.wait_until_healthy()
        yield server
    finally:
        server.stop()


def counted_by_process(directory: Path) -> dict[str, float]:
    """GET /customers answered, per process, read from each process's own counter file."""
    counted = {}
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == REQUESTS and sample.labels == CUSTOMERS:
                    counted[path.stem] = sample.value
    return {pid: n for pid, n in counted.items() if n}


def eventually(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.1)
    return found


def test_every_scrape_of_serve_with_two_workers_counts_what_both_answered(serve) -> None:
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        for _ in range(40):  # until both workers have answered some
            answers = list(pool.map(lambda _: serve.get("/customers"), range(10)))
            assert {a.status_code for a in answers} == {200}
            sent += len(answers)
            if len(counted_by_process(serve.directory)) >= 2:
                break
    assert len(counted_by_process(serve.directory)) == 2, "one worker answered every request"
    # A worker counts a request as its answer ends: the first scrape may be a moment early.
    eventually(lambda: value(serve.scrape(), REQUESTS, **CUSTOMERS) == sent)
    totals = [value(serve.scrape(), REQUESTS, **CUSTOMERS) for _ in range(8)]
    assert totals == [sent] * 8  # each scrape from either worker; no earlier run's 1,000


def billed_and_caught_up(serve: Serve) -> Samples | None:
    found = serve.scrape()
    billed = value(found, "ledger_billing_runs_total", outcome="ok") >= 1
    behind = [v for (name, _), v in found.items() if name == "ledger_projection_behind"]
    return found if billed and behind and not any(behind) else None


def test_serve_with_two_workers_reports_the_projections_childs_billing_and_positions(
    serve,
) -> None:
    customer = serve.post("/customers", {"email": "a@example.com", "name": "A"})["customer_id"]
    events = [{"event_id": f"e{i}", "customer_id": customer, "event_name": "x"} for i in range(2)]
    assert serve.post("/events/ingest", {"events": events})["ingested_count"] == 2
    # Only the child bills and moves the projections: the workers do neither.
    found = eventually(lambda: billed_and_caught_up(serve))
    head = value(found, "ledger_log_head")
    assert head >= 3  # the customer and two events
    assert value(found, "ledger_projection_position", projection="usage") == head
    assert value(found, "ledger_events_total", outcome="accepted") == 2


def test_serve_with_two_workers_sums_every_processs_pool(serve) -> None:
    if not serve.url.startswith("postgresql"):
        assert b"ledger_db_pool" not in serve.get("/metrics").content  # SQLite has no pool
        return
    env = eventsourcing_env(Settings(database_url=serve.url))
    each = int(env["POSTGRES_POOL_SIZE"]) + int(env["POSTGRES_MAX_OVERFLOW"])
    # Two workers and the projections child publish theirs; the parent has none.
    eventually(lambda: value(serve.scrape(), "ledger_db_pool_connections_max") == 3 * each)


def test_serve_forgets_its_processes_live_gauges_when_it_stops(serve) -> None:
    assert serve.get("/customers").status_code == 200
    eventually(lambda: list(serve.directory.glob("gauge_live*.db")))
    serve.stop()
    assert serve.process.returncode is not None
    assert list(serve.directory.glob("gauge_live*.db")) == []

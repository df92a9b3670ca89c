"""A revoke holds at once on every process of ``ledger serve --workers 2``.

Keys are read from the database on every request, never cached in a worker.
The test proves each worker served the key before the revoke and answered 401
right after it: which worker holds a connection is read from Linux's /proc (the
worker process owning the server end of that TCP connection).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import BOOTSTRAP_KEY, free_port

CONNECTIONS = 16  # opened at first; more (up to MAX_CONNECTIONS) until both workers hold some
MAX_CONNECTIONS = 96
REQUESTS_EACH = 5
ADMIN = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc")


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def served(store_url: str, tmp_path: Path) -> Iterator[Served]:
    port, log = free_port(), tmp_path / "serve.log"
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": store_url,
        "LEDGER_BOOTSTRAP_API_KEY": BOOTSTRAP_KEY,
        "LEDGER_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "api.cli", "serve", "--workers", "2", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        server = Served(process, port, log)
        try:
            wait_until_healthy(server)
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def wait_until_healthy(server: Served, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, timeout=5.0) as http:
        while time.monotonic() < deadline:
            assert server.process.poll() is None, server.log.read_text(errors="replace")
            try:
                if http.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"not healthy:\n{server.log.read_text(errors='replace')}")


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def owners(server: Served, responses: list[httpx.Response]) -> list[int]:
    """The pid of the worker that answered each response (on its still-open connection)."""
    return holders(
        server, [r.extensions["network_stream"].get_extra_info("client_addr")[1] for r in responses]
    )


def holders(server: Served, client_ports: list[int]) -> list[int]:
    """The pid of the worker holding the server's end of each client port's connection."""
    inodes: dict[int, str] = {}  # client port -> inode of the server's end
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if local == server.port:
            inodes[remote] = fields[9]
    found: dict[str, int] = {}
    for pid in descendants(server.process.pid):
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                found[str(fd.readlink())] = pid
            except OSError:
                continue
    return [found[f"socket:[{inodes[port]}]"] for port in client_ports]


def test_a_revoke_holds_at_once_on_every_worker(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, headers=ADMIN, timeout=10.0) as admin:
        created = admin.post("/api-keys", json={"scope": "read", "name": "dashboards"}).json()
        headers = {"Authorization": f"Bearer {created['key']}"}
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients: list[httpx.Client] = []
        workers: set[int] = set()
        try:
            while len(clients) < CONNECTIONS or (
                len(workers) < 2 and len(clients) < MAX_CONNECTIONS
            ):
                http = httpx.Client(base_url=served.base_url, headers=headers, limits=one)
                clients.append(http)
                answers = [http.get("/meters") for _ in range(REQUESTS_EACH)]
                assert {a.status_code for a in answers} == {200}
                workers |= set(owners(served, answers[-1:]))
            assert len(workers) == 2, f"one worker took all {len(clients)} connections"

            revoked = admin.delete(f"/api-keys/{created['id']}")
            assert revoked.status_code == 200, revoked.text

            after = [http.get("/meters") for http in clients]  # no pause: at once
            assert [a.status_code for a in after] == [401] * len(clients)
            assert set(owners(served, after)) == workers
            with httpx.Client(base_url=served.base_url, headers=headers) as fresh:
                assert {fresh.get("/meters").status_code for _ in range(20)} == {401}
        finally:
            for http in clients:
                http.close()
    log = served.log.read_text(errors="replace")
    assert "Traceback" not in log

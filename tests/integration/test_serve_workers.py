"""``serve --workers 2``: each worker listens on a socket of its own (``SO_REUSEPORT``),
so the kernel spreads connections a client opens at once over both (with one shared
socket, the worker that wakes first accepts every connection pending: all of a pool
opened together); a port already in use fails the start instead of being shared."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BOOTSTRAP_KEY
from tests.integration.test_key_revocation_workers import Served, holders, served

__all__ = ["served"]  # the fixture
AT_ONCE = 16  # all on one worker by chance: 2 in 2**16

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreads on Linux")


def listening(port: int) -> int:
    """Sockets listening on ``port`` (state 0A in /proc/net/tcp)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for r in rows if int(r[1].split(":")[1], 16) == port and r[3] == "0A")


def test_connections_opened_at_once_reach_both_workers(served: Served) -> None:
    deadline = time.monotonic() + 60  # healthy is one worker up; the other may be starting
    while listening(served.port) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert listening(served.port) == 2
    opened = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(AT_ONCE)]
    try:
        for conn in opened:  # all connected before any is used, as a pool opens them
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        for conn in opened:
            assert conn.recv(12) == b"HTTP/1.1 200"
        workers = holders(served, [conn.getsockname()[1] for conn in opened])
    finally:
        for conn in opened:
            conn.close()
    assert len(set(workers)) == 2, workers


def test_a_port_in_use_fails_the_start(store_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "LEDGER_DATABASE_URL": store_url,
            "LEDGER_BOOTSTRAP_API_KEY": BOOTSTRAP_KEY,
        }
        command = [sys.executable, "-m", "api.cli", "serve", "--workers", "2", "--port", str(port)]
        done = subprocess.run(command, env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode != 0
    assert b"Address already in use" in done.stdout + done.stderr

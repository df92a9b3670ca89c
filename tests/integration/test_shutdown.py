"""SIGTERM mid-load: requests in flight finish, the server exits 0 in time, nothing is lost.

``ledger serve`` runs as a subprocess (one worker with the projections in it, or
two workers with the projections in a child) while four clients ingest. SIGTERM
is sent once answers are coming in. Every request that was in flight then is
answered 200, later ones are refused at the door (no answer that is not a 200),
the process exits with status 0 within ``LEDGER_SHUTDOWN_SECONDS`` and a margin
for start-up of nothing, and on restart every acknowledged event is in the log
exactly once and the projections reach the log head.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import BOOTSTRAP_KEY
from tests.integration.test_crash import Server

HEADERS = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
CLIENTS = 4
BATCH = 200
SHUTDOWN_SECONDS = 5


@dataclass
class Load:
    acknowledged: set[str] = field(default_factory=set)
    answered_other: list[str] = field(default_factory=list)
    # (sent at, answered at or None, status or error name) per request
    requests: list[tuple[float, float | None, str]] = field(default_factory=list)
    pending: dict[int, float] = field(default_factory=dict)  # client -> sent at, unanswered
    lock: threading.Lock = field(default_factory=threading.Lock)


def drive(base_url: str, customer_id: str, client_number: int, load: Load) -> None:
    batch = 0
    with httpx.Client(base_url=base_url, headers=HEADERS, timeout=60) as http:
        while True:
            ids = [f"c{client_number}-b{batch}-e{n}" for n in range(BATCH)]
            events = [{"event_id": i, "customer_id": customer_id, "event_name": "api.call"}
                      for i in ids]
            sent = time.monotonic()
            with load.lock:
                load.pending[client_number] = sent
            try:
                response = http.post("/events/ingest", json={"events": events})
            except httpx.TransportError as error:
                with load.lock:
                    del load.pending[client_number]
                    load.requests.append((sent, None, type(error).__name__))
                if isinstance(error, httpx.ConnectError):
                    return  # the server stopped listening: this client is done
                continue
            answered = time.monotonic()
            with load.lock:
                del load.pending[client_number]
                load.requests.append((sent, answered, str(response.status_code)))
                if response.status_code == 200:
                    load.acknowledged.update(ids)
                else:
                    load.answered_other.append(f"{response.status_code} {response.text[:200]}")
            batch += 1


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_mid_load_finishes_what_is_in_flight_and_loses_nothing(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    monkeypatch.setenv("LEDGER_SHUTDOWN_SECONDS", str(SHUTDOWN_SECONDS))
    server = Server(store_url, tmp_path / "server.log", arguments=("--workers", workers))
    server.start()
    try:
        with server.client() as http:
            customer = http.post("/customers", json={"email": "a@example.com", "name": "A"})
            customer_id = customer.json()["customer_id"]
            meter = http.post("/meters", json={"name": "calls", "event_name": "api.call",
                                               "measurement_unit": "calls",
                                               "aggregation": {"type": "count"}}).json()["id"]
        load = Load()
        threads = [
            threading.Thread(target=drive, args=(server.base_url, customer_id, n, load))
            for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(load.acknowledged) < 10 * BATCH:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.01)
        while True:  # signal while a request the server has had for 50 ms is unanswered
            with load.lock:
                oldest = min(load.pending.values(), default=time.monotonic())
            if oldest < time.monotonic() - 0.05:
                break
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.002)
        assert server.process is not None
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=SHUTDOWN_SECONDS + 20)
        exited = time.monotonic() - signalled
        for thread in threads:
            thread.join(timeout=60)
    finally:
        server.stop()

    assert code == 0, server.output()[-3000:]
    assert exited < SHUTDOWN_SECONDS + 10, exited
    assert not load.answered_other, load.answered_other[:3]
    # In flight at the signal (sent 50 ms before it or earlier, not yet answered): answered 200.
    in_flight = [r for r in load.requests if r[0] < signalled - 0.05 and (r[1] or 1e18) > signalled]
    assert in_flight, "no request was in flight when SIGTERM was sent"
    assert all(outcome == "200" for _, _, outcome in in_flight), in_flight
    assert "projections_stopped" in server.output() or workers == "1"

    again = Server(store_url, tmp_path / "again.log")
    again.start()
    try:
        with again.client() as http:
            stored: list[str] = []
            page = 0
            while True:
                listed = http.get("/events", params={"customer_id": customer_id,
                                                     "page_size": 1000, "page_number": page})
                items = listed.json()["items"]
                stored += [item["event_id"] for item in items]
                if len(items) < 1000:
                    break
                page += 1
            assert len(stored) == len(set(stored))
            assert load.acknowledged <= set(stored)
            deadline = time.monotonic() + 60
            while True:
                usage = http.get(f"/meters/{meter}/usage", params={
                    "customer_id": customer_id, "start": "2026-01-01T00:00:00Z",
                    "end": "2028-01-01T00:00:00Z", "window": "month"})
                if usage.status_code == 200 and int(float(usage.json()["total"])) == len(stored):
                    break
                assert time.monotonic() < deadline, usage.text
                time.sleep(0.2)
    finally:
        again.stop()

"""PostgreSQL cut off under concurrent ingest: 503 ``database_unavailable``, never a 500.

The real app serves on a real port over a TCP proxy to PostgreSQL. Four clients
ingest batches of new events and a fifth reads; halfway through, the proxy cuts
every connection and refuses new ones for a few seconds, then forwards again.
Every answer seen is a 200 or a 503 carrying ``Retry-After`` and the code
``database_unavailable``; each client sends a refused batch again after the
delay it was given; when the proxy is back the service answers again by itself,
and the log holds every event exactly once (a count meter equals the events
sent, and the stored events are exactly those acknowledged).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from infrastructure.bootstrap import build
from infrastructure.settings import Settings
from tests.conftest import (
    BOOTSTRAP_KEY,
    PG_HOST,
    PG_PORT,
    PG_USER,
    LiveServer,
    _create_pg_database,
    _drop_pg_database,
    free_port,
    start_live_server,
)
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

CLIENTS = 4
BATCHES = 12
BATCH = 50
HEADERS = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}


@dataclass
class Seen:
    statuses: Counter[int] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 200:
                return
            body = response.json() if response.headers.get("content-type", "").startswith(
                "application/json"
            ) else {}
            if (
                response.status_code != 503
                or body.get("code") != "database_unavailable"
                or not response.headers.get("retry-after", "").isdigit()
            ):
                self.bad.append(f"{response.status_code} {response.headers} {response.text[:300]}")


@pytest.fixture
def proxied_server() -> Iterator[tuple[LiveServer, TcpProxy]]:
    name = _create_pg_database()
    proxy = TcpProxy(PG_PORT, free_port())
    proxy.start()
    url = f"postgresql://{PG_USER}@{PG_HOST}:{proxy.listen_port}/{name}"
    container = build(
        Settings(database_url=url, bootstrap_api_key=BOOTSTRAP_KEY, follower_poll_seconds=0.05)
    )
    live = start_live_server(container)
    try:
        yield live, proxy
    finally:
        live.stop()
        proxy.close()
        _drop_pg_database(name)


def send_until_acknowledged(http: httpx.Client, seen: Seen, body: dict[str, object]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            response = http.post("/events/ingest", json=body)
        except httpx.TransportError:
            time.sleep(0.2)  # the answer was lost on the way: send it again, as a client would
            continue
        seen.record(response)
        if response.status_code == 200:
            return
        time.sleep(min(float(response.headers.get("retry-after", "1")), 0.5))
    raise AssertionError("a batch was never acknowledged")


def test_an_outage_answers_503_with_retry_after_and_loses_or_doubles_nothing(
    proxied_server: tuple[LiveServer, TcpProxy],
) -> None:
    live, proxy = proxied_server
    http = httpx.Client(base_url=live.base_url, headers=HEADERS, timeout=60)
    customer = http.post("/customers", json={"email": "ada@example.com", "name": "Ada"})
    assert customer.status_code == 200, customer.text
    customer_id = customer.json()["customer_id"]
    meter = http.post(
        "/meters",
        json={
            "name": "calls",
            "event_name": "api.call",
            "measurement_unit": "calls",
            "aggregation": {"type": "count"},
        },
    )
    assert meter.status_code == 200, meter.text
    seen = Seen()
    started = threading.Event()
    stop_reading = threading.Event()

    def ingest(client_number: int) -> None:
        with httpx.Client(base_url=live.base_url, headers=HEADERS, timeout=60) as own:
            for batch in range(BATCHES):
                events = [
                    {
                        "event_id": f"c{client_number}-b{batch}-e{index}",
                        "customer_id": customer_id,
                        "event_name": "api.call",
                    }
                    for index in range(BATCH)
                ]
                send_until_acknowledged(own, seen, {"events": events})
                started.set()
                time.sleep(0.1)

    def read() -> None:
        with httpx.Client(base_url=live.base_url, headers=HEADERS, timeout=60) as own:
            while not stop_reading.is_set():
                for path in ("/events?page_size=5", f"/customers/{customer_id}", "/meters"):
                    with contextlib.suppress(httpx.TransportError):
                        seen.record(own.get(path))
                time.sleep(0.05)

    threads = [threading.Thread(target=ingest, args=(n,)) for n in range(CLIENTS)]
    reader = threading.Thread(target=read)
    for thread in [*threads, reader]:
        thread.start()
    assert started.wait(30)
    proxy.stop()
    time.sleep(7)  # longer than the pool's 5 s wait for a connection
    proxy.start()
    for thread in threads:
        thread.join(timeout=120)
    stop_reading.set()
    reader.join(timeout=30)

    assert not seen.bad, seen.bad[:5]
    assert seen.statuses[503] > 0, f"the outage was never seen: {seen.statuses}"
    assert set(seen.statuses) <= {200, 503}, seen.statuses
    expected = CLIENTS * BATCHES * BATCH
    deadline = time.monotonic() + 60
    while True:
        usage = http.get(
            f"/meters/{meter.json()['id']}/usage",
            params={"customer_id": customer_id, "start": "2026-11-01T00:00:00Z",
                    "end": "2027-01-01T00:00:00Z", "window": "month"},
        )
        if usage.status_code == 200 and int(float(usage.json()["total"])) == expected:
            break
        assert time.monotonic() < deadline, usage.text
        time.sleep(0.3)
    stored: list[str] = []
    for page in range(expected // 1000 + 2):
        listed = http.get(
            "/events", params={"customer_id": customer_id, "page_size": 1000, "page_number": page}
        )
        assert listed.status_code == 200, listed.text
        stored += [item["event_id"] for item in listed.json()["items"]]
    assert len(stored) == expected
    assert set(stored) == {
        f"c{c}-b{b}-e{e}" for c in range(CLIENTS) for b in range(BATCHES) for e in range(BATCH)
    }
    health = http.get("/health")
    assert health.status_code == 200, health.text
    http.close()

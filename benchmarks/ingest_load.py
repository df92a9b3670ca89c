"""The client side of ``benchmarks/ingest.py``: sustained batch load, probes, lag.

This process shares the cores with the server: bodies are built on the fly
with msgspec structs (about 1.5 ms of CPU a batch); lag and probes are one
request a second, the probe's polls a few more.
"""

from __future__ import annotations

import http.client
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

import msgspec

BATCH = 1000  # events an ingest request carries: the server's maximum
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet", "llama-3-70b")
PROBE_EVENT = "bench.probe"
PROBE_WAIT = 180.0  # seconds a probe may take to be counted before the run fails


class Metadata(msgspec.Struct):
    tokens: int
    model: str
    cost: float


class EventCreate(msgspec.Struct):
    event_id: str
    customer_id: str
    event_name: str
    timestamp: str
    metadata: Metadata


class IngestCreate(msgspec.Struct):
    events: list[EventCreate]


class IngestRead(msgspec.Struct):
    ingested_count: int
    duplicates: list[object]
    rejected: list[object]


class UsageRead(msgspec.Struct):
    total: Decimal
    event_count: int


class HealthRead(msgspec.Struct):
    log_position: int | None = None
    projection_position: int | None = None


class Client(msgspec.Struct):
    port: int
    key: str

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def call(
        self, conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
    ) -> bytes:
        """The answer's body; anything but a 200 stops the run."""
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path} answered {response.status}: {raw[:500]!r}")
        return raw

    def lag(self, conn: http.client.HTTPConnection) -> int:
        """Log head minus the least projection position, as ``GET /health`` tells."""
        health = msgspec.json.decode(self.call(conn, "GET", "/health"), type=HealthRead)
        return (health.log_position or 0) - (health.projection_position or 0)


class Batches:
    """Fresh ingest bodies: unique ids, customers in turn, tokens and model varying, and
    timestamps spread over the 50 minutes before the run (inside the backdate window)."""

    def __init__(self, customers: list[str]) -> None:
        now = datetime.now(UTC)
        self.run, self.customers = secrets.token_hex(4), customers
        self.stamps = [
            (now - timedelta(seconds=s, microseconds=s % 997)).isoformat() for s in range(3000)
        ]
        self.metas = [Metadata(t, MODELS[t % 4], round(t * 2e-5, 6)) for t in range(5000)]
        self.numbers = itertools.count()  # next() on it is atomic under the GIL
        self.encoder = msgspec.json.Encoder()

    def next(self) -> tuple[bytes, int]:
        """One body and the sum of its tokens (for the sum meter's check)."""
        base, n = next(self.numbers) * BATCH, len(self.customers)
        events = [
            EventCreate(
                f"evt_{self.run}_{i:010d}",
                self.customers[i % n],
                "api.call",
                self.stamps[i % 3000],
                self.metas[(i * 7919) % 5000],
            )
            for i in range(base, base + BATCH)
        ]
        return self.encoder.encode(IngestCreate(events)), sum(e.metadata.tokens for e in events)


class Load(msgspec.Struct):
    events: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    latencies: list[float] = msgspec.field(default_factory=list)  # seconds, per POST


def check(answer: IngestRead, events: int = BATCH) -> None:
    if answer.duplicates or answer.rejected or answer.ingested_count != events:
        raise RuntimeError(f"unexpected ingest answer: {answer}")


def sustain(
    client: Client, batches: Batches, connections: int, seconds: float, rate: float = 0.0
) -> Load:
    """Each thread posts batches on its own keep-alive connection until the time is up;
    with ``rate`` (events/s), batch n is not sent before n * 1,000 / rate seconds in."""
    decoder, failed = msgspec.json.Decoder(IngestRead), threading.Event()
    started = time.perf_counter()
    deadline = started + seconds
    slots = itertools.count()  # next() on it is atomic under the GIL

    def worker() -> Load:
        mine, conn = Load(), client.connect()
        try:
            while time.perf_counter() < deadline and not failed.is_set():
                if rate > 0:
                    due = started + next(slots) * BATCH / rate
                    if due >= deadline:
                        break
                    time.sleep(max(0.0, due - time.perf_counter()))
                body, tokens = batches.next()
                sent = time.perf_counter()
                answer = decoder.decode(client.call(conn, "POST", "/events/ingest", body))
                mine.latencies.append(time.perf_counter() - sent)
                check(answer)
                mine.events, mine.tokens = mine.events + BATCH, mine.tokens + tokens
        except BaseException:
            failed.set()  # the other connections stop too
            raise
        finally:
            conn.close()
        return mine

    with ThreadPoolExecutor(connections) as pool:
        parts = list(pool.map(lambda _: worker(), range(connections)))
    total = Load(elapsed=time.perf_counter() - started)
    for part in parts:
        total.events, total.tokens = total.events + part.events, total.tokens + part.tokens
        total.latencies.extend(part.latencies)
    return total


class Probe:
    """Once a second one event to the probe customer; a second thread polls its meter and
    notes, per probe, the seconds from the ingest's 200 until the meter counts it.

    Probes go in one at a time, so the log holds them in order and a count of n
    means probes 1 to n are counted."""

    def __init__(self, client: Client, meter_id: str, customer_id: str) -> None:
        self.client, self.meter_id, self.customer_id = client, meter_id, customer_id
        self.answered: list[float] = []  # perf_counter of each probe's 200
        self.delays: list[float] = []
        self.stopping, self.errors = threading.Event(), list[BaseException]()
        self.threads = [
            threading.Thread(target=self.guarded, args=(f,), daemon=True)
            for f in (self.post, self.poll)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        """Stop posting, wait until every posted probe is counted."""
        self.stopping.set()
        for thread in self.threads:
            thread.join()
        if self.errors:
            raise self.errors[0]

    def guarded(self, target: Callable[[http.client.HTTPConnection], None]) -> None:
        conn = self.client.connect()
        try:
            target(conn)
        except BaseException as error:  # noqa: BLE001 - raised again by finish()
            self.errors.append(error)
            self.stopping.set()
        finally:
            conn.close()

    def post(self, conn: http.client.HTTPConnection) -> None:
        started = time.monotonic()
        for n in itertools.count(1):
            if self.stopping.wait(max(0.0, started + n - 1 - time.monotonic())):
                return
            event = EventCreate(
                f"probe_{secrets.token_hex(6)}_{n}",
                self.customer_id,
                PROBE_EVENT,
                datetime.now(UTC).isoformat(),
                Metadata(1, MODELS[0], 0.0),
            )
            body = msgspec.json.encode(IngestCreate([event]))
            check(
                msgspec.json.decode(
                    self.client.call(conn, "POST", "/events/ingest", body), type=IngestRead
                ),
                1,
            )
            self.answered.append(time.perf_counter())

    def poll(self, conn: http.client.HTTPConnection) -> None:
        now = datetime.now(UTC)
        span = {
            "start": (now - timedelta(days=1)).isoformat(),
            "window": "day",
            "end": (now + timedelta(days=1)).isoformat(),
            "customer_id": self.customer_id,
        }
        path = f"/meters/{self.meter_id}/usage?{urlencode(span)}"
        while not self.errors:
            if len(self.delays) == len(self.answered):
                if self.stopping.is_set():
                    return
                time.sleep(0.02)
                continue
            raw = self.client.call(conn, "GET", path)
            counted, seen = (
                msgspec.json.decode(raw, type=UsageRead).event_count,
                time.perf_counter(),
            )
            for answered in self.answered[len(self.delays) : counted]:
                self.delays.append(max(0.0, seen - answered))
            waiting = self.answered[len(self.delays) : len(self.delays) + 1]
            if waiting and seen - waiting[0] > PROBE_WAIT:
                raise RuntimeError(
                    f"probe {len(self.delays) + 1} not counted in {PROBE_WAIT:.0f} s"
                )
            time.sleep(0.02)


class Lags:
    """Projection lag once a second, on its own connection, while the load runs."""

    def __init__(self, client: Client) -> None:
        self.client, self.samples = client, list[int]()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="lag", daemon=True)

    def run(self) -> None:
        conn = self.client.connect()
        try:
            while not self.stopping.wait(1.0):
                self.samples.append(self.client.lag(conn))
        finally:
            conn.close()


def create(client: Client, path: str, body: dict[str, object], id_field: str) -> str:
    """POST ``body`` to ``path``, as a user would; the new thing's id."""
    conn = client.connect()
    try:
        raw = client.call(conn, "POST", path, msgspec.json.encode(body))
    finally:
        conn.close()
    return str(msgspec.json.decode(raw, type=dict[str, object])[id_field])


def prepare(client: Client) -> tuple[list[str], str, dict[str, str]]:
    """Five customers and a probe customer; meters: calls, tokens, probes."""
    customers = []
    for n in range(6):
        body: dict[str, object] = {"email": f"bench{n}@example.com", "name": f"Bench {n}"}
        customers.append(create(client, "/customers", body, "customer_id"))
    meters = {}
    for name, event, aggregation in (
        ("calls", "api.call", {"type": "count"}),
        ("tokens", "api.call", {"type": "sum", "key": "tokens"}),
        ("probes", PROBE_EVENT, {"type": "count"}),
    ):
        body = {
            "name": name,
            "event_name": event,
            "aggregation": aggregation,
            "measurement_unit": name,
        }
        meters[name] = create(client, "/meters", body, "id")
    return customers[:5], customers[5], meters


def usage(client: Client, meter_id: str) -> UsageRead:
    now = datetime.now(UTC)
    span = {
        "start": (now - timedelta(days=2)).isoformat(),
        "end": (now + timedelta(days=1)).isoformat(),
    }
    conn = client.connect()
    try:
        raw = client.call(conn, "GET", f"/meters/{meter_id}/usage?{urlencode(span)}")
    finally:
        conn.close()
    return msgspec.json.decode(raw, type=UsageRead)

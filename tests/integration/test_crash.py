"""A crash in the middle of ingest loses nothing acknowledged and writes nothing twice.

The real server runs as a subprocess; several clients send overlapping batches;
the server is killed with SIGKILL once some answers are in and more requests are
in flight, and once one request whose answer the client never reads has been
committed (so a write whose answer is lost is certain, not left to timing).
After a restart on the same database every acknowledged event is in the log
exactly once, every request retried is absorbed as duplicates where it was
already written, the projections catch up with the log, and the audit finds
nothing amiss.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from uuid import UUID

import httpx
import pytest
from eventsourcing.utils import get_topic

from domain.usage import UsageEvent, usage_event_id
from infrastructure.audit import audit
from infrastructure.bootstrap import Container, build
from infrastructure.runtime import status
from infrastructure.settings import Settings
from tests.conftest import BOOTSTRAP_KEY, free_port

BUSINESS = "default"
CLIENTS = 4
REQUESTS = 48
KILL_AFTER = 10  # answers received before the kill
HEADERS = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
RECORDED_TOPIC = get_topic(UsageEvent.Recorded)
HELD = "answer never read"
CUT = ("RemoteProtocolError", "ReadError")  # the server died with the request in flight
Batches = list[tuple[str, ...]]


@dataclass(frozen=True)
class Outcome:
    """What one request got: an answer (status, body) or a transport error."""

    status: int | None = None
    ingested_count: int = 0
    duplicates: frozenset[str] = frozenset()
    rejected: tuple[object, ...] = ()
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.status == 200


@dataclass
class Server:
    """``ledger serve`` in a subprocess, its output in a file."""

    url: str
    log_path: Path
    port: int = field(default_factory=free_port)
    arguments: tuple[str, ...] = ()  # more of `ledger serve`'s, e.g. ("--workers", "2")
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "LEDGER_DATABASE_URL": self.url,
            "LEDGER_BOOTSTRAP_API_KEY": BOOTSTRAP_KEY,
            "LEDGER_LOG_FORMAT": "json",
        }
        command = [
            sys.executable, "-m", "api.cli", "serve", "--port", str(self.port), *self.arguments
        ]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_until_healthy()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=HEADERS, timeout=TIMEOUT)

    def _wait_until_healthy(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=5.0) as http:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, self.output()
                try:
                    if http.get("/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"the server did not become healthy:\n{self.output()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self._log is not None:
            self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def servers(store_url: str, tmp_path: Path) -> Iterator[Callable[[], Server]]:
    """Start servers on the test's store; every one is stopped at the end."""
    started: list[Server] = []

    def start() -> Server:
        server = Server(store_url, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def plan_batches(seed: int = 7) -> Batches:
    """Batches of 50-200 events: fresh ids plus some ids of the batches just before.

    The last batch, of ids in no other, is the one whose answer is never read.
    """
    rng = random.Random(seed)
    batches: Batches = []
    fresh = 0
    for _ in range(REQUESTS):
        ids = [f"crash-{n}" for n in range(fresh, fresh + rng.randint(50, 150))]
        fresh += len(ids)
        recent = sorted({i for batch in batches[-3:] for i in batch})
        ids += rng.sample(recent, min(len(recent), rng.randint(0, 50)))
        rng.shuffle(ids)
        batches.append(tuple(ids))
    return [*batches, tuple(f"held-{n}" for n in range(100))]


def events_of(customer_id: str, ids: tuple[str, ...]) -> list[dict[str, object]]:
    return [
        {"event_id": i, "customer_id": customer_id, "event_name": "api.call", "metadata": {"n": i}}
        for i in ids
    ]


def send(http: httpx.Client, customer_id: str, ids: tuple[str, ...]) -> Outcome:
    try:
        response = http.post("/events/ingest", json={"events": events_of(customer_id, ids)})
    except httpx.TransportError as error:
        return Outcome(error=f"{type(error).__name__}: {error}")
    if response.status_code != 200:
        return Outcome(status=response.status_code, error=response.text[:500])
    body = response.json()
    return Outcome(
        status=200,
        ingested_count=body["ingested_count"],
        duplicates=frozenset(d["event_id"] for d in body["duplicates"]),
        rejected=tuple(body["rejected"]),
    )


class Load:
    """Clients that send every batch once, from several threads, counting answers."""

    def __init__(self, server: Server, customer_id: str, batches: Batches) -> None:
        self.server = server
        self.customer_id = customer_id
        self.outcomes: dict[int, Outcome] = {}
        self.answered = 0
        self.in_flight = 0
        self.stopped = threading.Event()  # set at the kill: what is left is not sent
        self.changed = threading.Condition()
        self._work: queue.Queue[tuple[int, tuple[str, ...]]] = queue.Queue()
        for number, ids in enumerate(batches):
            self._work.put((number, ids))
        self._threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> dict[int, Outcome]:
        for thread in self._threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), "a client thread is stuck"
        return self.outcomes

    def _client(self) -> None:
        with self.server.client() as http:
            while not self.stopped.is_set():
                try:
                    number, ids = self._work.get_nowait()
                except queue.Empty:
                    return
                with self.changed:
                    self.in_flight += 1
                outcome = send(http, self.customer_id, ids)
                with self.changed:
                    self.in_flight -= 1
                    self.answered += outcome.answered
                    self.outcomes[number] = outcome
                    self.changed.notify_all()

    def wait_mid_load(self, timeout: float = 60.0) -> None:
        """Until KILL_AFTER answers are in and at least two requests are in flight."""
        with self.changed:
            reached = self.changed.wait_for(
                lambda: self.answered >= KILL_AFTER and self.in_flight >= 2, timeout
            )
        assert reached, f"never mid-load: {self.answered} answered, {self.in_flight} in flight"


class UsageLog:
    """Each usage event's recordings, read from the log itself (new entries only, each time)."""

    def __init__(self, container: Container) -> None:
        self._recorder = container.ledger.recorder
        self._position = 1
        self.counts: Counter[UUID] = Counter()

    def read(self) -> Counter[UUID]:
        while batch := self._recorder.select_notifications(
            self._position, 1000, topics=[RECORDED_TOPIC]
        ):
            self.counts.update(n.originator_id for n in batch)
            self._position = batch[-1].id + 1
        return self.counts


class HeldRequest:
    """An ingest request whose answer the client never reads: it is lost in the crash.

    Its events are committed before the kill, so its retry must find them all.
    """

    def __init__(self, server: Server, customer_id: str, ids: tuple[str, ...]) -> None:
        body = json.dumps({"events": events_of(customer_id, ids)}).encode()
        head = (
            f"POST /events/ingest HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {BOOTSTRAP_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self.ids = uuids(ids)
        self._socket = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self._socket.sendall(head.encode() + body)

    def wait_until_committed(self, log: UsageLog, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ids <= log.read().keys():
            assert time.monotonic() < deadline, "the held request was never committed"
            time.sleep(0.002)

    def close(self) -> Outcome:
        self._socket.close()
        return Outcome(error=HELD)


def listed_ids(http: httpx.Client) -> list[str]:
    ids: list[str] = []
    page = 0
    while items := http.get("/events", params={"page_size": 1000, "page_number": page}).json()[
        "items"
    ]:
        ids += [item["event_id"] for item in items]
        page += 1
    return ids


def wait_for_listing(http: httpx.Client, expected: int, timeout: float = 40.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(ids := listed_ids(http)) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return ids


def check_the_crash(outcomes: dict[int, Outcome], batches: Batches, stored: Counter[UUID]) -> None:
    """What was answered before the kill is in the log once; no batch is half-written."""
    assert {n: o for n, o in outcomes.items() if o.status not in (None, 200)} == {}
    answered = [n for n, o in outcomes.items() if o.answered]
    assert len(answered) >= KILL_AFTER
    in_flight = [n for n, o in outcomes.items() if o.error and o.error.startswith(CUT)]
    assert in_flight, "the kill met no request in flight"
    assert all(not outcomes[n].rejected for n in answered)
    assert set(stored.values()) <= {1}, "an event was recorded twice"
    for number in answered:
        assert uuids(batches[number]) <= stored.keys(), f"request {number} was answered, then lost"
    assert stored.keys() <= uuids(i for batch in batches for i in batch)
    seen = Counter(i for batch in batches for i in batch)
    for number, outcome in outcomes.items():
        own = uuids(i for i in batches[number] if seen[i] == 1)  # in no other request
        if outcome.error and own:
            assert len(own & stored.keys()) in (0, len(own)), f"request {number} half-written"


def check_the_retries(
    outcomes: dict[int, Outcome], retries: dict[int, Outcome], batches: Batches
) -> None:
    """Every request sent again: what was answered is all duplicates; none counted twice."""
    assert len(retries) == len(batches)
    assert all(o.answered and not o.rejected for o in retries.values()), retries
    for number, retry in retries.items():
        assert retry.ingested_count + len(retry.duplicates) == len(batches[number])
        if outcomes.get(number, Outcome()).answered:
            assert (retry.ingested_count, retry.duplicates) == (0, set(batches[number]))
    claims = Counter(
        i
        for answers in (outcomes, retries)
        for n, o in answers.items()
        if o.answered
        for i in set(batches[n]) - o.duplicates
    )
    assert max(claims.values()) == 1, "an event was reported as ingested twice"
    unanswered = {i for n, o in outcomes.items() if o.error for i in batches[n]}
    sent = {i for batch in batches for i in batch}
    assert sent - claims.keys() <= unanswered  # written, but its answer was lost in the crash


def uuids(event_ids: Iterable[str]) -> set[UUID]:
    return {usage_event_id(BUSINESS, i) for i in event_ids}


def test_a_crash_mid_ingest_loses_no_acknowledged_event_and_writes_none_twice(
    servers: Callable[[], Server], store_url: str
) -> None:
    batches = plan_batches()
    held = len(batches) - 1
    sent = {i for batch in batches for i in batch}
    first = servers()
    with first.client() as http:
        customer_id = http.post("/customers", json={"email": "c@rash.co", "name": "C"}).json()[
            "customer_id"
        ]
    container = build(Settings(database_url=store_url))
    try:
        log = UsageLog(container)
        load = Load(first, customer_id, batches[:held]).start()
        load.wait_mid_load()
        held_request = HeldRequest(first, customer_id, batches[held])
        held_request.wait_until_committed(log)
        load.stopped.set()
        first.kill()
        outcomes = {**load.join(), held: held_request.close()}
        assert "Traceback" not in first.output(), first.output()
        check_the_crash(outcomes, batches, log.read())  # (1)

        second = servers()
        acknowledged = {i for n, o in outcomes.items() if o.answered for i in batches[n]}
        with second.client() as http:
            for event_id in sorted(acknowledged):
                response = http.get(f"/events/{event_id}")
                assert response.status_code == 200, (event_id, response.text)
                assert response.json()["customer_id"] == customer_id

        retries = Load(second, customer_id, batches).start().join()
        check_the_retries(outcomes, retries, batches)  # (2)
        assert (retries[held].ingested_count, retries[held].duplicates) == (0, set(batches[held]))
        stored = log.read()
        assert set(stored.values()) == {1}
        assert stored.keys() == uuids(sent)

        with second.client() as http:  # (3) the projections catch up
            listed = wait_for_listing(http, len(sent))
        assert len(listed) == len(stored)
        assert set(listed) == sent
        assert all(status.behind == 0 for status in status(container)), status(container)

        second.stop()  # (4) the restarted server logged no error
        restart_log = second.output()
        assert "Traceback" not in restart_log, restart_log
        assert '"level": "error"' not in restart_log, restart_log

        report = audit(container)  # the log, the invoices and the projections check out
        assert (report.mismatches, report.unsealed) == ([], 0), report
        assert report.events > len(sent)  # the customer's event and every usage event
    finally:
        container.close()

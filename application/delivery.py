"""Delivery: the outbox's messages sent to their endpoints, signed, at least once.

A delivery loop claims the messages that are due (a lease: the claim moves the
next attempt past the time the attempt may take, so a second process, or this
one after a crash, takes it up only when the lease has run out) and hands each
endpoint's messages to a worker of its own, in log order. A slow or dead
endpoint holds back only its own queue; ingest and the projections never wait
for a delivery.

An attempt succeeds on a 2xx answer within the timeout. Anything else is tried
again after the next delay of the schedule (``RETRY_SCHEDULE``, with up to 10%
jitter: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; eight attempts over about
27.6 hours), then the message is marked failed. An endpoint whose every attempt
failed for a day (``DISABLE_AFTER``) is disabled, with the reason, by an event
in the log. Every attempt of a message carries the same ``webhook-id``, so a
receiver deduplicates.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from application.outbox import Route

log = structlog.get_logger(__name__)
RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
DISABLE_AFTER = timedelta(days=1)
JITTER = 0.1
CLAIM_LIMIT = 200  # messages claimed per look
MAX_PER_ENDPOINT = 10  # of one endpoint per claim: the rest the next time round
STATUSES = ("pending", "delivered", "failed")


@dataclass(frozen=True, slots=True)
class Pending:
    """A claimed message, to be sent now."""

    message_id: str
    business_id: str
    endpoint_id: str
    type: str
    body: bytes
    attempts: int  # made before this one
    claimed_until: datetime  # the lease: its outcome counts only while the claim stands


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None  # None: no answer (refused, timed out)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class MessageView:
    message_id: str
    endpoint_id: str
    type: str
    status: str
    attempts: int
    position: int
    created_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None  # None once delivered or failed
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class MessageQuery:
    business_id: str
    endpoint_id: str
    status: str | None = None
    after: tuple[int, str] | None = None  # (position, message id) of the last one seen
    limit: int = 50


class DeliveryStore(Protocol):
    def claim(
        self, now: datetime, lease_until: datetime, limit: int, busy: Collection[str]
    ) -> list[Pending]:
        """Due messages of endpoints that receive and are not in ``busy``, claimed until
        ``lease_until``, in log order."""
        ...

    def finish(
        self,
        pending: Pending,
        at: datetime,
        outcome: Outcome,
        next_attempt_at: datetime | None,
    ) -> None:
        """Record the attempt: delivered (``outcome.ok``), due again at
        ``next_attempt_at``, or failed (neither). Nothing if the claim no longer
        stands (its lease ran out and another worker took the message up)."""
        ...

    def release(self, claimed: Sequence[Pending], at: datetime) -> None:
        """Give claimed messages back, due at ``at``, no attempt counted."""
        ...

    def failing_since(self, endpoint_id: str, at: datetime, *, ok: bool) -> datetime | None:
        """Note an attempt's outcome; since when every attempt has failed (None: the last
        succeeded)."""
        ...

    def messages(self, query: MessageQuery) -> list[MessageView]: ...

    def message(self, endpoint_id: str, message_id: str) -> MessageView | None: ...

    def retry(self, endpoint_id: str, message_id: str, now: datetime) -> bool:
        """Make the message due now (delivered or failed ones too); False if there is none."""
        ...

    def replay(self, since: datetime, endpoint_id: str | None, now: datetime) -> int:
        """Make every message of facts since ``since`` due now; how many."""
        ...


class Sender(Protocol):
    def send(
        self,
        route: Route,
        pending: Pending,
        secret: str,
        headers: dict[str, str],
    ) -> Outcome:
        """One attempt; the signature's timestamp is the wall clock's (receivers check it)."""
        ...


class Secrets(Protocol):
    def secret(self, business_id: str, endpoint_id: str) -> str | None: ...

    def headers(self, business_id: str, endpoint_id: str) -> dict[str, str]: ...


def next_attempt(
    attempts: int,
    at: datetime,
    schedule: Sequence[float] = RETRY_SCHEDULE,
    rng: Callable[[], float] = random.random,
) -> datetime | None:
    """When to try again after ``attempts`` attempts failed; None: give up."""
    if attempts > len(schedule):
        return None
    delay = schedule[attempts - 1]
    return at + timedelta(seconds=delay * (1 + JITTER * rng()))


class Deliverer:
    """The delivery loop's work: claim what is due, send it, record what happened."""

    def __init__(
        self,
        store: DeliveryStore,
        routes: Callable[[], Sequence[Route]],
        secrets: Secrets,
        sender: Sender,
        clock: Callable[[], datetime],
        disable: Callable[[str, str, str, datetime], None],
        *,
        schedule: Sequence[float] = RETRY_SCHEDULE,
        timeout: float = 10.0,
        workers: int = 64,
    ) -> None:
        self._store = store
        self._routes = routes
        self._secrets = secrets
        self._sender = sender
        self._clock = clock
        self._disable = disable
        self._schedule = tuple(schedule)
        self._timeout = timeout
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="webhook")
        self._last_sent: dict[str, float] = {}

    def step(self) -> int:
        """Claim what is due and hand each endpoint's messages to a worker; how many."""
        now = self._clock()
        with self._lock:
            busy = set(self._busy)
        lease = now + timedelta(seconds=self._timeout * MAX_PER_ENDPOINT + 5)
        claimed = self._store.claim(now, lease, CLAIM_LIMIT, busy)
        if not claimed:
            return 0
        routes = {r.endpoint_id: r for r in self._routes()}
        queues: dict[str, list[Pending]] = {}
        for pending in claimed:
            queues.setdefault(pending.endpoint_id, []).append(pending)
        for endpoint_id, queue in queues.items():
            route = routes.get(endpoint_id)
            if route is None:
                continue  # its lease runs out; the outbox has not seen it yet
            with self._lock:
                self._busy.add(endpoint_id)
            self._pool.submit(self._deliver, route, queue)
        return len(claimed)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until no worker is busy (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._busy:
                    return
            time.sleep(0.01)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _deliver(self, route: Route, queue: list[Pending]) -> None:
        try:
            secret = self._secrets.secret(route.business_id, route.endpoint_id)
            headers = self._secrets.headers(route.business_id, route.endpoint_id)
            for index, pending in enumerate(queue):
                self._pace(route)
                current = self._current(route) if index else route
                if secret is None or current is None:
                    self._release(queue[index:])
                    break  # deleted or disabled meanwhile: nothing more is sent to it
                outcome = self.attempt(current, pending, secret, headers)
                if not outcome.ok and index + 1 < len(queue):
                    self._release(queue[index + 1 :])
                    break  # the endpoint fails: the rest wait for their own next attempt
        except Exception as error:  # noqa: BLE001 - the lease runs out; tried again then
            log.warning("webhook_delivery_failed", endpoint_id=route.endpoint_id, error=str(error))
        finally:
            with self._lock:
                self._busy.discard(route.endpoint_id)

    def _current(self, route: Route) -> Route | None:
        """The endpoint as it stands now, if it still receives."""
        found = next((r for r in self._routes() if r.endpoint_id == route.endpoint_id), None)
        return found if found is not None and not (found.disabled or found.deleted) else None

    def attempt(
        self, route: Route, pending: Pending, secret: str, headers: dict[str, str]
    ) -> Outcome:
        try:
            outcome = self._sender.send(route, pending, secret, headers)
        except Exception as error:  # noqa: BLE001 - any failure to send is a failed attempt
            outcome = Outcome(None, f"{type(error).__name__}: {str(error)[:200]}")
        at = self._clock()
        attempts = pending.attempts + 1
        retry_at = None if outcome.ok else next_attempt(attempts, at, self._schedule)
        self._store.finish(pending, at, outcome, retry_at)
        log.info(
            "webhook_attempt",
            message_id=pending.message_id,
            endpoint_id=route.endpoint_id,
            type=pending.type,
            attempt=attempts,
            status_code=outcome.status_code,
            outcome="delivered" if outcome.ok else "retry" if retry_at else "failed",
        )
        failing = self._store.failing_since(route.endpoint_id, at, ok=outcome.ok)
        if failing is not None and at - failing >= DISABLE_AFTER:
            reason = (
                f"every delivery attempt since {failing.isoformat()} failed "
                f"(last: {outcome.status_code or outcome.error})"
            )
            self._disable(route.business_id, route.endpoint_id, reason, at)
            self._store.failing_since(route.endpoint_id, at, ok=True)  # enabled again: anew
            log.warning("webhook_endpoint_disabled", endpoint_id=route.endpoint_id)
        return outcome

    def _release(self, rest: Sequence[Pending]) -> None:
        """Claimed but not tried: due again at once, with no attempt counted."""
        self._store.release(rest, self._clock())

    def _pace(self, route: Route) -> None:
        """At most ``rate_limit`` deliveries a second to the endpoint (in this process)."""
        if route.rate_limit is None:
            return
        gap = 1.0 / route.rate_limit
        last = self._last_sent.get(route.endpoint_id)
        now = time.monotonic()
        if last is not None and now - last < gap:
            time.sleep(gap - (now - last))
        self._last_sent[route.endpoint_id] = time.monotonic()

"""Per-key rate limits: a token bucket for requests and one for ingested events.

Each API key has two buckets in each server process: one refilled at
``LEDGER_RATE_LIMIT_REQUESTS`` tokens a second (a request takes one), one at
``LEDGER_RATE_LIMIT_EVENTS`` (an ingest request takes one per event it
carries). A bucket holds one second's worth; the events bucket never less than
one full ingest batch, so a single largest request is always possible. Over the
limit the request is answered 429 ``rate_limited`` with ``Retry-After``: the
whole seconds until the bucket holds enough again. Nothing of it is written.

The buckets live in the process, not in the database: a limit costs no round
trip, and under ``serve --workers N`` a key may reach N times the configured
rate (each worker refills its own). Litestar's ``RateLimitConfig`` counts
requests per fixed window and per client address; it cannot weigh a request by
the events it carries, hence these few lines.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from litestar.exceptions import HTTPException

MAX_BATCH = 1000  # events an ingest request may carry (api.schemas.IngestCreate)
_IDLE_SECONDS = 600.0  # a bucket unused this long is full again: forgotten, to bound memory


class RateLimitedError(HTTPException):
    status_code = 429
    code = "rate_limited"

    def __init__(self, what: str, rate: float, retry_after: int) -> None:
        super().__init__(
            detail=f"this API key is over its limit of {rate:g} {what} per second; "
            f"retry after {retry_after} s",
            headers={"Retry-After": str(retry_after)},
            extra={"limit": rate, "unit": f"{what}/s", "retry_after": retry_after},
        )


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """One bucket per key; ``take`` refills by elapsed time, then takes or refuses."""

    def __init__(
        self,
        what: str,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        least: float = 1.0,
    ) -> None:
        self.what = what
        self.rate = rate
        self.capacity = max(rate, least)  # one second's worth, and never less than ``least``
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, amount: float = 1.0) -> None:
        """Take ``amount`` tokens for ``key`` or raise ``RateLimitedError``."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.capacity, now)
            else:
                elapsed = max(now - bucket.stamp, 0.0)
                bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
                bucket.stamp = now
            if bucket.tokens >= amount:
                bucket.tokens -= amount
                return
            missing = min(amount, self.capacity) - bucket.tokens
            if len(self._buckets) > 10_000:
                self._forget(now)
        raise RateLimitedError(self.what, self.rate, max(1, math.ceil(missing / self.rate)))

    def _forget(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if now - b.stamp > _IDLE_SECONDS]:
            del self._buckets[key]


@dataclass(frozen=True, slots=True)
class RateLimits:
    requests: TokenBuckets
    events: TokenBuckets

    @classmethod
    def per_second(
        cls, requests: float, events: float, clock: Callable[[], float] = time.monotonic
    ) -> RateLimits:
        return cls(
            TokenBuckets("requests", requests, clock),
            TokenBuckets("events", events, clock, least=MAX_BATCH),
        )

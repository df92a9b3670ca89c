"""Token buckets per key: refilled by elapsed time, refusing with the wait in whole seconds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from api.limits import MAX_BATCH, RateLimitedError, TokenBuckets


@dataclass
class Ticks:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_takes_its_capacity_then_refuses_with_the_wait() -> None:
    ticks = Ticks()
    buckets = TokenBuckets("requests", 2000, ticks)
    for _ in range(2000):
        buckets.take("key_a")
    with pytest.raises(RateLimitedError, match="limit of 2000 requests per second") as refused:
        buckets.take("key_a")
    assert refused.value.headers == {"Retry-After": "1"}
    assert refused.value.status_code == 429
    ticks.now += 0.01  # 20 tokens back
    for _ in range(20):
        buckets.take("key_a")
    with pytest.raises(RateLimitedError, match="retry after 1 s"):
        buckets.take("key_a")


def test_each_key_has_its_own_bucket() -> None:
    buckets = TokenBuckets("requests", 1000, Ticks())
    for _ in range(1000):
        buckets.take("key_a")
    with pytest.raises(RateLimitedError, match="requests per second"):
        buckets.take("key_a")
    buckets.take("key_b")


def test_events_are_taken_by_the_batch_and_the_wait_covers_what_is_missing() -> None:
    ticks = Ticks()
    buckets = TokenBuckets("events", 100, ticks, least=MAX_BATCH)
    assert buckets.capacity == MAX_BATCH  # one largest batch always fits an empty history
    buckets.take("key_a", MAX_BATCH)
    with pytest.raises(RateLimitedError, match="100 events per second") as refused:
        buckets.take("key_a", 500)
    assert refused.value.headers == {"Retry-After": "5"}  # 500 events at 100 a second
    ticks.now += 5
    buckets.take("key_a", 500)


def test_a_refused_request_takes_nothing() -> None:
    ticks = Ticks()
    buckets = TokenBuckets("events", 1000, ticks, least=MAX_BATCH)
    buckets.take("key_a", 900)
    with pytest.raises(RateLimitedError, match="events per second"):
        buckets.take("key_a", 200)
    buckets.take("key_a", 100)  # the 100 left are still there


def test_a_rate_of_zero_is_no_limit() -> None:
    buckets = TokenBuckets("requests", 0, Ticks())
    for _ in range(5000):
        buckets.take("key_a")

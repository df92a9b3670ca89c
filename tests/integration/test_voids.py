"""Voids on SQLite and PostgreSQL: the index at any cut, the usage projection live and rebuilt."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import Tracking

from application import usage
from application.ledger import EventInput
from application.ports import PositionMovedError
from application.projection import Batch
from application.usage import LogBehindError
from application.usage_report import Window, usage_report
from application.views import EventQuery
from domain.meter import fold
from domain.usage import usage_event_id
from infrastructure.bootstrap import Container
from infrastructure.rebuild import rebuild
from tests.integration.test_usage_projection import (
    DAYS,
    METERS,
    NOW,
    catch_up,
    customers,
    follow_usage,
    ingest,
    live_rows,
    make_meter,
    usage_events,
)

LATER = NOW + timedelta(minutes=5)


def void(container: Container, *event_ids: str, reason: str | None = None) -> None:
    for event_id in event_ids:
        container.ledger.void_usage_event("default", event_id, reason=reason, now=LATER)


def records(events: list[EventInput], voided: set[str], customer_id: str | None = None) -> Any:
    return [
        (
            datetime.fromisoformat(e.timestamp or "").astimezone(UTC),
            e.event_id,
            e.event_name,
            e.metadata or {},
        )
        for e in events
        if e.event_id not in voided and customer_id in (None, e.customer_id)
    ]


def measured(container: Container, meter_id: str, customer_id: str | None = None) -> Any:
    spec = container.ledger.meter_spec("default", meter_id)
    return usage_report(
        container.reads.measure,
        business_id="default",
        meter_id=meter_id,
        spec=spec,
        customer_id=customer_id,
        start=NOW - DAYS - timedelta(minutes=17),
        end=NOW + timedelta(minutes=1),
        window=Window.DAY,
    ).total


def scanned(container: Container, up_to: int | None = None) -> list[str]:
    found = container.reads.usage_log.stream_records(
        "default", "api.call", None, NOW - 2 * DAYS, NOW + DAYS, up_to
    )
    return sorted(record[1] for record in found)


@pytest.fixture
def container(make_container: Any) -> Container:
    built: Container = make_container(backdate_window=DAYS)
    return built


def test_the_usage_log_answers_what_counted_at_any_position(container: Container) -> None:
    [cid] = customers(container, 1)
    at = NOW.isoformat()
    ingest(container, [EventInput(f"e{i}", cid, "api.call", at) for i in range(3)])
    recorded = container.ledger.recorder.max_notification_id() or 0
    void(container, "e1", reason="duplicate")
    voided = container.ledger.recorder.max_notification_id() or 0
    catch_up(container)
    assert scanned(container, up_to=recorded - 3) == []
    assert scanned(container, up_to=recorded) == ["e0", "e1", "e2"]
    assert scanned(container, up_to=voided - 1) == ["e0", "e1", "e2"]
    assert scanned(container, up_to=voided) == ["e0", "e2"]
    assert scanned(container) == ["e0", "e2"]
    [listed] = [
        e
        for e in container.reads.usage_log.list_events(EventQuery("default", page_size=100))
        if e.event_id == "e1"  # still listed, with its void
    ]
    assert (listed.voided_at, listed.void_reason) == (LATER, "duplicate")
    rebuild(container, "usage_log")
    assert scanned(container, up_to=voided - 1) == ["e0", "e1", "e2"]
    assert scanned(container) == ["e0", "e2"]


def test_the_projection_equals_a_fold_of_what_was_not_voided_and_rebuilds_the_same(
    container: Container,
) -> None:
    early = {name: make_meter(container, name, *d) for name, d in METERS.items()}
    cids = customers(container, 3)
    events = usage_events(cids, 900, seed=5)
    ingest(container, events[:600])
    catch_up(container)
    rng = random.Random(5)
    voided = {e.event_id for e in rng.sample(events[:600], 60)}
    void(container, *sorted(voided)[:30])
    catch_up(container)  # voids in batches of their own
    ingest(container, events[600:])
    late_voids = {e.event_id for e in rng.sample(events[600:], 20)}
    voided |= late_voids
    void(container, *sorted(voided - late_voids)[30:], *sorted(late_voids))
    late = {f"late-{name}": make_meter(container, f"late-{name}", *d) for name, d in METERS.items()}
    catch_up(container)  # events, their voids and new meters in one batch

    for name, meter_id in {**early, **late}.items():
        spec = container.ledger.meter_spec("default", meter_id)
        for cid in cids:
            expected = fold(spec, records(events, voided, cid))
            assert measured(container, meter_id, cid) == expected, (name, cid)

    before = live_rows(container)
    assert before
    rebuild(container, "usage")
    assert live_rows(container) == before
    rebuild(container, "usage", workers=2, parallel_from=0)
    assert live_rows(container) == before


def test_a_meter_redefined_after_voids_leaves_them_out(container: Container) -> None:
    meter_id = make_meter(container, "m", {"type": "count"}, None)
    [cid] = customers(container, 1)
    events = usage_events([cid], 200, seed=9)
    ingest(container, events)
    numbers = [
        e
        for e in events
        if e.event_name == "api.call"
        and isinstance((e.metadata or {}).get("tokens"), int | Decimal)
    ]
    greatest = max(numbers, key=lambda e: (e.metadata or {})["tokens"])
    voided = {greatest.event_id, *(e.event_id for e in events[::7])}
    void(container, *voided)
    catch_up(container)
    container.ledger.update_meter(
        "default", meter_id, changes={"aggregation": {"type": "max", "key": "tokens"}}, now=NOW
    )
    catch_up(container)
    spec = container.ledger.meter_spec("default", meter_id)
    assert measured(container, meter_id) == fold(spec, records(events, voided))
    before = live_rows(container)
    rebuild(container, "usage")
    assert live_rows(container) == before


def test_an_hour_whose_every_event_is_voided_keeps_an_empty_bucket(container: Container) -> None:
    """Measuring nothing, its bucket says when the hour last changed: a fold at an
    earlier cut reads that hour from the usage log."""
    meter_id = make_meter(container, "m", {"type": "last", "key": "tokens"}, None)
    [cid] = customers(container, 1)
    at = (NOW - timedelta(hours=5)).isoformat()
    ingest(container, [EventInput(f"e{i}", cid, "api.call", at, {"tokens": i}) for i in range(3)])
    catch_up(container)
    [(_, full)] = live_rows(container)
    void(container, "e0", "e1", "e2")
    catch_up(container)
    [(_, empty)] = live_rows(container)
    assert empty.tally.count == 0
    assert empty.changed_at == container.ledger.head() > full.changed_at
    assert measured(container, meter_id) == 0
    before = live_rows(container)
    rebuild(container, "usage")
    assert live_rows(container) == before


def test_the_usage_projection_waits_for_the_usage_log_and_writes_nothing_before(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage, "LOG_WAIT_SECONDS", 0.05)
    meter_id = make_meter(container, "m", {"type": "sum", "key": "tokens"}, None)
    [cid] = customers(container, 1)
    at = NOW.isoformat()
    ingest(container, [EventInput(f"e{i}", cid, "api.call", at, {"tokens": 10}) for i in range(3)])
    catch_up(container)
    position = container.projector.position("usage")
    rows = live_rows(container)
    void(container, "e0")
    with pytest.raises(LogBehindError, match="usage log has not reached"):
        container.projector.catch_up(names=["usage"])  # the usage log has not seen the void
    assert container.projector.position("usage") == position
    assert live_rows(container) == rows
    catch_up(container)
    assert measured(container, meter_id) == 20


def test_two_followers_recount_a_void_once(make_container: Any) -> None:
    first: Container = make_container(backdate_window=DAYS)
    second: Container = make_container(backdate_window=DAYS)
    meter_id = make_meter(first, "m", {"type": "max", "key": "tokens"}, None)
    [cid] = customers(first, 1)
    at = NOW.isoformat()
    ingest(first, [EventInput(f"e{i}", cid, "api.call", at, {"tokens": i}) for i in range(5)])
    catch_up(first)
    follow_usage(second)
    void(first, "e4")
    first.projector.catch_up(names=["usage_log"])

    # The second process reads the void's batch, but the first applies it before it does.
    after = second.projector.position("usage")
    batch = second.ledger.recorder.select_notifications(
        start=after, limit=1000, inclusive_of_start=False
    )
    follow_usage(first)
    stale = [second.ledger.mapper.to_domain_event(n) for n in batch]
    tracking = Tracking("ledger", batch[-1].id)
    with pytest.raises(PositionMovedError, match="not at"):
        second.projector.projection("usage").process(Batch(batch, stale), tracking, after)
    follow_usage(second)
    assert measured(first, meter_id) == 3
    assert [b.tally.maximum for _, b in live_rows(first)] == [3]


def test_concurrent_voids_append_one_void(
    make_container: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first: Container = make_container(backdate_window=DAYS)
    second: Container = make_container(backdate_window=DAYS)
    [cid] = customers(first, 1)
    ingest(first, [EventInput("e1", cid, "api.call", NOW.isoformat())])
    load = first.ledger._usage_event  # the race is between this load and the save
    raced: list[bool] = []

    def load_then_lose_the_race(business_id: str, event_id: str) -> Any:
        usage = load(business_id, event_id)
        if not raced:
            raced.append(True)
            second.ledger.void_usage_event(business_id, event_id, reason="second", now=NOW)
        return usage

    monkeypatch.setattr(first.ledger, "_usage_event", load_then_lose_the_race)
    view = first.ledger.void_usage_event("default", "e1", reason="first", now=LATER)
    assert (view.void_reason, view.voided_at) == ("second", NOW)
    assert len(first.ledger.recorder.select_events(usage_event_id("default", "e1"))) == 2

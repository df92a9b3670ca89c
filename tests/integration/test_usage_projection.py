"""The usage projection on SQLite and PostgreSQL: live, late meters, rebuilt from the log."""

from __future__ import annotations

import random
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.ledger import EventInput
from application.ports import PositionMovedError
from application.projection import Batch
from application.usage_report import HOUR, Window, usage_report
from domain.meter import MeterSpec, fold
from infrastructure.bootstrap import Container, build
from infrastructure.rebuild import rebuild
from infrastructure.runtime import status
from infrastructure.settings import Settings
from tests.conftest import FakeClock

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAYS = timedelta(days=3)

METERS: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "count": ({"type": "count"}, None),
    "sum": ({"type": "sum", "key": "tokens"}, None),
    "max": ({"type": "max", "key": "tokens"}, None),
    "min": ({"type": "min", "key": "tokens"}, None),
    "last": ({"type": "last", "key": "tokens"}, None),
    "unique": ({"type": "unique_count", "key": "model"}, None),
    "pro-sum": (
        {"type": "sum", "key": "tokens"},
        {
            "conjunction": "or",
            "clauses": [
                {
                    "conjunction": "and",
                    "clauses": [
                        {"key": "tier", "operator": "equals", "value": "pro"},
                        {"key": "tokens", "operator": "greater_than", "value": 10},
                    ],
                },
                {
                    "conjunction": "and",
                    "clauses": [{"key": "model", "operator": "contains", "value": "hd"}],
                },
            ],
        },
    ),
}


def make_meter(container: Container, name: str, aggregation: object, filter_: object) -> str:
    view = container.ledger.create_meter(
        "default",
        name=name,
        description=None,
        measurement_unit="units",
        event_name="api.call",
        aggregation=aggregation,
        filter_=filter_,
        now=NOW,
    )
    return view.meter_id


def customers(container: Container, count: int) -> list[str]:
    return [
        container.ledger.register_customer(
            "default",
            email=f"c{i}@example.com",
            name=f"C{i}",
            phone_number=None,
            metadata=None,
            now=NOW,
        ).customer_id
        for i in range(count)
    ]


def usage_events(cids: list[str], count: int, seed: int) -> list[EventInput]:
    rng = random.Random(seed)
    events = []
    for i in range(count):
        metadata: dict[str, object] = {
            "tier": rng.choice(["pro", "free"]),
            "model": rng.choice(["sd", "hd", "hd-xl", "x"]),
        }
        if rng.random() < 0.9:
            metadata["tokens"] = rng.choice(
                [rng.randint(-50, 500), Decimal(rng.randint(-5000, 5000)) / 100, "12"]
            )
        at = NOW - timedelta(seconds=rng.randint(0, int(DAYS.total_seconds()) - 1))
        events.append(
            EventInput(
                f"e{i}",
                rng.choice(cids),
                rng.choice(["api.call", "api.call", "other"]),
                at.isoformat(),
                metadata,
            )
        )
    return events


def ingest(container: Container, events: list[EventInput]) -> None:
    for start in range(0, len(events), 500):
        container.ledger.ingest("default", events[start : start + 500], NOW)


def catch_up(container: Container) -> None:
    container.projector.catch_up()


def follow_usage(container: Container) -> int:
    """The usage projection alone brought to the log's head (the usage log first)."""
    return container.projector.catch_up(names=["usage_log", "usage"])


def live_rows(container: Container) -> list[Any]:
    return list(container.reads.usage.all_buckets())


def test_rebuilding_gives_the_live_rows_and_late_meters_count_old_events(
    make_container: Any,
) -> None:
    container: Container = make_container(backdate_window=DAYS)
    early = {name: make_meter(container, name, *METERS[name]) for name in ("count", "sum")}
    cids = customers(container, 4)
    events = usage_events(cids, 1500, seed=7)
    ingest(container, events[:1000])
    catch_up(container)
    late = {name: make_meter(container, name, *d) for name, d in METERS.items()}
    ingest(container, events[1000:])
    catch_up(container)

    # Every meter, early or late, measures every matching event in the log.
    for name, meter_id in {**early, **late}.items():
        spec = container.ledger.meter_spec("default", meter_id)
        for cid in cids:
            mine = [
                (
                    datetime.fromisoformat(e.timestamp or "").astimezone(UTC),
                    e.event_id,
                    e.event_name,
                    e.metadata or {},
                )
                for e in events
                if e.customer_id == cid
            ]
            report = usage_report(
                container.reads.measure,
                business_id="default",
                meter_id=meter_id,
                spec=spec,
                customer_id=cid,
                start=NOW - DAYS - timedelta(minutes=17),
                end=NOW + timedelta(minutes=1),
                window=Window.DAY,
            )
            assert report.total == fold(spec, mine), (name, cid)

    before = live_rows(container)
    assert before
    assert rebuild(container, "usage") == 1500 + 4 + len(early) + len(late)
    assert live_rows(container) == before
    # The same rows when the log is tallied in two worker processes and merged.
    assert rebuild(container, "usage", workers=2, parallel_from=0) == 1500
    assert live_rows(container) == before
    assert {s.name: s.behind for s in status(container)}["usage"] == 0
    log = container.reads.usage_log
    window = ("default", "api.call", None, NOW - 2 * DAYS, NOW + DAYS)
    events_before = sorted(log.stream_records(*window), key=lambda r: r[1])
    rebuild(container, "usage_log")
    assert sorted(log.stream_records(*window), key=lambda r: r[1]) == events_before


def test_a_redefined_meter_is_measured_again_over_the_whole_log(make_container: Any) -> None:
    container: Container = make_container(backdate_window=DAYS)
    meter_id = make_meter(container, "m", {"type": "count"}, None)
    [cid] = customers(container, 1)
    ingest(container, usage_events([cid], 300, seed=3))
    catch_up(container)
    container.ledger.update_meter(
        "default", meter_id, changes={"aggregation": {"type": "sum", "key": "tokens"}}, now=NOW
    )
    catch_up(container)
    before = live_rows(container)
    rebuild(container, "usage")
    assert live_rows(container) == before
    spec = container.ledger.meter_spec("default", meter_id)
    assert spec.aggregation.to_wire() == {"type": "sum", "key": "tokens"}
    assert {b.tally.total for _, b in before} != {Decimal(b.tally.count) for _, b in before}


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    meter=st.sampled_from(sorted(METERS)),
    count=st.integers(1, 120),
)
def test_the_projection_equals_a_direct_fold_whatever_the_ingestion_order(
    seed: int, meter: str, count: int
) -> None:
    events = usage_events(["cus_a", "cus_b"], count, seed)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    results = []
    for order in (events, shuffled):
        with tempfile.TemporaryDirectory() as tmp:
            container = build(
                Settings(database_url=f"sqlite:///{tmp}/l.sqlite", backdate_window=DAYS),
                FakeClock(),
            )
            try:
                for cid in ("cus_a", "cus_b"):
                    register_with_id(container, cid)
                meter_id = make_meter(container, meter, *METERS[meter])
                for start in range(0, len(order), 37):
                    container.ledger.ingest("default", order[start : start + 37], NOW)
                catch_up(container)
                spec = container.ledger.meter_spec("default", meter_id)
                report = usage_report(
                    container.reads.measure,
                    business_id="default",
                    meter_id=meter_id,
                    spec=spec,
                    customer_id=None,
                    start=NOW - DAYS,
                    end=NOW + timedelta(hours=1),
                    window=Window.HOUR,
                )
                # the tallies; where each hour last changed follows the order, of course
                rows = [(k[2:], b.tally) for k, b in live_rows(container)]
            finally:
                container.close()
        direct = fold(
            MeterSpec.parse("api.call", *METERS[meter]),
            [
                (
                    datetime.fromisoformat(e.timestamp or "").astimezone(UTC),
                    e.event_id,
                    e.event_name,
                    e.metadata or {},
                )
                for e in events
            ],
        )
        assert report.total == direct
        results.append(rows)
    assert results[0] == results[1]


def caught_up(container: Container) -> Container:
    catch_up(container)
    return container


def register_with_id(container: Container, customer_id: str) -> None:
    """A customer with a chosen id, so two stores hold the same events."""
    from domain.customer import Customer  # noqa: PLC0415 - only this helper needs it

    container.ledger.save(
        Customer(
            business_id="default",
            customer_id=customer_id,
            email=f"{customer_id}@x.co",
            name=customer_id,
            phone_number=None,
            metadata={},
            created_at=NOW,
        )
    )


def test_two_processes_following_the_usage_projection_never_count_twice(
    make_container: Any,
) -> None:
    """Two followers (two `serve` instances, say) on one store: no double or lost counts."""
    first: Container = make_container(backdate_window=DAYS)
    second: Container = make_container(backdate_window=DAYS)
    [cid] = customers(first, 1)
    follow_usage(second)  # the second process knows no meter yet
    meter_id = make_meter(first, "count", {"type": "count"}, None)
    events = usage_events([cid], 40, seed=11)
    ingest(first, events[:20])

    # The second process reads a batch, but the first applies it before it does.
    after = second.projector.position("usage")
    batch = second.ledger.recorder.select_notifications(
        start=after, limit=1000, inclusive_of_start=False
    )
    follow_usage(first)
    stale = [second.ledger.mapper.to_domain_event(n) for n in batch]
    tracking = Tracking("ledger", batch[-1].id)
    with pytest.raises(PositionMovedError, match="not at"):
        second.projector.projection("usage").process(Batch(batch, stale), tracking, after)

    # The second process carries on from the new position, with the meter it missed.
    ingest(first, events[20:])
    follow_usage(second)
    follow_usage(first)
    spec = first.ledger.meter_spec("default", meter_id)
    expected = fold(
        spec,
        [
            (
                datetime.fromisoformat(e.timestamp or "").astimezone(UTC),
                e.event_id,
                e.event_name,
                e.metadata or {},
            )
            for e in events
        ],
    )
    report = usage_report(
        caught_up(first).reads.measure,
        business_id="default",
        meter_id=meter_id,
        spec=spec,
        customer_id=cid,
        start=NOW - DAYS - HOUR,
        end=NOW + HOUR,
        window=Window.DAY,
    )
    assert report.total == expected
    assert sum(b.tally.count for _, b in live_rows(first)) == expected

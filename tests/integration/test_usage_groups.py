"""Grouped usage on SQLite and PostgreSQL: the log's records with their customer, and
grouped reports equal to a flat grouping of the same events, for every meter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.ledger import EventInput
from application.usage_groups import CUSTOMER, GroupQuery, grouped_usage
from application.usage_report import Window, usage_report
from domain.grouping import group_tallies, merge_all, rank_groups, tally_by_group
from domain.meter import UsageRecord
from infrastructure.bootstrap import Container
from tests.integration.test_usage_projection import (
    DAYS,
    METERS,
    NOW,
    catch_up,
    customers,
    ingest,
    make_meter,
    usage_events,
)

START = NOW - DAYS - timedelta(minutes=17)  # cuts an hour: edges come from the usage log
END = NOW + timedelta(minutes=1)
VOIDED = {"e3", "e10", "e11"}


Loaded = tuple[Container, list[EventInput]]


@pytest.fixture
def loaded(make_container: Any) -> Loaded:
    """A store of 300 events of 4 customers, 3 of them voided, and the events sent."""
    container: Container = make_container(backdate_window=2 * DAYS)
    events = usage_events(customers(container, 4), 300, seed=7)
    ingest(container, events)
    for event_id in sorted(VOIDED):
        container.ledger.void_usage_event("default", event_id, reason=None, now=NOW)
    catch_up(container)
    return container, events


def records(events: list[EventInput]) -> list[tuple[str, UsageRecord]]:
    """(customer, record) of every api.call event not voided, built from what was sent."""
    return sorted(
        (
            (
                e.customer_id,
                (
                    datetime.fromisoformat(e.timestamp or "").astimezone(UTC),
                    e.event_id,
                    e.event_name,
                    e.metadata or {},
                ),
            )
            for e in events
            if e.event_id not in VOIDED and e.event_name == "api.call"
        ),
        key=lambda item: item[1][1],
    )


def streamed(container: Container, customer_id: str | None, up_to: int | None = None) -> Any:
    found = container.reads.usage_log.stream_customer_records(
        "default", "api.call", customer_id, NOW - 2 * DAYS, NOW + DAYS, up_to
    )
    return sorted(found, key=lambda item: item[1][1])


def test_the_usage_log_streams_each_counted_record_with_its_customer(loaded: Loaded) -> None:
    container, events = loaded
    expected = [(c, r) for c, r in records(events) if r[0] >= NOW - 2 * DAYS]
    assert streamed(container, None) == expected
    customer = expected[0][0]
    assert streamed(container, customer) == [(c, r) for c, r in expected if c == customer]
    assert streamed(container, None, up_to=0) == []


@pytest.mark.parametrize("meter", sorted(METERS))
@pytest.mark.parametrize("group_by", ["model", CUSTOMER])
def test_a_grouped_report_equals_a_flat_grouping_of_the_events(
    loaded: Loaded, meter: str, group_by: str
) -> None:
    container, events = loaded
    meter_id = make_meter(container, meter, *METERS[meter])
    catch_up(container)
    query = GroupQuery("default", meter_id, None, START, END, Window.DAY, group_by, limit=2)
    spec, report = grouped_usage(container.ledger, container.reads, query)

    inside = [(c, r) for c, r in records(events) if START <= r[0] < END]
    if group_by == CUSTOMER:
        flat = tally_by_group(spec, inside)
    else:
        flat = group_tallies(spec, group_by, [r for _, r in inside])
    ranking = rank_groups(flat, spec.aggregation, 2)
    assert [(g.group, g.usage.value, g.usage.events) for g in report.groups] == [
        (g, flat[g].result(spec.aggregation), flat[g].count) for g in ranking.top
    ]
    rest = merge_all(flat[g] for g in ranking.rest)
    assert report.other is not None
    assert (report.other.value, report.other.events) == (
        rest.result(spec.aggregation),
        rest.count,
    )
    plain = usage_report(
        container.reads.measure,
        business_id="default",
        meter_id=meter_id,
        spec=spec,
        customer_id=None,
        start=START,
        end=END,
        window=Window.DAY,
    )
    assert [(w.start, w.usage.value, w.usage.events) for w in report.windows] == [
        (w.start, w.value, w.events) for w in plain.windows
    ]

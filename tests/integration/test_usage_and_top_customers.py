"""The meter page's one read: usage per window and the top customers agree with the
ungrouped usage report for every aggregation, partial hours included."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from application.ledger import EventInput
from application.usage_groups import CUSTOMER, GroupQuery, usage_and_top_customers
from application.usage_report import Window, usage_report

AGGREGATIONS = [
    {"type": "count"},
    {"type": "sum", "key": "tokens"},
    {"type": "max", "key": "tokens"},
    {"type": "unique_count", "key": "model"},
]


@pytest.mark.parametrize("aggregation", AGGREGATIONS, ids=lambda a: a["type"])
@pytest.mark.parametrize("window", [Window.HOUR, Window.DAY])
def test_the_windows_and_top_customers_match_the_usage_report(
    container: Any, clock: Any, aggregation: dict[str, str], window: Window
) -> None:
    ledger = container.ledger
    customers = [
        ledger.register_customer(
            "default",
            email=f"c{i}@example.com",
            name=f"C{i}",
            phone_number=None,
            metadata=None,
            now=clock.now,
        ).customer_id
        for i in range(3)
    ]
    meter = ledger.create_meter(
        "default",
        name="m",
        description=None,
        measurement_unit="u",
        event_name="api.call",
        aggregation=aggregation,
        filter_=None,
        now=clock.now,
    ).meter_id
    events = [
        EventInput(
            f"e{i}",
            customers[i % 3],
            "api.call",
            (clock.now - timedelta(seconds=59 * i)).isoformat(),
            {"tokens": (i * 37) % 101, "model": f"m{i % 5}"},
        )
        for i in range(60)
    ]
    assert ledger.ingest("default", events, clock.now).ingested_count == 60
    container.projector.catch_up()
    start, end = clock.now - timedelta(minutes=43), clock.now + timedelta(minutes=1)
    query = GroupQuery("default", meter, None, start, end, window, CUSTOMER, 2)
    report, grouped = usage_and_top_customers(ledger, container.reads, query)
    expected = usage_report(
        container.reads.measure,
        business_id="default",
        meter_id=meter,
        spec=ledger.meter_spec("default", meter),
        customer_id=None,
        start=start,
        end=end,
        window=window,
    )
    assert report.windows == expected.windows
    assert (report.total, report.events) == (expected.total, expected.events)
    assert len(grouped.groups) == 2
    assert all(g.usage.value >= Decimal(0) for g in grouped.groups)

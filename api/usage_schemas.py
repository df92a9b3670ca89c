"""Wire shapes of a meter's usage grouped by a metadata key or by customer (our extension).

The ungrouped answer is ``api.schemas.MeterUsageRead``; a grouped one adds the
key, the limit, the top groups over the range (``total``), the rest merged into
``other``, and each window's value per top group. ``group`` is the group's
name: the metadata value as text (numbers canonical, booleans ``"true"`` /
``"false"``), a customer's id, or null for the events that lack the key.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from application.usage_groups import GroupedReport
from domain.meter import MeterSpec


class UsageGroupTotalRead(msgspec.Struct):
    """A top group over the whole range."""

    group: str | None
    total: Decimal
    event_count: int


class UsageOtherTotalRead(msgspec.Struct):
    """Every group beyond the top ones, merged, over the whole range."""

    group_count: int
    total: Decimal
    event_count: int


class UsageGroupRead(msgspec.Struct):
    """A top group within one window."""

    group: str | None
    value: Decimal
    event_count: int


class UsageOtherRead(msgspec.Struct):
    """Every group beyond the top ones, merged, within one window."""

    value: Decimal
    event_count: int


class GroupedUsageWindowRead(msgspec.Struct):
    start: datetime
    end: datetime
    value: Decimal
    event_count: int
    groups: list[UsageGroupRead]
    other: UsageOtherRead | None


class GroupedMeterUsageRead(msgspec.Struct):
    """A meter's value per window and group over [start, end): the top ``limit`` groups."""

    meter_id: str
    customer_id: str | None
    start: datetime
    end: datetime
    window: str
    aggregation: dict[str, Any]
    group_by: str
    limit: int
    groups: list[UsageGroupTotalRead]
    other: UsageOtherTotalRead | None
    items: list[GroupedUsageWindowRead]
    total: Decimal
    event_count: int


def grouped_usage_read(spec: MeterSpec, report: GroupedReport) -> GroupedMeterUsageRead:
    query, other = report.query, report.other
    return GroupedMeterUsageRead(
        meter_id=query.meter_id,
        customer_id=query.customer_id,
        start=query.start,
        end=query.end,
        window=query.window.value,
        aggregation=spec.aggregation.to_wire(),
        group_by=query.group_by,
        limit=query.limit,
        groups=[UsageGroupTotalRead(g.group, g.usage.value, g.usage.events) for g in report.groups],
        other=None
        if other is None
        else UsageOtherTotalRead(report.other_groups, other.value, other.events),
        items=[
            GroupedUsageWindowRead(
                w.start,
                w.end,
                w.usage.value,
                w.usage.events,
                [UsageGroupRead(g.group, g.usage.value, g.usage.events) for g in w.groups],
                None if w.other is None else UsageOtherRead(w.other.value, w.other.events),
            )
            for w in report.windows
        ],
        total=report.usage.value,
        event_count=report.usage.events,
    )

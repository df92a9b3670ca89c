"""A subscription's usage history: each billing cycle's metered lines, newest cycle first.

The read side of Dodo's ``GET /subscriptions/{id}/usage-history``. There is one
item per cycle, from the first one up to the open one (the cycle holding
``now``), or up to the last cycle before a cancellation takes effect. Dodo does
not document an order; this ledger lists the newest cycle first, as its other
listings do, so page 0 always holds the cycle being billed now.

A cycle that has been finalized shows the lines of its finalized invoice, the
figures that were billed (usage that reached it later is carried by a later
invoice as an adjustment, invariant 8). Any other cycle shows what finalizing it
now would produce (``application.billing.plan_cycle``), the open one exactly as
``GET .../invoice-preview`` does.

``start`` and ``end`` are inclusive, as Dodo documents them: a cycle is listed
when it overlaps ``[start, end]``. ``meter_id`` keeps that meter's lines only
(a cycle whose price does not meter it shows none); it must name a meter of the
business. Only the requested page is folded, however long the history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from application.billing import plan_cycle
from application.errors import InvalidParameterError
from application.ledger import Ledger
from application.reads import CATALOGUE, USAGE, USAGE_LOG, Reads
from application.subscriptions import load
from domain.cycles import Cycle
from domain.invoice_record import InvoiceRecord, invoice_aggregate_id, invoice_id_of
from domain.subscription import Subscription


@dataclass(frozen=True, slots=True)
class MeterUsage:
    """One meter's line of a cycle; units are canonical decimal text, the price in minor units."""

    meter_id: str
    name: str
    consumed_units: str
    chargeable_units: str
    free_threshold: int
    price_per_unit: str
    currency: str
    total_price: int


@dataclass(frozen=True, slots=True)
class CycleUsage:
    start: datetime
    end: datetime
    meters: tuple[MeterUsage, ...]


@dataclass(frozen=True, slots=True)
class UsageHistoryQuery:
    business_id: str
    subscription_id: str
    start: datetime | None = None
    end: datetime | None = None
    meter_id: str | None = None
    page_number: int = 0
    page_size: int = 10


def usage_history(
    ledger: Ledger, reads: Reads, query: UsageHistoryQuery, *, now: datetime
) -> list[CycleUsage]:
    """One page of the subscription's cycles, newest first."""
    if query.start is not None and query.end is not None and query.start > query.end:
        raise InvalidParameterError("start_date must not be after end_date")
    reads.fresh(CATALOGUE, USAGE_LOG, USAGE)
    subscription = load(ledger, query.business_id, query.subscription_id)
    if query.meter_id is not None:
        ledger.meter(query.business_id, query.meter_id)  # another business's: not found
    listed = cycle_indexes(subscription, now, query.start, query.end)
    first = query.page_number * query.page_size
    page = listed[first : first + query.page_size]
    names: dict[str, str] = {}

    def name_of(meter_id: str) -> str:
        if meter_id not in names:
            names[meter_id] = ledger.meter(query.business_id, meter_id).name
        return names[meter_id]

    history = []
    for cycle_index in page:
        cycle = subscription.cycle(cycle_index)
        document = _invoice_document(ledger, reads, subscription, cycle, now=now)
        meters = tuple(
            _meter_usage(line, document["currency"], name_of(line["meter_id"]))
            for line in document["lines"]
            if query.meter_id in (None, line["meter_id"])
        )
        history.append(CycleUsage(cycle.start, cycle.end, meters))
    return history


def cycle_indexes(
    subscription: Subscription, now: datetime, start: datetime | None, end: datetime | None
) -> range:
    """Indexes of the cycles listed, newest first: begun by ``now``, overlapping [start, end]."""
    last = subscription.cycle_at(now).index
    ends_at = subscription.ends_at
    if ends_at is not None:  # a boundary: the cycle it starts is the first one not billed
        last = min(last, subscription.cycle_at(ends_at).index - 1)
    if end is not None:
        if end < subscription.started_at:
            return range(0)
        # Clamped to ``now``: no cycle after the open one is listed, so none past it is computed.
        last = min(last, subscription.cycle_at(min(end, now)).index)
    first = 0
    if start is not None:
        if start >= subscription.cycle(last).end:
            return range(0)
        first = subscription.cycle_at(start).index
    return range(last, first - 1, -1)


def _invoice_document(
    ledger: Ledger, reads: Reads, subscription: Subscription, cycle: Cycle, *, now: datetime
) -> dict[str, Any]:
    """The cycle's canonical invoice: the finalized one if there is one, else planned now."""
    business_id = subscription.business_id
    invoice_id = invoice_id_of(business_id, subscription.subscription_id, cycle.index)
    record = ledger.load(InvoiceRecord, invoice_aggregate_id(business_id, invoice_id))
    if record is not None:
        text = record.document
    else:
        ids = (business_id, subscription.subscription_id)
        plan = plan_cycle(ledger, reads, *ids, cycle.index, now)
        text = plan.invoice.canonical_bytes().decode()
    document: dict[str, Any] = json.loads(text)
    return document


def _meter_usage(line: dict[str, Any], currency: str, name: str) -> MeterUsage:
    # The canonical invoice (domain.invoice) spells each decimal one way only.
    return MeterUsage(
        meter_id=line["meter_id"],
        name=name,
        consumed_units=line["consumed"],
        chargeable_units=line["chargeable"],
        free_threshold=line["free_threshold"],
        price_per_unit=line["unit_price"],
        currency=currency,
        total_price=line["amount_minor"],
    )

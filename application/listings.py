"""Listings and usage queries, read from the read models once they have the request's writes.

Each waits (a little, ``LEDGER_READ_WAIT``) until the projections it reads have
reached the log's head as of the request, then reads them; none reads the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from application.credit_balances import BalanceQuery, GrantQuery, LedgerQuery
from application.errors import UnavailableError
from application.ledger import Ledger
from application.measure import DefinitionMovedError
from application.reads import CATALOGUE, CREDITS, USAGE, USAGE_LOG, Reads
from application.usage_report import UsageReport, Window, usage_report
from application.views import (
    CustomerQuery,
    CustomerView,
    EventQuery,
    InvoiceQuery,
    InvoiceView,
    MeterQuery,
    MeterView,
    ProductQuery,
    ProductView,
    UsageEventView,
    WebhookView,
)
from domain.meter import MeterSpec

MAX_ATTEMPTS = 3
SCAN = 1000  # rows read per step when a meter's filter picks the events
MAX_SCAN = 1_000_000  # rows one page of a meter's events may look at, at most
JsonRows = list[dict[str, Any]]


def customers(reads: Reads, query: CustomerQuery) -> list[CustomerView]:
    reads.fresh(CATALOGUE)
    return reads.catalogue.list_customers(query)


def customer_names(reads: Reads, business_id: str, ids: Sequence[str]) -> dict[str, str]:
    """The names of the business's customers ``ids`` in one read (an unknown id names
    itself)."""
    reads.fresh(CATALOGUE)
    found = reads.catalogue.customers_by_id(business_id, set(ids))
    return {i: found[i].name if i in found else i for i in ids}


def meters(reads: Reads, query: MeterQuery) -> list[MeterView]:
    reads.fresh(CATALOGUE)
    return reads.catalogue.list_meters(query)


def products(reads: Reads, query: ProductQuery) -> list[ProductView]:
    if query.recurring is False or query.brand_id not in (None, query.business_id):
        return []  # every product here is recurring, and its brand is its business
    reads.fresh(CATALOGUE)
    return reads.catalogue.list_products(query)


def invoices(reads: Reads, query: InvoiceQuery) -> list[InvoiceView]:
    reads.fresh(CATALOGUE)
    return reads.catalogue.list_invoices(query)


def events(
    ledger: Ledger, reads: Reads, query: EventQuery, meter_id: str | None = None
) -> list[UsageEventView]:
    """One page of usage events, newest first; with ``meter_id``, those the meter counts."""
    spec = None if meter_id is None else ledger.meter_spec(query.business_id, meter_id)
    reads.fresh(USAGE_LOG)
    if spec is None:
        return reads.usage_log.list_events(query)
    return events_counted(reads, query, spec)


def events_counted(reads: Reads, query: EventQuery, spec: MeterSpec) -> list[UsageEventView]:
    """One page of the events ``spec`` counts, newest first, among those ``query`` selects.

    The meter's name narrows the rows by index; its filter is the meter's own
    code, run on them. A voided event counts for no meter.
    """
    if query.event_name not in (None, spec.event_name) or query.voided:
        return []
    wanted = range(query.page_number * query.page_size, (query.page_number + 1) * query.page_size)
    found: list[UsageEventView] = []
    matched = offset = read = 0
    size = min(max(2 * wanted.stop, 50), SCAN)  # most meters count most events: start small
    base = replace(query, event_name=spec.event_name, voided=False)
    while read < MAX_SCAN:
        batch = reads.usage_log.list_events_from(base, offset, size)
        for view in batch:
            if spec.measure(view.event_name, view.metadata) is None:
                continue
            if matched in wanted:
                found.append(view)
            matched += 1
            if matched >= wanted.stop:
                return found
        if len(batch) < size:
            break
        offset, read, size = offset + size, read + size, min(2 * size, SCAN)
    return found


def meter_usage(
    ledger: Ledger,
    reads: Reads,
    *,
    business_id: str,
    meter_id: str,
    customer_id: str | None,
    start: datetime,
    end: datetime,
    window: Window,
) -> tuple[MeterSpec, UsageReport]:
    """The meter's value per window over ``[start, end)`` and its definition."""
    reads.fresh(USAGE_LOG, USAGE)
    for _ in range(MAX_ATTEMPTS):
        spec = ledger.meter_spec(business_id, meter_id)
        try:
            report = usage_report(
                reads.measure,
                business_id=business_id,
                meter_id=meter_id,
                spec=spec,
                customer_id=customer_id,
                start=start,
                end=end,
                window=window,
            )
        except DefinitionMovedError:  # redefined meanwhile: read it again
            continue
        return spec, report
    raise UnavailableError(f"meter {meter_id!r} keeps being redefined; try again")


def webhooks(
    reads: Reads, business_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[WebhookView]:
    reads.fresh(CATALOGUE)
    return reads.catalogue.list_webhooks(business_id, after, limit)


def balances(reads: Reads, query: BalanceQuery) -> JsonRows:
    reads.fresh(CREDITS)
    return reads.credits.balances(query)


def grants(reads: Reads, query: GrantQuery) -> JsonRows:
    reads.fresh(CREDITS)
    return reads.credits.grants(query)


def ledger_entries(reads: Reads, query: LedgerQuery) -> JsonRows:
    reads.fresh(CREDITS)
    return reads.credits.entries(query)

"""The customer portal: a link for one customer, and the read-only page it opens.

``open_portal_session`` is the SDK's ``customers.customer_portal.create``: it
checks the customer is the caller's and signs a link (``application.portal_link``).
``customer_portal`` opens such a link and reads everything the page shows, for
the customer the link names and nothing else: the open cycle of each active
subscription with its usage per meter and per day and its invoice so far
(``billing.invoice_preview``, what finalizing now would bill), the credit
balances with their latest ledger entries, and the finalized invoices.
Every read is scoped by the link's business and customer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from application import listings
from application.billing import invoice_preview
from application.credit_balances import LedgerQuery
from application.customers import customer_credits
from application.errors import InvalidRequestError
from application.ledger import Ledger
from application.portal_link import PortalClaims, PortalLinks, check_return_url
from application.reads import CATALOGUE, CREDITS, USAGE, USAGE_LOG, Reads
from application.subscription_reads import list_subscriptions
from application.usage_report import UsageWindow, Window, usage_reports
from application.views import CustomerView, InvoiceQuery, MeterView, SubscriptionQuery

MAX_SUBSCRIPTIONS = 20  # active subscriptions shown, newest first
MAX_INVOICES = 24  # finalized invoices shown, newest cycle first
MAX_ENTRIES = 10  # ledger entries shown per credit entitlement, newest first


@dataclass(frozen=True, slots=True)
class PortalLine:
    """One meter's line of an invoice; units are exact, ``unit_price`` in minor units."""

    meter_id: str
    name: str
    consumed: Decimal
    free_threshold: int
    credits_applied: Decimal
    billed_units: Decimal
    unit_price: Decimal
    amount_minor: int
    priced_per_unit: bool  # False: tiers, packages or prices per value decide the amount


@dataclass(frozen=True, slots=True)
class PortalInvoice:
    cycle_start: datetime
    cycle_end: datetime
    currency: str
    fixed_price_minor: int
    adjustments_minor: int
    total_minor: int
    lines: tuple[PortalLine, ...]
    finalized_at: datetime | None = None  # None: the open cycle, so far


@dataclass(frozen=True, slots=True)
class PortalMeterUsage:
    meter_id: str
    name: str
    unit: str
    total: Decimal
    days: tuple[UsageWindow, ...]  # each UTC day of the cycle, the last ones still to come


@dataclass(frozen=True, slots=True)
class PortalSubscription:
    subscription_id: str
    product_name: str
    usage: tuple[PortalMeterUsage, ...]
    preview: PortalInvoice


@dataclass(frozen=True, slots=True)
class PortalEntry:
    created_at: datetime
    transaction_type: str
    is_credit: bool
    amount: Decimal
    balance_after: Decimal
    description: str | None


@dataclass(frozen=True, slots=True)
class PortalCredit:
    name: str
    unit: str
    balance: Decimal
    overage: Decimal
    entries: tuple[PortalEntry, ...]
    entitlement_id: str = ""


@dataclass(frozen=True, slots=True)
class PortalPage:
    customer: CustomerView
    claims: PortalClaims
    now: datetime
    subscriptions: tuple[PortalSubscription, ...]
    credits: tuple[PortalCredit, ...]
    invoices: tuple[PortalInvoice, ...]

    @property
    def next_invoice_at(self) -> datetime | None:
        """When the soonest open cycle closes and its invoice is issued; None: no cycle."""
        return min((s.preview.cycle_end for s in self.subscriptions), default=None)


def open_portal_session(
    ledger: Ledger,
    links: PortalLinks,
    business_id: str,
    customer_id: str,
    *,
    return_url: str | None,
    send_email: bool | None,
    now: datetime,
) -> str:
    """A portal token for the business's customer (another business's: not found)."""
    if send_email:
        raise InvalidRequestError(
            "send_email: this ledger sends no email; send the link to the customer yourself",
            param="send_email",
        )
    checked = check_return_url(return_url)
    ledger.customer(business_id, customer_id)  # NotFoundError for another business's
    token, _ = links.issue(business_id, customer_id, now, checked)
    return token


def customer_portal(
    ledger: Ledger, reads: Reads, links: PortalLinks, token: str, *, now: datetime
) -> PortalPage:
    """What the link ``token`` shows now; ``PortalLinkError`` when it is not valid."""
    claims = links.open(token, now)
    business_id, customer_id = claims.business_id, claims.customer_id
    reads.fresh(CATALOGUE, USAGE_LOG, USAGE, CREDITS)
    customer = ledger.customer(business_id, customer_id)
    query = SubscriptionQuery(
        business_id, customer_id=customer_id, status="active", page_size=MAX_SUBSCRIPTIONS
    )
    listed = list_subscriptions(reads, query, now)
    subscriptions = tuple(
        open_cycle(ledger, reads, customer, s.subscription.subscription_id, s.product.name, now)
        for s in listed
    )
    finalized = listings.invoices(
        reads, InvoiceQuery(business_id, customer_id=customer_id, page_size=MAX_INVOICES)
    )
    documents = [(json.loads(view.document), view.finalized_at) for view in finalized]
    meters = meters_of(reads, business_id, documents)
    invoices = tuple(invoice_of(document, meters, at) for document, at in documents)
    credits = credit_balances(reads, business_id, customer_id)
    return PortalPage(customer, claims, now, subscriptions, credits, invoices)


def open_cycle(
    ledger: Ledger,
    reads: Reads,
    customer: CustomerView,
    subscription_id: str,
    product_name: str,
    now: datetime,
) -> PortalSubscription:
    """The customer's open cycle of the subscription: usage per meter and per day, and its
    invoice so far (``billing.invoice_preview``); the dashboard's customer page shows it too."""
    business_id = customer.business_id
    _, invoice = invoice_preview(ledger, reads, business_id, subscription_id, now=now)
    document = json.loads(invoice.canonical_bytes())
    meters = meters_of(reads, business_id, [(document, None)])
    specs = {line.meter_id: ledger.meter_spec(business_id, line.meter_id) for line in invoice.lines}
    reports = usage_reports(
        reads.measure,
        business_id=business_id,
        specs=specs,
        customer_id=customer.customer_id,
        start=invoice.cycle_start,
        end=invoice.cycle_end,
        window=Window.DAY,
    )
    usage = []
    for line in invoice.lines:
        report = reports[line.meter_id]
        meter = meters.get(line.meter_id)
        name, unit = (meter.name, meter.measurement_unit) if meter else (line.meter_id, "")
        usage.append(PortalMeterUsage(line.meter_id, name, unit, report.total, report.windows))
    return PortalSubscription(
        subscription_id, product_name, tuple(usage), invoice_of(document, meters, None)
    )


def meters_of(
    reads: Reads, business_id: str, documents: Sequence[tuple[dict[str, Any], datetime | None]]
) -> dict[str, MeterView]:
    ids = {line["meter_id"] for document, _ in documents for line in document["lines"]}
    return reads.catalogue.meters_by_id(business_id, ids)


def invoice_of(
    document: dict[str, Any], meters: dict[str, MeterView], finalized_at: datetime | None
) -> PortalInvoice:
    """An invoice from its canonical document (``domain.invoice``), the meters named."""
    lines = tuple(
        PortalLine(
            meter_id=line["meter_id"],
            name=meter.name if (meter := meters.get(line["meter_id"])) else line["meter_id"],
            consumed=Decimal(line["consumed"]),
            free_threshold=int(line["free_threshold"]),
            credits_applied=Decimal(line.get("credits_applied", "0")),
            billed_units=Decimal(line.get("billed_units", line["chargeable"])),
            unit_price=Decimal(line["unit_price"]),
            amount_minor=int(line["amount_minor"]),
            priced_per_unit="pricing_model" not in line and "group_by" not in line,
        )
        for line in document["lines"]
    )
    cycle = document["cycle"]
    return PortalInvoice(
        cycle_start=datetime.fromisoformat(cycle["start"]),
        cycle_end=datetime.fromisoformat(cycle["end"]),
        currency=document["currency"],
        fixed_price_minor=int(document["fixed_price_minor"]),
        adjustments_minor=sum(int(a["total_minor"]) for a in document["adjustments"]),
        total_minor=int(document["total_minor"]),
        lines=lines,
        finalized_at=finalized_at,
    )


def credit_balances(
    reads: Reads, business_id: str, customer_id: str, limit: int = MAX_ENTRIES
) -> tuple[PortalCredit, ...]:
    """The customer's balance under each entitlement and its latest ``limit`` ledger
    entries, newest first."""
    found = []
    for credit in customer_credits(reads, business_id, customer_id):
        query = LedgerQuery(business_id, credit.entitlement_id, customer_id, page_size=limit)
        entries = tuple(
            PortalEntry(
                created_at=datetime.fromisoformat(row["created_at"]),
                transaction_type=row["transaction_type"],
                is_credit=bool(row["is_credit"]),
                amount=Decimal(row["amount"]),
                balance_after=Decimal(row["balance_after"]),
                description=row.get("description"),
            )
            for row in listings.ledger_entries(reads, query)
        )
        found.append(
            PortalCredit(
                credit.name,
                credit.unit,
                Decimal(credit.balance),
                Decimal(credit.overage),
                entries,
                credit.entitlement_id,
            )
        )
    return tuple(found)

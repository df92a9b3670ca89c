"""A finalized invoice as the dashboard shows it, and its re-fold from the log.

``invoice_page`` reads the invoice record (``billing.invoice_record``, scoped by
business: another business's id is not found) and its canonical document: the
lines as billed with their tier or group sub-lines, the credit grants drawn in
drawdown order (the document's order), the overage, and the adjustments of
earlier cycles it carries, each with the cycle and invoice it corrects.
``refold_invoice`` runs the audit's check of one invoice
(``audit.check_invoice``): folded again flat from the log at its cut, its bytes,
its SHA-256 and its log digest compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from application import listings
from application.audit import Mismatch, check_invoice
from application.billing import invoice_record
from application.catalogue import invoice_view
from application.explain import explain_invoice
from application.ledger import Ledger
from application.reads import CATALOGUE, Reads
from application.subscriptions import load
from application.views import (
    CustomerView,
    EventQuery,
    InvoiceQuery,
    InvoiceView,
    MeterView,
    UsageEventView,
)
from domain.cycles import Cycle
from domain.invoice_record import InvoiceRecord, invoice_id_of


@dataclass(frozen=True, slots=True)
class TierRow:
    up_to: Decimal | None  # None: no upper bound
    price_per_unit: Decimal
    flat_fee: int
    units: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class SubLineRow:
    """One value of a grouped line (``group_by``)."""

    value: str
    consumed: Decimal
    billed_units: Decimal
    unit_price: Decimal
    amount_minor: int
    pricing_model: str


@dataclass(frozen=True, slots=True)
class LineRow:
    """One meter's line; units exact, ``unit_price`` in minor units."""

    meter_id: str
    name: str
    consumed: Decimal
    free_threshold: int
    chargeable: Decimal
    credits_applied: Decimal
    billed_units: Decimal
    unit_price: Decimal
    amount_minor: int
    pricing_model: str | None  # None: a plain price per unit
    group_by: str | None
    tiers: tuple[TierRow, ...]
    sub_lines: tuple[SubLineRow, ...]


@dataclass(frozen=True, slots=True)
class DrawRow:
    """A grant drawn, in drawdown order (soonest expiry, oldest grant, id)."""

    order: int
    meter_name: str
    entitlement_id: str
    grant_id: str
    credits: Decimal


@dataclass(frozen=True, slots=True)
class OverageRow:
    meter_name: str
    entitlement_id: str
    credits: Decimal
    billed_credits: Decimal


@dataclass(frozen=True, slots=True)
class AdjustmentRow:
    """A correction of an earlier cycle: its fold at ``to_cut`` minus its fold at ``from_cut``."""

    cycle_start: datetime
    cycle_end: datetime
    cycle_index: int | None
    invoice_id: str | None  # the invoice it corrects
    from_cut: int
    to_cut: int
    lines: tuple[LineRow, ...]
    total_minor: int


@dataclass(frozen=True, slots=True)
class InvoicePage:
    invoice: InvoiceView
    customer: CustomerView
    product_id: str
    product_name: str
    fixed_price_minor: int
    lines: tuple[LineRow, ...]
    draws: tuple[DrawRow, ...]
    overage: tuple[OverageRow, ...]
    adjustments: tuple[AdjustmentRow, ...]
    log_digest: str


@dataclass(frozen=True, slots=True)
class Refold:
    """The invoice folded again from the log: ``ok`` when nothing differs."""

    recorded_sha256: str
    refolded_sha256: str
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches


@dataclass(frozen=True, slots=True)
class InvoiceListing:
    invoice: InvoiceView
    customer: CustomerView | None  # None: the catalogue has not caught up with it


@dataclass(frozen=True, slots=True)
class ExplainPage:
    """``explain.explain_invoice``'s explanation, with a page of the events one line counted."""

    explained: dict[str, Any]
    meter_id: str | None  # the line whose events are sampled; None: no metered line
    sample: tuple[UsageEventView, ...]


def invoice_list(reads: Reads, query: InvoiceQuery) -> list[InvoiceListing]:
    """A page of finalized invoices, newest cycle first, with their customers."""
    found = listings.invoices(reads, query)
    customers = reads.catalogue.customers_by_id(query.business_id, {v.customer_id for v in found})
    return [InvoiceListing(view, customers.get(view.customer_id)) for view in found]


def explain_page(
    ledger: Ledger,
    reads: Reads,
    business_id: str,
    invoice_id: str,
    *,
    meter_id: str | None,
    page_number: int,
    page_size: int,
) -> ExplainPage:
    """The explanation, and page ``page_number`` of the cycle's events that ``meter_id``'s
    meter counts (the first line's by default), newest first. The sample is read from the
    usage log as it is now: an event recorded after the invoice's cut is listed too (the
    invoice did not count it; a later invoice carries it as an adjustment)."""
    explained = explain_invoice(ledger, reads, business_id, invoice_id)
    ids = [line["meter"]["meter_id"] for line in explained["lines"]]
    chosen = meter_id if meter_id in ids else next(iter(ids), None)
    sample: tuple[UsageEventView, ...] = ()
    if chosen is not None:
        query = EventQuery(
            business_id,
            customer_id=explained["customer_id"],
            start=explained["cycle_start"],
            end=explained["cycle_end"],
            page_number=page_number,
            page_size=page_size,
            voided=False,
        )
        sample = tuple(listings.events(ledger, reads, query, chosen))
    return ExplainPage(explained, chosen, sample)


def invoice_page(ledger: Ledger, reads: Reads, business_id: str, invoice_id: str) -> InvoicePage:
    record = invoice_record(ledger, business_id, invoice_id)
    document: dict[str, Any] = json.loads(record.document)
    subscription = load(ledger, business_id, record.subscription_id)
    reads.fresh(CATALOGUE)
    ids = {line["meter_id"] for line in document["lines"]} | {
        line["meter_id"] for item in document["adjustments"] for line in item["lines"]
    }
    meters = reads.catalogue.meters_by_id(business_id, ids)
    products = reads.catalogue.products_by_id(business_id, [subscription.product_id])
    product = products.get(subscription.product_id)
    return InvoicePage(
        invoice=invoice_view(record),
        customer=ledger.customer(business_id, record.customer_id),
        product_id=subscription.product_id,
        product_name=product.name if product else subscription.product_id,
        fixed_price_minor=int(document["fixed_price_minor"]),
        lines=tuple(_line(line, meters) for line in document["lines"]),
        draws=tuple(
            DrawRow(
                order=i + 1,
                meter_name=_name(draw["meter_id"], meters),
                entitlement_id=draw["credit_entitlement_id"],
                grant_id=draw["grant_id"],
                credits=Decimal(draw["credits"]),
            )
            for i, draw in enumerate(document["credit_draws"])
        ),
        overage=tuple(
            OverageRow(
                _name(item["meter_id"], meters),
                item["credit_entitlement_id"],
                Decimal(item["credits"]),
                Decimal(item["billed_credits"]),
            )
            for item in document["credit_overage"]
        ),
        adjustments=tuple(
            _adjustment(item, record, meters, subscription.cycle)
            for item in document["adjustments"]
        ),
        log_digest=record.log_digest,
    )


def refold_invoice(ledger: Ledger, reads: Reads, business_id: str, invoice_id: str) -> Refold:
    """``ledger audit verify``'s check of this one invoice."""
    record = invoice_record(ledger, business_id, invoice_id)
    again, mismatches = check_invoice(ledger, reads, record)
    return Refold(record.sha256, again.sha256, tuple(mismatches))


def _name(meter_id: str, meters: Mapping[str, MeterView]) -> str:
    meter = meters.get(meter_id)
    return meter.name if meter is not None else meter_id


def _line(line: Mapping[str, Any], meters: Mapping[str, MeterView]) -> LineRow:
    """A line of the document, or of an adjustment (which has only the differences)."""
    return LineRow(
        meter_id=line["meter_id"],
        name=_name(line["meter_id"], meters),
        consumed=Decimal(line["consumed"]),
        free_threshold=int(line.get("free_threshold", 0)),
        chargeable=Decimal(line["chargeable"]),
        credits_applied=Decimal(line.get("credits_applied", "0")),
        billed_units=Decimal(line.get("billed_units", line["chargeable"])),
        unit_price=Decimal(line.get("unit_price", "0")),
        amount_minor=int(line["amount_minor"]),
        pricing_model=line.get("pricing_model"),
        group_by=line.get("group_by"),
        tiers=_tiers(line.get("tiers", ())),
        sub_lines=tuple(
            SubLineRow(
                value=str(sub["value"]),
                consumed=Decimal(sub["consumed"]),
                billed_units=Decimal(sub["billed_units"]),
                unit_price=Decimal(sub["unit_price"]),
                amount_minor=int(sub["amount_minor"]),
                pricing_model=sub.get("pricing_model", ""),
            )
            for sub in line.get("sub_lines", ())
        ),
    )


def _tiers(tiers: Any) -> tuple[TierRow, ...]:
    return tuple(
        TierRow(
            up_to=None if tier["up_to"] is None else Decimal(tier["up_to"]),
            price_per_unit=Decimal(tier["price_per_unit"]),
            flat_fee=int(tier["flat_fee"]),
            units=Decimal(tier["units"]),
            amount=Decimal(tier["amount"]),
        )
        for tier in tiers
    )


def _adjustment(
    item: Mapping[str, Any],
    record: InvoiceRecord,
    meters: Mapping[str, MeterView],
    cycle_of: Callable[[int], Cycle],
) -> AdjustmentRow:
    start = datetime.fromisoformat(item["cycle"]["start"])
    index = next((int(i) for i in record.adjusted if cycle_of(int(i)).start == start), None)
    corrects = (
        None if index is None else invoice_id_of(record.business_id, record.subscription_id, index)
    )
    return AdjustmentRow(
        cycle_start=start,
        cycle_end=datetime.fromisoformat(item["cycle"]["end"]),
        cycle_index=index,
        invoice_id=corrects,
        from_cut=int(item["from_cut"]),
        to_cut=int(item["to_cut"]),
        lines=tuple(_line(line, meters) for line in item["lines"]),
        total_minor=int(item["total_minor"]),
    )

"""Invoices: each cycle folded from its events at the price in force when it began."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from application.ledger import Ledger
from application.ports import EventIndex
from application.subscriptions import load
from domain.cycles import Cycle
from domain.invoice import Invoice, fold_invoice
from domain.meter import UsageRecord
from domain.subscription import Subscription


def invoice_of(
    ledger: Ledger, index: EventIndex, subscription: Subscription, cycle: Cycle, cut: int
) -> Invoice:
    """The invoice of one cycle of ``subscription``, from the events the index holds.

    The product's price as it stood at the cycle's start; the fixed price counts
    once per unit of ``quantity``; each priced meter measured over the
    customer's events of the cycle.
    """
    business_id = subscription.business_id
    product = ledger.load_product(business_id, subscription.product_id)
    price = product.price_at(cycle.start)
    price = replace(price, fixed_price=price.fixed_price * subscription.quantity)
    specs = {m.meter_id: ledger.meter_spec(business_id, m.meter_id) for m in price.meters}
    names = sorted({spec.event_name for spec in specs.values()})

    def records() -> Iterator[UsageRecord]:
        for name in names:
            for e in index.scan_events(
                business_id, name, subscription.customer_id, cycle.start, cycle.end
            ):
                yield (e.timestamp, e.event_id, e.event_name, e.metadata)

    return fold_invoice(cycle, price, specs, records(), cut=cut)


def invoice_preview(
    ledger: Ledger,
    index: EventIndex,
    business_id: str,
    subscription_id: str,
    *,
    now: datetime,
    cut: int,
) -> tuple[Subscription, Invoice]:
    """The open cycle's invoice so far."""
    subscription = load(ledger, business_id, subscription_id)
    return subscription, invoice_of(ledger, index, subscription, subscription.cycle_at(now), cut)


def invoice_document(subscription: Subscription, invoice: Invoice) -> dict[str, Any]:
    """The canonical invoice, with who it is for and the SHA-256 of its bytes."""
    document: dict[str, Any] = json.loads(invoice.canonical_bytes())
    return {
        "subscription_id": subscription.subscription_id,
        "customer_id": subscription.customer_id,
        "product_id": subscription.product_id,
        "invoice": document,
        "sha256": invoice.sha256,
    }

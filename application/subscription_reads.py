"""Subscriptions as they are read: one with its meters and credit, a page of them, and
what credit its entitlements have left.

The subscription itself is the aggregate (one by id) or the catalogue's row (a
page); its customer, product, meters and entitlements come from the catalogue
and the balances from the balance projection, once both have the request's
writes. Nothing here reads the log or writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from application.errors import UnavailableError
from application.ledger import Ledger
from application.reads import CATALOGUE, CREDITS, Reads
from application.subscriptions import SubscriptionView, subscription, view_at
from application.views import CustomerView, MeterView, ProductView, SubscriptionQuery

MAX_ACCOUNTS = 1000  # a customer's credit accounts read for one subscription, at most
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class MeterLine:
    """A meter the subscription's product prices, named as the catalogue names it."""

    meter_id: str
    name: str
    measurement_unit: str
    description: str | None
    price_per_unit: str
    free_threshold: int
    credit_entitlement_id: str | None
    meter_units_per_credit: str | None


@dataclass(frozen=True, slots=True)
class CreditLine:
    """An entitlement the product attaches: its terms and the customer's balance under it."""

    entitlement_id: str
    name: str
    unit: str
    credits_amount: str
    balance: Decimal
    overage: Decimal
    terms: Mapping[str, Any]  # the attachment's resolved rules (overage, rollover, expiry)

    @property
    def overage_enabled(self) -> bool:
        return bool(self.terms.get("overage_enabled"))

    @property
    def overage_limit(self) -> Decimal | None:
        limit = self.terms.get("overage_limit")
        return None if limit is None else Decimal(str(limit))

    @property
    def headroom(self) -> Decimal | None:
        """Overage that may still accrue; None when there is no overage or no limit."""
        limit = self.overage_limit
        if not self.overage_enabled or limit is None:
            return None
        return max(limit - self.overage, _ZERO)

    @property
    def limit_reached(self) -> bool:
        return self.headroom == _ZERO


@dataclass(frozen=True, slots=True)
class SubscriptionListing:
    subscription: SubscriptionView
    customer: CustomerView
    product: ProductView


@dataclass(frozen=True, slots=True)
class SubscriptionDetails:
    subscription: SubscriptionView
    customer: CustomerView
    product: ProductView
    meters: tuple[MeterLine, ...]
    credits: tuple[CreditLine, ...]


def subscription_details(
    ledger: Ledger, reads: Reads, business_id: str, subscription_id: str, now: datetime
) -> SubscriptionDetails:
    return details_of(reads, subscription(ledger, business_id, subscription_id, now))


def details_of(reads: Reads, view: SubscriptionView) -> SubscriptionDetails:
    """The subscription with its customer, product, meters and credit cart."""
    reads.fresh(CATALOGUE, CREDITS)
    [listed] = _listings(reads, view.business_id, [view])
    price = listed.product.price
    return SubscriptionDetails(
        subscription=view,
        customer=listed.customer,
        product=listed.product,
        meters=meter_lines(reads, view.business_id, price["meters"]),
        credits=credit_lines(reads, view.business_id, view.customer_id, price),
    )


def list_subscriptions(
    reads: Reads, query: SubscriptionQuery, now: datetime
) -> list[SubscriptionListing]:
    """A page of subscriptions, newest first, with their customers and products."""
    if query.brand_id not in (None, query.business_id):
        return []
    reads.fresh(CATALOGUE)
    views = [view_at(s, now) for s in reads.catalogue.list_subscriptions(query, now)]
    return _listings(reads, query.business_id, views)


def credit_usage(
    ledger: Ledger, reads: Reads, business_id: str, subscription_id: str, now: datetime
) -> tuple[CreditLine, ...]:
    """Each entitlement the subscription's product attaches, with the customer's balance
    and overage under it (customer-wide, as the credit API shows them)."""
    view = subscription(ledger, business_id, subscription_id, now)
    reads.fresh(CATALOGUE, CREDITS)
    [listed] = _listings(reads, business_id, [view])
    return credit_lines(reads, business_id, view.customer_id, listed.product.price)


def meter_lines(
    reads: Reads, business_id: str, priced: Sequence[Mapping[str, Any]]
) -> tuple[MeterLine, ...]:
    meters = reads.catalogue.meters_by_id(business_id, [m["meter_id"] for m in priced])
    return tuple(_meter_line(m, meters.get(m["meter_id"])) for m in priced)


def _meter_line(priced: Mapping[str, Any], meter: MeterView | None) -> MeterLine:
    if meter is None:  # a product's meters exist; a catalogue behind the log lacks one
        raise UnavailableError("the catalogue is catching up with the log; try again")
    return MeterLine(
        meter_id=meter.meter_id,
        name=meter.name,
        measurement_unit=meter.measurement_unit,
        description=meter.description,
        price_per_unit=priced.get("price_per_unit", "0"),  # absent for tiers and packages
        free_threshold=priced["free_threshold"],
        credit_entitlement_id=priced.get("credit_entitlement_id"),
        meter_units_per_credit=priced.get("meter_units_per_credit"),
    )


def credit_lines(
    reads: Reads, business_id: str, customer_id: str, price: Mapping[str, Any]
) -> tuple[CreditLine, ...]:
    attached: list[Mapping[str, Any]] = price.get("credit_entitlements", [])
    if not attached:
        return ()
    rows = reads.credits.customer_balances(business_id, customer_id, MAX_ACCOUNTS)
    balances = {row["credit_entitlement_id"]: row for row in rows}
    ids = [a["credit_entitlement_id"] for a in attached]
    entitlements = reads.catalogue.entitlements_by_id(business_id, ids)
    lines = []
    for terms in attached:
        entitlement_id = terms["credit_entitlement_id"]
        found = entitlements.get(entitlement_id)  # its name and unit now, else as attached
        settings = found.settings if found is not None else {}
        row = balances.get(entitlement_id, {})
        lines.append(
            CreditLine(
                entitlement_id=entitlement_id,
                name=settings.get("name", terms["credit_entitlement_name"]),
                unit=settings.get("unit", terms["credit_entitlement_unit"]),
                credits_amount=terms["credits_amount"],
                balance=Decimal(row.get("balance", "0")),
                overage=Decimal(row.get("overage", "0")),
                terms=terms,
            )
        )
    return tuple(lines)


def _listings(
    reads: Reads, business_id: str, views: Sequence[SubscriptionView]
) -> list[SubscriptionListing]:
    customers = reads.catalogue.customers_by_id(business_id, {v.customer_id for v in views})
    products = reads.catalogue.products_by_id(business_id, {v.product_id for v in views})
    listed = []
    for view in views:
        customer, product = customers.get(view.customer_id), products.get(view.product_id)
        if customer is None or product is None:  # the read wait ran out before it caught up
            raise UnavailableError("the catalogue is catching up with the log; try again")
        listed.append(SubscriptionListing(view, customer, product))
    return listed

"""A customer and a subscription as the dashboard's pages show them.

The customer page is the portal's page seen by the operator (the same pieces,
``application.portal``): the open cycle of each active subscription with its
usage per meter and per day and its invoice so far (``billing.invoice_preview``,
what finalizing now would bill), the credit balances with their latest ledger
entries, and besides the portal's, every subscription (not only active ones) and
the finalized invoices. The subscription page is one subscription with its
product, its customer, its open cycle and its finalized invoices. Every read is
scoped by the business: another business's ids are not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from application import listings
from application.ledger import Ledger
from application.portal import PortalCredit, PortalSubscription, credit_balances, open_cycle
from application.reads import CATALOGUE, CREDITS, USAGE, USAGE_LOG, Reads
from application.subscription_reads import (
    SubscriptionDetails,
    SubscriptionListing,
    list_subscriptions,
    subscription_details,
)
from application.views import CustomerView, InvoiceQuery, InvoiceView, SubscriptionQuery

MAX_SUBSCRIPTIONS = 20  # the customer's subscriptions shown, newest first (then: the list)
MAX_INVOICES = 20  # finalized invoices shown, newest cycle first (then: the list)
MAX_ENTRIES = 20  # ledger entries shown per credit entitlement, newest first


@dataclass(frozen=True, slots=True)
class CustomerPage:
    customer: CustomerView
    now: datetime
    open_cycles: tuple[PortalSubscription, ...]  # of the active subscriptions
    credits: tuple[PortalCredit, ...]
    subscriptions: tuple[SubscriptionListing, ...]
    invoices: tuple[InvoiceView, ...]

    @property
    def more_subscriptions(self) -> bool:
        return len(self.subscriptions) >= MAX_SUBSCRIPTIONS

    @property
    def more_invoices(self) -> bool:
        return len(self.invoices) >= MAX_INVOICES


@dataclass(frozen=True, slots=True)
class SubscriptionPage:
    details: SubscriptionDetails
    now: datetime
    open_cycle: PortalSubscription | None  # None: it has ended
    invoices: tuple[InvoiceView, ...]

    @property
    def more_invoices(self) -> bool:
        return len(self.invoices) >= MAX_INVOICES


def customer_page(
    ledger: Ledger, reads: Reads, business_id: str, customer_id: str, now: datetime
) -> CustomerPage:
    reads.fresh(CATALOGUE, USAGE_LOG, USAGE, CREDITS)
    customer = ledger.customer(business_id, customer_id)  # NotFoundError for another's
    query = SubscriptionQuery(business_id, customer_id=customer_id, page_size=MAX_SUBSCRIPTIONS)
    listed = list_subscriptions(reads, query, now)
    cycles = tuple(
        open_cycle(ledger, reads, customer, s.subscription.subscription_id, s.product.name, now)
        for s in listed
        if s.subscription.status == "active"
    )
    invoices = listings.invoices(
        reads, InvoiceQuery(business_id, customer_id=customer_id, page_size=MAX_INVOICES)
    )
    credits = credit_balances(reads, business_id, customer_id, MAX_ENTRIES)
    return CustomerPage(customer, now, cycles, credits, tuple(listed), tuple(invoices))


def subscription_page(
    ledger: Ledger, reads: Reads, business_id: str, subscription_id: str, now: datetime
) -> SubscriptionPage:
    details = subscription_details(ledger, reads, business_id, subscription_id, now)
    cycle = None
    if details.subscription.status == "active":
        reads.fresh(USAGE_LOG, USAGE)
        cycle = open_cycle(
            ledger, reads, details.customer, subscription_id, details.product.name, now
        )
    invoices = listings.invoices(
        reads, InvoiceQuery(business_id, subscription_id=subscription_id, page_size=MAX_INVOICES)
    )
    return SubscriptionPage(details, now, cycle, tuple(invoices))

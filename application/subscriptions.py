"""Subscriptions: created for an existing customer and product, cancelled at period end."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from application.credits import grant_cycle, started_cycles
from application.errors import NotFoundError
from application.ledger import Ledger
from domain.customer import customer_aggregate_id
from domain.errors import DomainError, InvalidSubscriptionError, TimestampOutOfWindowError
from domain.metadata import Metadata, validate_metadata
from domain.subscription import Subscription, check_quantity, subscription_aggregate_id


class UnknownProductError(DomainError):
    code = "unknown_product"


class UnknownSubscriberError(DomainError):
    code = "unknown_customer"


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    business_id: str
    subscription_id: str
    customer_id: str
    product_id: str
    quantity: int
    interval: str
    interval_count: int
    started_at: datetime
    billing: dict[str, Any]
    metadata: Metadata
    payment: dict[str, Any]
    created_at: datetime
    previous_billing_date: datetime
    next_billing_date: datetime
    cancel_at_next_billing_date: bool
    cancelled_at: datetime | None
    status: str


def create_subscription(
    ledger: Ledger,
    business_id: str,
    *,
    customer_id: str,
    product_id: str,
    quantity: object,
    billing: Mapping[str, Any],
    metadata: Mapping[str, object] | None,
    payment: Mapping[str, Any],
    start_date: datetime | None,
    now: datetime,
) -> SubscriptionView:
    """A subscription from ``start_date`` (default: now; in the past within the window)."""
    started_at = now if start_date is None else start_date
    if started_at > now:
        raise InvalidSubscriptionError("start_date must not be in the future")
    if started_at < now - ledger.window.backdate:
        raise TimestampOutOfWindowError(
            "start_date is older than the backdate window (LEDGER_BACKDATE_WINDOW)"
        )
    checked_quantity = check_quantity(quantity)
    try:
        ledger.repository.get(customer_aggregate_id(business_id, customer_id))
    except AggregateNotFoundError:
        raise UnknownSubscriberError(f"customer {customer_id!r} does not exist") from None
    try:
        product = ledger.load_product(business_id, product_id)
    except NotFoundError:
        raise UnknownProductError(f"product {product_id!r} does not exist") from None
    frequency = product.price_at(started_at).frequency
    subscription = Subscription(
        business_id=business_id,
        subscription_id=f"sub_{secrets.token_hex(12)}",
        customer_id=customer_id,
        product_id=product_id,
        quantity=checked_quantity,
        interval=frequency.interval.value,
        interval_count=frequency.count,
        started_at=started_at,
        billing=dict(billing),
        metadata=validate_metadata(metadata),
        payment=dict(payment),
        created_at=now,
    )
    ledger.save(subscription)
    for index in started_cycles(subscription, now):  # the billing loop would, a tick later
        grant_cycle(ledger, subscription, index)
    return subscription_view(subscription, now)


def load(ledger: Ledger, business_id: str, subscription_id: str) -> Subscription:
    try:
        found: Subscription = ledger.repository.get(
            subscription_aggregate_id(business_id, subscription_id)
        )
    except AggregateNotFoundError:
        raise NotFoundError(f"subscription {subscription_id!r} not found") from None
    return found


def subscription(
    ledger: Ledger, business_id: str, subscription_id: str, now: datetime
) -> SubscriptionView:
    return subscription_view(load(ledger, business_id, subscription_id), now)


def set_cancel_at_period_end(
    ledger: Ledger,
    business_id: str,
    subscription_id: str,
    *,
    cancel: bool,
    comment: str | None,
    now: datetime,
) -> SubscriptionView:
    found = load(ledger, business_id, subscription_id)
    if cancel:
        found.cancel_at_period_end(comment, now)
    else:
        found.withdraw_cancellation(now)
    ledger.save(found)
    return subscription_view(found, now)


def subscription_view(found: Subscription, now: datetime) -> SubscriptionView:
    current = found.cycle_at(now)
    return SubscriptionView(
        business_id=found.business_id,
        subscription_id=found.subscription_id,
        customer_id=found.customer_id,
        product_id=found.product_id,
        quantity=found.quantity,
        interval=found.interval,
        interval_count=found.interval_count,
        started_at=found.started_at,
        billing=found.billing,
        metadata=found.metadata,
        payment=found.payment,
        created_at=found.created_at,
        previous_billing_date=current.start,
        next_billing_date=current.end,
        cancel_at_next_billing_date=found.cancel_requested_at is not None,
        cancelled_at=found.cancel_requested_at,
        status=found.status(now),
    )

"""Subscriptions: created for an existing customer and product, cancelled at period end."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.catalogue import subscription_state
from application.errors import ConflictRetryExhaustedError, NotFoundError
from application.grants import AccountSet, give_cycle_grants, renew
from application.ledger import Ledger
from application.reads import Reads
from application.views import SubscriptionState
from domain.customer import customer_aggregate_id
from domain.errors import DomainError, InvalidSubscriptionError, TimestampOutOfWindowError
from domain.metadata import Metadata, validate_metadata
from domain.subscription import (
    Subscription,
    check_quantity,
    cycle_holding,
    status_at,
    subscription_aggregate_id,
)

MAX_SAVE_ATTEMPTS = 8


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
    cancellation_comment: str | None = None
    expires_at: datetime | None = None  # the end of its term (the price's subscription period)


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
    trial_period_days: object = None,
) -> SubscriptionView:
    """A subscription from ``start_date`` (default: now; in the past within the window).

    ``trial_period_days`` (0 or None: no trial) decides when its trial credits expire.
    """
    started_at = now if start_date is None else start_date
    trial_ends_at = trial_end(started_at, trial_period_days)
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
    product.check_open_to_new_subscriptions()
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
        term_ends_at=product.term_end(started_at),
        trial_ends_at=trial_ends_at,
    )
    # The cycles begun already (a start in the past) and their credit, with the subscription.
    accounts = AccountSet(ledger, business_id, customer_id)
    give_cycle_grants(ledger, subscription, 0, accounts)
    renew(ledger, subscription, subscription.cycle_at(now).index, accounts)
    ledger.save(subscription, *accounts.changed())
    return subscription_view(subscription, now)


MAX_TRIAL_DAYS = 10_000


def trial_end(started_at: datetime, trial_period_days: object) -> datetime | None:
    if trial_period_days is None or trial_period_days == 0:
        return None
    if type(trial_period_days) is not int or not 0 < trial_period_days <= MAX_TRIAL_DAYS:
        raise InvalidSubscriptionError(
            f"trial_period_days must be an integer from 0 to {MAX_TRIAL_DAYS:,}"
        )
    return started_at + timedelta(days=trial_period_days)


def renew_subscription(ledger: Ledger, aggregate_id: UUID, now: datetime) -> bool:
    """Begin every cycle of the subscription that has begun by ``now``, with its credit
    grants, in one transaction; False when there was nothing to begin."""
    for _ in range(MAX_SAVE_ATTEMPTS):
        found = ledger.load(Subscription, aggregate_id)
        if found is None:
            return False
        accounts = AccountSet(ledger, found.business_id, found.customer_id)
        renew(ledger, found, found.cycle_at(now).index, accounts)
        if not found.pending_events:
            return False
        try:
            ledger.save(found, *accounts.changed())
        except IntegrityError:
            continue  # another renewal (or a finalization) went first: look again
        return True
    raise ConflictRetryExhaustedError("the subscription kept changing under its renewal")


def peers_of(ledger: Ledger, reads: Reads, subscription: Subscription) -> list[Subscription]:
    """The customer's subscriptions (``subscription`` itself as given, not reloaded)."""
    entries = reads.catalogue.subscriptions_of(subscription.business_id, subscription.customer_id)
    others = [e for e in entries if e.subscription_id != subscription.subscription_id]
    return [subscription, *(load(ledger, e.business_id, e.subscription_id) for e in others)]


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
    return view_at(subscription_state(found), now)


def view_at(state: SubscriptionState, now: datetime) -> SubscriptionView:
    """The subscription as it stands at ``now``, from the state the catalogue keeps too."""
    current = cycle_holding(state.started_at, state.interval, state.interval_count, now)
    return SubscriptionView(
        business_id=state.business_id,
        subscription_id=state.subscription_id,
        customer_id=state.customer_id,
        product_id=state.product_id,
        quantity=state.quantity,
        interval=state.interval,
        interval_count=state.interval_count,
        started_at=state.started_at,
        billing=state.billing,
        metadata=state.metadata,
        payment=state.payment,
        created_at=state.created_at,
        previous_billing_date=current.start,
        next_billing_date=current.end,
        cancel_at_next_billing_date=state.cancel_requested_at is not None,
        cancelled_at=state.cancel_requested_at,
        status=status_at(state.ends_at, state.end_reason, now),
        cancellation_comment=state.cancellation_comment,
        expires_at=state.term_ends_at,
    )

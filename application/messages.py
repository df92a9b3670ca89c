"""The messages a business's systems receive: each derived from one fact in the log.

A ``Draft`` is a message before it is addressed: its type, the business, when the
fact happened, its ``data`` in the shape of the ``dodopayments`` SDK's webhook
events (``types/*_webhook_event.py``), and a ``key`` naming the fact it derives
from. The outbox addresses each draft to every endpoint due to receive it, and
the message's id derives from (endpoint, key): the same fact never gives two ids.

The wire shapes are ``msgspec`` structs: the envelope ``{business_id, type,
timestamp, data}`` is what is signed and sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from domain.credit_account import CreditAccount, LedgerEntry
from domain.customer import Customer
from domain.invoice_record import InvoiceRecord
from domain.meter import canonical_number
from domain.product import Product
from domain.subscription import Subscription

CREDIT_TYPES = {
    "credit_added": "credit.added",
    "credit_deducted": "credit.deducted",
    "credit_expired": "credit.expired",
    "credit_rolled_over": "credit.rolled_over",
    "rollover_forfeited": "credit.rollover_forfeited",
    "overage_charged": "credit.overage_charged",
    "overage_reset": "credit.overage_reset",
    "manual_adjustment": "credit.manual_adjustment",
}
_encoder = msgspec.json.Encoder(decimal_format="string")


class Draft(msgspec.Struct, frozen=True):
    type: str
    business_id: str
    timestamp: datetime
    data: Any  # one of the structs below
    key: str  # the fact it derives from: with the endpoint, the message's id


class Envelope(msgspec.Struct, frozen=True):
    business_id: str
    type: str
    timestamp: str
    data: Any


def envelope(draft: Draft) -> bytes:
    """The message's body, exactly as it is signed and sent."""
    return _encoder.encode(
        Envelope(draft.business_id, draft.type, iso(draft.timestamp), draft.data)
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _decimal(value: Decimal) -> str:
    return format(canonical_number(value), "f")


class LedgerEntryData(msgspec.Struct, frozen=True):
    """The SDK's ``CreditLedgerEntry``."""

    id: str
    amount: str
    balance_after: str
    balance_before: str
    brand_id: str
    business_id: str
    created_at: str
    credit_entitlement_id: str
    customer_id: str
    is_credit: bool
    metadata: dict[str, Any]
    overage_after: str
    overage_before: str
    transaction_type: str
    description: str | None
    grant_id: str | None
    reference_id: str | None
    reference_type: str | None


def ledger_entry_data(account: CreditAccount, entry: LedgerEntry) -> LedgerEntryData:
    return LedgerEntryData(
        id=entry.entry_id,
        amount=_decimal(entry.amount),
        balance_after=_decimal(entry.balance_after),
        balance_before=_decimal(entry.balance_before),
        brand_id=account.business_id,
        business_id=account.business_id,
        created_at=iso(entry.created_at),
        credit_entitlement_id=account.entitlement_id,
        customer_id=account.customer_id,
        is_credit=entry.is_credit,
        metadata=dict(entry.metadata or {}),
        overage_after=_decimal(entry.overage_after),
        overage_before=_decimal(entry.overage_before),
        transaction_type=entry.transaction_type,
        description=entry.description,
        grant_id=entry.grant_id,
        reference_id=entry.reference_id,
        reference_type=entry.reference_type,
    )


def credit_draft(account: CreditAccount, entry: LedgerEntry) -> Draft:
    return Draft(
        CREDIT_TYPES[entry.transaction_type],
        account.business_id,
        entry.created_at,
        ledger_entry_data(account, entry),
        f"entry:{entry.entry_id}",
    )


class BalanceLowData(msgspec.Struct, frozen=True):
    """The SDK's ``credit.balance_low`` data."""

    available_balance: str
    brand_id: str
    credit_entitlement_id: str
    credit_entitlement_name: str
    customer_id: str
    subscription_credits_amount: str
    subscription_id: str
    threshold_amount: str
    threshold_percent: int


def balance_low_draft(
    account: CreditAccount, entry: LedgerEntry, subscription: Subscription, product: Product
) -> Draft | None:
    """``credit.balance_low`` when ``entry`` took the balance below the threshold the
    subscription's product sets for this entitlement (once per crossing: the balance
    must have been at or above it before)."""
    price = product.wire_price_at(subscription.cycle_at(entry.created_at).start)
    attached = next(
        (
            item
            for item in price.get("credit_entitlements", [])
            if item.get("credit_entitlement_id") == account.entitlement_id
        ),
        None,
    )
    if attached is None or attached.get("low_balance_threshold_percent") is None:
        return None
    percent = int(attached["low_balance_threshold_percent"])
    amount = Decimal(attached["credits_amount"])
    threshold = canonical_number(amount * percent / 100)
    if not entry.balance_before >= threshold > entry.balance_after:
        return None
    data = BalanceLowData(
        available_balance=_decimal(entry.balance_after),
        brand_id=account.business_id,
        credit_entitlement_id=account.entitlement_id,
        credit_entitlement_name=str(attached.get("credit_entitlement_name") or ""),
        customer_id=account.customer_id,
        subscription_credits_amount=_decimal(amount),
        subscription_id=subscription.subscription_id,
        threshold_amount=_decimal(threshold),
        threshold_percent=percent,
    )
    key = f"balance_low:{entry.entry_id}"
    return Draft("credit.balance_low", account.business_id, entry.created_at, data, key)


class CustomerData(msgspec.Struct, frozen=True):
    customer_id: str
    email: str
    name: str
    phone_number: str | None
    metadata: dict[str, Any]


class MeterData(msgspec.Struct, frozen=True):
    currency: str
    free_threshold: int
    measurement_unit: str
    meter_id: str
    name: str
    price_per_unit: str


class SubscriptionData(msgspec.Struct, frozen=True):
    """The SDK's ``Subscription`` (what this ledger does not do is empty or false)."""

    addons: list[Any]
    billing: dict[str, Any]
    brand_id: str
    cancel_at_next_billing_date: bool
    created_at: str
    credit_entitlement_cart: list[Any]
    currency: str
    customer: CustomerData
    has_payment_method: bool
    metadata: dict[str, Any]
    meter_credit_entitlement_cart: list[Any]
    meters: list[MeterData]
    next_billing_date: str
    on_demand: bool
    payment_frequency_count: int
    payment_frequency_interval: str
    previous_billing_date: str
    product_id: str
    quantity: int
    recurring_pre_tax_amount: int
    status: str
    subscription_id: str
    subscription_period_count: int
    subscription_period_interval: str
    tax_inclusive: bool
    trial_period_days: int
    cancelled_at: str | None
    cancellation_comment: str | None
    expires_at: str | None
    started_at: str  # our extension


def subscription_data(
    subscription: Subscription, customer: Customer, product: Product, now: datetime
) -> SubscriptionData:
    current = subscription.cycle_at(now)
    price = product.wire_price_at(current.start)
    cancelled = subscription.cancel_requested_at
    return SubscriptionData(
        addons=[],
        billing=dict(subscription.billing),
        brand_id=subscription.business_id,
        cancel_at_next_billing_date=cancelled is not None,
        created_at=iso(subscription.created_at),
        credit_entitlement_cart=[],
        currency=price["currency"],
        customer=CustomerData(
            customer.customer_id,
            customer.email,
            customer.name,
            customer.phone_number,
            dict(customer.metadata),
        ),
        has_payment_method=subscription.payment.get("payment_method_id") is not None,
        metadata=dict(subscription.metadata),
        meter_credit_entitlement_cart=[],
        meters=[
            MeterData(
                price["currency"],
                m["free_threshold"],
                "",
                m["meter_id"],
                m["meter_id"],
                m.get("price_per_unit", "0"),  # absent for our extension models
            )
            for m in price["meters"]
        ],
        next_billing_date=iso(current.end),
        on_demand=False,
        payment_frequency_count=subscription.interval_count,
        payment_frequency_interval=subscription.interval,
        previous_billing_date=iso(current.start),
        product_id=subscription.product_id,
        quantity=subscription.quantity,
        recurring_pre_tax_amount=price["fixed_price"] * subscription.quantity,
        status=subscription.status(now),
        subscription_id=subscription.subscription_id,
        subscription_period_count=price["subscription_period_count"],
        subscription_period_interval=price["subscription_period_interval"],
        tax_inclusive=bool(price.get("tax_inclusive", False)),
        trial_period_days=subscription.payment.get("trial_period_days") or 0,
        cancelled_at=None if cancelled is None else iso(cancelled),
        cancellation_comment=subscription.cancellation_comment,
        expires_at=None if subscription.ends_at is None else iso(subscription.ends_at),
        started_at=iso(subscription.started_at),
    )


def subscription_draft(
    message_type: str,
    subscription: Subscription,
    customer: Customer,
    product: Product,
    at: datetime,
) -> Draft:
    data = subscription_data(subscription, customer, product, at)
    key = f"subscription:{subscription.id}:{subscription.version}"
    return Draft(message_type, subscription.business_id, at, data, key)


class InvoiceData(msgspec.Struct, frozen=True):
    """``invoice.finalized`` (our extension): the invoice, its SHA-256 and its cut."""

    invoice_id: str
    subscription_id: str
    customer_id: str
    cycle_index: int
    cycle_start: str
    cycle_end: str
    cut: int
    currency: str
    total_minor: int
    sha256: str
    invoice: msgspec.Raw  # the canonical document, as recorded


def invoice_draft(record: InvoiceRecord) -> Draft:
    data = InvoiceData(
        record.invoice_id,
        record.subscription_id,
        record.customer_id,
        record.cycle_index,
        iso(record.cycle_start),
        iso(record.cycle_end),
        record.cut,
        record.currency,
        record.total_minor,
        record.sha256,
        msgspec.Raw(record.document.encode()),
    )
    key = f"invoice:{record.invoice_id}"
    return Draft("invoice.finalized", record.business_id, record.finalized_at, data, key)


class AdjustedData(msgspec.Struct, frozen=True):
    """``invoice.adjusted`` (our extension): usage reached a finalized cycle late."""

    invoice_id: str
    subscription_id: str
    customer_id: str
    cycle_start: str
    cycle_end: str
    cause: str  # late_usage, void
    event_id: str
    position: int


def adjusted_draft(
    record: InvoiceRecord, cause: str, event_id: str, position: int, at: datetime
) -> Draft:
    data = AdjustedData(
        record.invoice_id,
        record.subscription_id,
        record.customer_id,
        iso(record.cycle_start),
        iso(record.cycle_end),
        cause,
        event_id,
        position,
    )
    key = f"adjusted:{record.invoice_id}:{position}"
    return Draft("invoice.adjusted", record.business_id, at, data, key)


class ThresholdData(msgspec.Struct, frozen=True):
    """``usage.threshold_reached`` (our extension): a meter reached an alert's threshold."""

    alert_id: str
    alert_name: str
    meter_id: str
    customer_id: str
    period: str  # cycle, day, month
    period_start: str
    period_end: str
    threshold: str
    value: str  # the meter's value over the period when it was seen to reach the threshold

"""Wire shapes of subscriptions (the SDK's ``Subscription``, ``SubscriptionListResponse``,
``SubscriptionRetrieveCreditUsageResponse``): what this ledger does not do is empty or false."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from application.subscription_reads import (
    CreditLine,
    MeterLine,
    SubscriptionDetails,
    SubscriptionListing,
)
from application.subscriptions import SubscriptionView
from application.views import CustomerView, ProductView

CART_TERMS = (
    "expires_after_days",
    "low_balance_threshold_percent",
    "max_rollover_count",
    "overage_behavior",
    "overage_limit",
    "rollover_percentage",
    "rollover_timeframe_count",
    "rollover_timeframe_interval",
)


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else format(amount, "f")


def customer_details(customer: CustomerView) -> dict[str, Any]:
    return {
        "customer_id": customer.customer_id,
        "email": customer.email,
        "name": customer.name,
        "phone_number": customer.phone_number,
        "metadata": customer.metadata,
    }


def _common(view: SubscriptionView, customer: CustomerView, product: ProductView) -> dict[str, Any]:
    """The fields the single and the list shape share."""
    price = product.price
    return {
        "billing": view.billing,
        "cancel_at_next_billing_date": view.cancel_at_next_billing_date,
        "created_at": view.created_at,
        "currency": price["currency"],
        "customer": customer_details(customer),
        "has_payment_method": view.payment.get("payment_method_id") is not None,
        "metadata": view.metadata,
        "next_billing_date": view.next_billing_date,
        "on_demand": False,
        "payment_frequency_count": view.interval_count,
        "payment_frequency_interval": view.interval,
        "previous_billing_date": view.previous_billing_date,
        "product_id": view.product_id,
        "quantity": view.quantity,
        "recurring_pre_tax_amount": price["fixed_price"] * view.quantity,
        "status": view.status,
        "subscription_id": view.subscription_id,
        "subscription_period_count": price["subscription_period_count"],
        "subscription_period_interval": price["subscription_period_interval"],
        "tax_inclusive": price.get("tax_inclusive", False),
        "trial_period_days": view.payment.get("trial_period_days") or 0,  # as it was sent
        "cancelled_at": view.cancelled_at,
        "payment_method_id": view.payment.get("payment_method_id"),
        "tax_id": view.payment.get("tax_id"),
        "customer_business_name": view.payment.get("customer_business_name"),
    }


def subscription_read(details: SubscriptionDetails) -> dict[str, Any]:
    """The SDK's ``Subscription``."""
    view, product = details.subscription, details.product
    currency = product.price["currency"]
    return {
        **_common(view, details.customer, product),
        "addons": [],
        "brand_id": view.business_id,
        "credit_entitlement_cart": [credit_cart(c, product.product_id) for c in details.credits],
        "meter_credit_entitlement_cart": [
            meter_credit_cart(m, product.product_id)
            for m in details.meters
            if m.credit_entitlement_id is not None
        ],
        "meters": [meter_cart(m, currency) for m in details.meters],
        "cancellation_comment": view.cancellation_comment,
        "expires_at": view.expires_at,
        "started_at": view.started_at,  # our extension
    }


def subscription_item(listed: SubscriptionListing) -> dict[str, Any]:
    """The SDK's ``SubscriptionListResponse``."""
    return {
        **_common(listed.subscription, listed.customer, listed.product),
        "discounts": [],
        "product_name": listed.product.name,
    }


def meter_cart(meter: MeterLine, currency: str) -> dict[str, Any]:
    return {
        "currency": currency,
        "free_threshold": meter.free_threshold,
        "measurement_unit": meter.measurement_unit,
        "meter_id": meter.meter_id,
        "name": meter.name,
        "description": meter.description,
        "price_per_unit": meter.price_per_unit,
    }


def meter_credit_cart(meter: MeterLine, product_id: str) -> dict[str, Any]:
    return {
        "credit_entitlement_id": meter.credit_entitlement_id,
        "meter_id": meter.meter_id,
        "meter_name": meter.name,
        "meter_units_per_credit": meter.meter_units_per_credit,
        "product_id": product_id,
    }


def credit_cart(line: CreditLine, product_id: str) -> dict[str, Any]:
    return {
        "credit_entitlement_id": line.entitlement_id,
        "credit_entitlement_name": line.name,
        "credits_amount": line.credits_amount,
        "overage_balance": _text(line.overage),
        "overage_enabled": line.overage_enabled,
        "product_id": product_id,
        "remaining_balance": _text(line.balance),
        "rollover_enabled": bool(line.terms.get("rollover_enabled")),
        "unit": line.unit,
        **{term: line.terms.get(term) for term in CART_TERMS},
    }


def credit_usage_read(subscription_id: str, lines: tuple[CreditLine, ...]) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "items": [
            {
                "balance": _text(line.balance),
                "credit_entitlement_id": line.entitlement_id,
                "credit_entitlement_name": line.name,
                "limit_reached": line.limit_reached,
                "overage": _text(line.overage),
                "overage_enabled": line.overage_enabled,
                "unit": line.unit,
                "overage_limit": _text(line.overage_limit),
                "remaining_headroom": _text(line.headroom),
            }
            for line in lines
        ],
    }

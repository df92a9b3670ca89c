"""Wire shapes of credit entitlements, balances, grants and ledger entries (SDK ``types/``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class CreditEntitlementRead(msgspec.Struct):
    """The SDK's ``CreditEntitlement``."""

    id: str
    business_id: str
    created_at: datetime
    name: str
    overage_behavior: str
    overage_enabled: bool
    precision: int
    rollover_enabled: bool
    unit: str
    updated_at: datetime
    currency: str | None = None
    description: str | None = None
    expires_after_days: int | None = None
    max_rollover_count: int | None = None
    overage_limit: int | None = None
    price_per_unit: str | None = None
    rollover_percentage: int | None = None
    rollover_timeframe_count: int | None = None
    rollover_timeframe_interval: str | None = None


class LedgerEntryCreate(msgspec.Struct, forbid_unknown_fields=True):
    """The SDK's ``BalanceCreateLedgerEntryParams`` (the path names entitlement and customer)."""

    amount: str
    entry_type: str
    credit_entitlement_id: str | None = None
    customer_id: str | None = None
    expires_at: datetime | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] | None = None
    reason: str | None = None


class LedgerEntryCreated(msgspec.Struct):
    """The SDK's ``BalanceCreateLedgerEntryResponse``."""

    id: str
    amount: str
    balance_after: str
    balance_before: str
    created_at: datetime
    credit_entitlement_id: str
    customer_id: str
    entry_type: str
    is_credit: bool
    metadata: dict[str, Any]
    overage_after: str
    overage_before: str
    grant_id: str | None = None
    reason: str | None = None


class CreditLedgerEntryRead(msgspec.Struct):
    """The SDK's ``CreditLedgerEntry``."""

    id: str
    amount: str
    balance_after: str
    balance_before: str
    brand_id: str
    business_id: str
    created_at: datetime
    credit_entitlement_id: str
    customer_id: str
    is_credit: bool
    metadata: dict[str, Any]
    overage_after: str
    overage_before: str
    transaction_type: str
    description: str | None = None
    grant_id: str | None = None
    reference_id: str | None = None
    reference_type: str | None = None


class CreditBalanceRead(msgspec.Struct):
    """The SDK's ``CustomerCreditBalance``."""

    id: str
    balance: str
    created_at: datetime
    credit_entitlement_id: str
    customer_id: str
    overage: str
    updated_at: datetime
    last_transaction_at: datetime | None = None


class CreditGrantRead(msgspec.Struct):
    """The SDK's ``BalanceListGrantsResponse``."""

    id: str
    created_at: datetime
    credit_entitlement_id: str
    customer_id: str
    initial_amount: str
    is_expired: bool
    is_rolled_over: bool
    remaining_amount: str
    rollover_count: int
    source_type: str
    updated_at: datetime
    expires_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    parent_grant_id: str | None = None
    source_id: str | None = None

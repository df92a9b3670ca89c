"""The rows read models hold and the queries that list them: small frozen values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from domain.metadata import Metadata


@dataclass(frozen=True, slots=True)
class UsageEventView:
    business_id: str
    event_id: str
    customer_id: str
    event_name: str
    timestamp: datetime
    metadata: Metadata
    voided_at: datetime | None = None
    void_reason: str | None = None

    @property
    def voided(self) -> bool:
        return self.voided_at is not None


@dataclass(frozen=True, slots=True)
class VoidView:
    """A void as the usage log records it (with the log position it was at)."""

    business_id: str
    event_id: str
    customer_id: str
    event_name: str
    event_timestamp: datetime
    voided_at: datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class CustomerView:
    business_id: str
    customer_id: str
    email: str
    name: str
    phone_number: str | None
    metadata: Metadata
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MeterView:
    business_id: str
    meter_id: str
    name: str
    description: str | None
    event_name: str
    measurement_unit: str
    aggregation: dict[str, Any]
    filter: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    archived: bool


@dataclass(frozen=True, slots=True)
class ProductView:
    business_id: str
    product_id: str
    name: str
    description: str | None
    tax_category: str
    metadata: Metadata
    price: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    archived: bool = False


@dataclass(frozen=True, slots=True)
class InvoiceView:
    business_id: str
    invoice_id: str
    subscription_id: str
    customer_id: str
    cycle_index: int
    cycle_start: datetime
    cycle_end: datetime
    cut: int
    currency: str
    total_minor: int
    sha256: str
    document: str
    finalized_at: datetime


@dataclass(frozen=True, slots=True)
class SealView:
    """One stored event's digest in the log (``domain.seal``), by log position."""

    position: int
    originator_id: str
    version: int
    digest: str


@dataclass(frozen=True, slots=True)
class SealDigests:
    """The digests of stored events read together, in log order: one column each."""

    positions: list[int]
    originator_ids: list[str]
    versions: list[int]
    digests: list[str]


@dataclass(frozen=True, slots=True)
class SealSegment:
    """Events sealed together: their digests, and the chain before the first and at
    the last (``domain.seal.chain``); the chain between follows from the digests."""

    chain_before: str
    seals: tuple[SealView, ...]
    chain: str


@dataclass(frozen=True, slots=True)
class EntitlementView:
    business_id: str
    entitlement_id: str
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime | None = None  # None: never changed since created_at
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class EntitlementQuery:
    """A page of entitlements, newest first: the deleted ones, or the others."""

    business_id: str
    page_number: int = 0
    page_size: int = 10
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class WebhookView:
    business_id: str
    endpoint_id: str
    url: str
    description: str
    disabled: bool
    disabled_reason: str | None
    filter_types: list[str]
    metadata: dict[str, str]
    rate_limit: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionEntry:
    """A subscription as the catalogue lists it: who, what, since when."""

    business_id: str
    subscription_id: str
    customer_id: str
    product_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """A subscription as the catalogue keeps it: what its reads at any moment need."""

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
    cancel_requested_at: datetime | None
    cancellation_comment: str | None
    term_ends_at: datetime | None
    ends_at: datetime | None  # the earlier of the term's end and a cancellation's period end
    end_reason: str  # why it ends at ends_at: cancelled, expired


@dataclass(frozen=True, slots=True)
class SubscriptionQuery:
    """A page of subscriptions, newest first; ``status`` is as of the moment asked at."""

    business_id: str
    customer_id: str | None = None
    product_id: str | None = None
    status: str | None = None
    cancel_at_next_billing_date: bool | None = None
    created_at_gte: datetime | None = None
    created_at_lte: datetime | None = None
    page_number: int = 0
    page_size: int = 10
    brand_id: str | None = None  # the brand is the business: another finds none


class Due(IntEnum):
    """What the billing loop does when a schedule entry falls due."""

    RENEW = 0  # a subscription's next cycle begins: its credit grants are given
    FINALIZE = 1  # a cycle has ended: its invoice is finalized (after the grace)
    EXPIRE = 2  # a credit grant has expired: it is ended, rolling over what it may
    END = 3  # a subscription's cancellation took effect, or its term ran out


@dataclass(frozen=True, slots=True)
class DueEntry:
    """One entry of the billing schedule: something falls due at ``due_at``.

    ``aggregate_id`` is the subscription's (RENEW, FINALIZE: of ``cycle_index``)
    or the credit account's (EXPIRE: of grant ``grant_id``).
    """

    kind: Due
    aggregate_id: str
    due_at: datetime
    cycle_index: int = 0
    grant_id: str = ""

    @property
    def key(self) -> tuple[int, str, str]:
        return (int(self.kind), self.aggregate_id, self.grant_id)


@dataclass(frozen=True, slots=True)
class InvoiceQuery:
    business_id: str
    customer_id: str | None = None
    subscription_id: str | None = None
    page_number: int = 0
    page_size: int = 10


@dataclass(frozen=True, slots=True)
class ProductQuery:
    business_id: str
    page_number: int = 0
    page_size: int = 10
    archived: bool = False
    recurring: bool | None = None  # every product of this ledger is: False finds none
    brand_id: str | None = None  # the brand is the business: another finds none


@dataclass(frozen=True, slots=True)
class MeterQuery:
    business_id: str
    archived: bool = False
    page_number: int = 0
    page_size: int = 10


@dataclass(frozen=True, slots=True)
class EventQuery:
    business_id: str
    customer_id: str | None = None
    event_name: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    page_number: int = 0
    page_size: int = 10
    voided: bool | None = None  # None: voided events too (flagged); False: not; True: only


@dataclass(frozen=True, slots=True)
class PageQuery:
    business_id: str
    page_number: int = 0
    page_size: int = 10


@dataclass(frozen=True, slots=True)
class CatalogueCounts:
    """How much a business has: customers, meters and products (not archived)."""

    customers: int
    meters: int
    products: int


@dataclass(frozen=True, slots=True)
class CustomerQuery:
    business_id: str
    email: str | None = None
    name: str | None = None
    created_at_gte: datetime | None = None
    created_at_lte: datetime | None = None
    page_number: int = 0
    page_size: int = 10

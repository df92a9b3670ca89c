"""What the applications need from infrastructure, as protocols."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Tracking

from domain.metadata import Metadata
from domain.meter import UsageRecord


class StoredIdentities(Protocol):
    """Answers which aggregate ids already have events in the store."""

    def existing(self, ids: Collection[UUID]) -> set[UUID]: ...

    def serialised(self, business_id: str) -> AbstractContextManager[None]:
        """While held, no other writer of this business, in any process, probes or saves.

        Writers queue on the event table's lock anyway; holding this across the
        probe and the save keeps overlapping batches from colliding again and
        again. The store's uniqueness constraint remains what guarantees
        at-most-once; this only prevents starvation.
        """
        ...


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
    """A void as the event index records it (with the log position it was at)."""

    business_id: str
    event_id: str
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
class CustomerQuery:
    business_id: str
    email: str | None = None
    name: str | None = None
    created_at_gte: datetime | None = None
    created_at_lte: datetime | None = None
    page_number: int = 0
    page_size: int = 10


class PositionMovedError(Exception):
    """A batch was read after a position the projection has since left.

    Another process applied events to the same projection in the meantime;
    applying this batch too would count them twice. Nothing was written.
    """


class TrackedView(Protocol):
    """A read model that records its log position with its rows."""

    def reset(self) -> None:
        """Drop every row and the position: the next follower starts from the log's start."""
        ...

    def max_tracking_id(self, application_name: str) -> int | None: ...

    def wait(
        self, application_name: str, notification_id: int | None, timeout: float = 1.0
    ) -> None: ...


class EventIndex(TrackedView, Protocol):
    """The read model behind event and customer listings."""

    def record(
        self,
        events: Sequence[tuple[int, UsageEventView]],
        customers: Sequence[CustomerView],
        meters: Sequence[MeterView],
        products: Sequence[ProductView],
        invoices: Sequence[InvoiceView],
        tracking: Tracking,
        voids: Sequence[tuple[int, VoidView]] = (),
        seals: Sequence[SealView] = (),
        after: int | None = None,
    ) -> None: ...

    def seal_chain_at(self, position: int) -> str:
        """The chain value (``domain.seal``) of the last sealed event at or before ``position``."""
        ...

    def seals(self, after: int, limit: int) -> list[tuple[SealView, str]]:
        """Sealed events after ``after`` in log order, each with its chain value."""
        ...

    def label_of(self, seal: SealView) -> str:
        """What the sealed event was, for a person: a usage event's id, else the aggregate."""
        ...

    def list_events(self, query: EventQuery) -> list[UsageEventView]: ...

    def list_meters(self, query: MeterQuery) -> list[MeterView]: ...

    def list_products(self, query: ProductQuery) -> list[ProductView]: ...

    def list_invoices(self, query: InvoiceQuery) -> list[InvoiceView]: ...

    def scan_events(
        self,
        business_id: str,
        event_name: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        up_to: int | None = None,
    ) -> list[UsageEventView]:
        """The events of a name in ``[start, end)`` that count at log position ``up_to``.

        An event counts at a position if it was recorded at or before it and not
        voided at or before it (``None``: the index's current position).
        """
        ...

    def stream_records(
        self,
        business_id: str,
        event_name: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        up_to: int | None = None,
    ) -> Iterator[UsageRecord]:
        """What ``scan_events`` returns, as a meter reads it, streamed: memory flat."""
        ...

    def list_customers(self, query: CustomerQuery) -> list[CustomerView]: ...


class CreditStore(TrackedView, Protocol):
    """The balance projection's rows (``application.credit_balances``)."""

    def record(self, accounts: Sequence[Any], tracking: Tracking) -> None: ...

    def balances(self, query: Any) -> list[dict[str, Any]]: ...

    def grants(self, query: Any) -> list[dict[str, Any]]: ...

    def entries(self, query: Any) -> list[dict[str, Any]]: ...

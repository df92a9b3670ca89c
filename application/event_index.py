"""The event index projection: usage events, customers and meters, listable and filterable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

from eventsourcing.persistence import Notification, Tracking

from application.follower import DomainEvent
from application.ledger import customer_view, usage_view
from application.ports import (
    CustomerView,
    EventIndex,
    InvoiceView,
    MeterView,
    ProductView,
    SealView,
    UsageEventView,
    VoidView,
)
from domain.customer import Customer
from domain.invoice_record import InvoiceRecord
from domain.meter import Meter
from domain.product import Product
from domain.seal import event_digest
from domain.usage import UsageEvent

MeterAt = Callable[[UUID, int], MeterView]
ProductAt = Callable[[UUID, int], ProductView]


class EventIndexProjection:
    """Writes one row per usage event, customer and meter, with the log position.

    A void is a row of its own, with its position: what counted at any position
    (a finalized invoice's cut) stays answerable after later voids.

    A meter's row is its whole state as of the batch's last event about it,
    read from the log at that version, so a rebuild writes the same rows.
    """

    name = "event_index"
    takes_notifications = True  # it seals each stored event (domain.seal)

    def __init__(self, view: EventIndex, meter_at: MeterAt, product_at: ProductAt) -> None:
        self._view = view
        self._meter_at = meter_at
        self._product_at = product_at

    @property
    def view(self) -> EventIndex:
        return self._view

    def process(
        self,
        events: Sequence[DomainEvent],
        tracking: Tracking,
        after: int,
        positions: Sequence[int] = (),
        notifications: Sequence[Notification] = (),
    ) -> None:
        # A batch is written only where it was read (``after``): two followers, or a
        # follower and a rebuild, never leave a hole or chain the seal from nowhere.
        usage: list[tuple[int, UsageEventView]] = []
        own = positions or [tracking.notification_id] * len(events)
        customers: list[CustomerView] = []
        meter_versions: dict[UUID, int] = {}
        product_versions: dict[UUID, int] = {}
        invoices: list[InvoiceView] = []
        voids: list[tuple[int, VoidView]] = []
        for position, domain_event in zip(own, events, strict=True):
            if isinstance(domain_event, UsageEvent.Recorded):
                usage.append((position, usage_view(domain_event)))
            elif isinstance(domain_event, UsageEvent.Voided):
                voids.append((position, void_view(domain_event)))
            elif isinstance(domain_event, Customer.Registered):
                customers.append(customer_view(domain_event))
            elif isinstance(domain_event, Meter.Event):
                meter_versions[domain_event.originator_id] = domain_event.originator_version
            elif isinstance(domain_event, InvoiceRecord.Finalized):
                invoices.append(invoice_view(domain_event))
            elif isinstance(domain_event, Product.Event):
                product_versions[domain_event.originator_id] = domain_event.originator_version
        meters = [self._meter_at(i, v) for i, v in meter_versions.items()]
        products = [self._product_at(i, v) for i, v in product_versions.items()]
        seals = [seal_of(n, e) for n, e in zip(notifications, events, strict=True)]
        self._view.record(
            usage, customers, meters, products, invoices, tracking, voids, seals, after
        )


def seal_of(notification: Notification, domain_event: DomainEvent) -> SealView:
    """The stored event's digest (``domain.seal``), by log position."""
    del domain_event
    originator_id = str(notification.originator_id)
    version = notification.originator_version
    digest = event_digest(
        notification.id, originator_id, version, notification.topic, notification.state
    )
    return SealView(notification.id, originator_id, version, digest)


def void_view(voided: UsageEvent.Voided) -> VoidView:
    return VoidView(voided.business_id, voided.event_id, voided.voided_at, voided.reason)


def invoice_view(record: InvoiceRecord | InvoiceRecord.Finalized) -> InvoiceView:
    return InvoiceView(
        business_id=record.business_id,
        invoice_id=record.invoice_id,
        subscription_id=record.subscription_id,
        customer_id=record.customer_id,
        cycle_index=record.cycle_index,
        cycle_start=record.cycle_start,
        cycle_end=record.cycle_end,
        cut=record.cut,
        currency=record.currency,
        total_minor=record.total_minor,
        sha256=record.sha256,
        document=record.document,
        finalized_at=record.finalized_at,
    )

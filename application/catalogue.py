"""The catalogue projection: what a business has defined and billed, as rows to list.

Customers, meters, products, subscriptions, credit entitlements and finalized
invoices, each written with the log position of the batch that changed it. A
meter, product or subscription row is the aggregate's state as of the batch's
last event about it, read from the log at that version, so a rebuild writes
the same rows. Listings read these rows and never the log.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Tracking

from application.ports import TrackedView
from application.projection import Batch
from application.views import (
    CatalogueCounts,
    CustomerQuery,
    CustomerView,
    EntitlementQuery,
    EntitlementView,
    InvoiceQuery,
    InvoiceView,
    MeterQuery,
    MeterView,
    ProductQuery,
    ProductView,
    SubscriptionEntry,
    SubscriptionQuery,
    SubscriptionState,
    WebhookView,
)
from domain.credit_entitlement import CreditEntitlement
from domain.customer import Customer
from domain.invoice_record import InvoiceRecord
from domain.meter import Meter
from domain.product import Product
from domain.subscription import Subscription
from domain.webhook import WebhookEndpoint

AggregateAt = Callable[[UUID, int], Aggregate]


@dataclass(slots=True)
class CatalogueChanges:
    """The rows one batch writes, beside its tracking position."""

    customers: list[CustomerView] = field(default_factory=list)
    meters: list[MeterView] = field(default_factory=list)
    products: list[ProductView] = field(default_factory=list)
    subscriptions: list[SubscriptionState] = field(default_factory=list)
    entitlements: list[EntitlementView] = field(default_factory=list)
    invoices: list[tuple[int, InvoiceView]] = field(default_factory=list)  # with its position
    webhooks: list[WebhookView] = field(default_factory=list)
    deleted_webhooks: list[tuple[str, str]] = field(default_factory=list)  # (business, endpoint)


class CatalogueStore(TrackedView, Protocol):
    def record(self, changes: CatalogueChanges, tracking: Tracking, after: int) -> None: ...

    def list_customers(self, query: CustomerQuery) -> list[CustomerView]: ...

    def list_meters(self, query: MeterQuery) -> list[MeterView]: ...

    def counts(self, business_id: str) -> CatalogueCounts: ...

    def count_subscriptions(self, query: SubscriptionQuery, now: datetime) -> int: ...

    def list_products(self, query: ProductQuery) -> list[ProductView]: ...

    def list_invoices(self, query: InvoiceQuery) -> list[InvoiceView]: ...

    def list_entitlements(self, query: EntitlementQuery) -> list[EntitlementView]: ...

    def subscriptions_of(self, business_id: str, customer_id: str) -> list[SubscriptionEntry]:
        """The customer's subscriptions, oldest first."""
        ...

    def list_subscriptions(
        self, query: SubscriptionQuery, now: datetime
    ) -> list[SubscriptionState]: ...

    def customers_by_id(self, business_id: str, ids: Collection[str]) -> dict[str, CustomerView]:
        """Those of ``ids`` the business has (at most a page's worth)."""
        ...

    def products_by_id(self, business_id: str, ids: Collection[str]) -> dict[str, ProductView]: ...

    def meters_by_id(self, business_id: str, ids: Collection[str]) -> dict[str, MeterView]: ...

    def entitlements_by_id(
        self, business_id: str, ids: Collection[str]
    ) -> dict[str, EntitlementView]: ...

    def list_webhooks(
        self, business_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[WebhookView]:
        """The business's endpoints, oldest first, after (created_at, endpoint_id)."""
        ...

    def invoices_after(self, position: int, limit: int) -> list[tuple[int, InvoiceView]]:
        """Every business's finalized invoices in the order they were recorded, after a key."""
        ...


class CatalogueProjection:
    name = "catalogue"

    def __init__(self, view: CatalogueStore, aggregate_at: AggregateAt) -> None:
        self._view = view
        self._aggregate_at = aggregate_at

    @property
    def view(self) -> CatalogueStore:
        return self._view

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        changes = CatalogueChanges()
        versions: dict[UUID, tuple[type[Aggregate.Event], int]] = {}
        kinds = (
            Customer.Registered,
            InvoiceRecord.Finalized,
            Meter.Event,
            Product.Event,
            WebhookEndpoint.Event,
            CreditEntitlement.Event,
            Subscription.Event,
            Customer.Updated,
        )
        for position, domain_event in batch.of(*kinds):
            if isinstance(domain_event, Customer.Registered):
                changes.customers.append(customer_view(domain_event))
            elif isinstance(domain_event, InvoiceRecord.Finalized):
                changes.invoices.append((position, invoice_view(domain_event)))
            elif isinstance(
                domain_event,
                Meter.Event
                | Product.Event
                | WebhookEndpoint.Event
                | CreditEntitlement.Event
                | Subscription.Event
                | Customer.Updated,
            ):
                kind = type(domain_event)
                versions[domain_event.originator_id] = (kind, domain_event.originator_version)
        for aggregate_id, (_, version) in versions.items():
            add_state(changes, self._aggregate_at(aggregate_id, version))
        self._view.record(changes, tracking, after)


def add_state(changes: CatalogueChanges, found: Aggregate) -> None:
    """The row of an aggregate whose state the catalogue keeps whole, as of the batch."""
    if isinstance(found, Meter):
        changes.meters.append(meter_view(found))
    elif isinstance(found, Product):
        changes.products.append(product_view(found))
    elif isinstance(found, CreditEntitlement):
        changes.entitlements.append(entitlement_view(found))
    elif isinstance(found, Subscription):
        changes.subscriptions.append(subscription_state(found))
    elif isinstance(found, Customer):
        changes.customers.append(customer_view(found))
    elif isinstance(found, WebhookEndpoint):
        if found.deleted_at is None:
            changes.webhooks.append(webhook_view(found))
        else:
            changes.deleted_webhooks.append((found.business_id, found.endpoint_id))
    else:  # pragma: no cover - only these kinds are collected
        raise TypeError(f"unexpected {type(found).__qualname__}")


def customer_view(customer: Customer | Customer.Registered) -> CustomerView:
    """The read shape of a customer, from the aggregate or from its event."""
    return CustomerView(
        business_id=customer.business_id,
        customer_id=customer.customer_id,
        email=customer.email,
        name=customer.name,
        phone_number=customer.phone_number,
        metadata=customer.metadata,
        created_at=customer.created_at,
    )


def meter_view(meter: Meter) -> MeterView:
    return MeterView(
        business_id=meter.business_id,
        meter_id=meter.meter_id,
        name=meter.name,
        description=meter.description,
        event_name=meter.event_name,
        measurement_unit=meter.measurement_unit,
        aggregation=meter.aggregation,
        filter=meter.filter,
        created_at=meter.created_at,
        updated_at=meter.updated_at,
        archived=meter.is_archived,
    )


def product_view(product: Product) -> ProductView:
    return ProductView(
        business_id=product.business_id,
        product_id=product.product_id,
        name=product.name,
        description=product.description,
        tax_category=product.tax_category,
        metadata=product.metadata,
        price=product.price,
        created_at=product.created_at,
        updated_at=product.updated_at,
        archived=product.is_archived,
    )


def webhook_view(endpoint: WebhookEndpoint) -> WebhookView:
    return WebhookView(
        business_id=endpoint.business_id,
        endpoint_id=endpoint.endpoint_id,
        url=endpoint.url,
        description=endpoint.description,
        disabled=endpoint.disabled,
        disabled_reason=endpoint.disabled_reason,
        filter_types=list(endpoint.filter_types),
        metadata=dict(endpoint.metadata),
        rate_limit=endpoint.rate_limit,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def entitlement_view(entitlement: CreditEntitlement) -> EntitlementView:
    return EntitlementView(
        entitlement.business_id,
        entitlement.entitlement_id,
        entitlement.settings,
        entitlement.created_at,
        entitlement.updated_at,
        entitlement.is_deleted,
    )


def subscription_state(found: Subscription) -> SubscriptionState:
    return SubscriptionState(
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
        cancel_requested_at=found.cancel_requested_at,
        cancellation_comment=found.cancellation_comment,
        term_ends_at=found.term_ends_at,
        ends_at=found.ends_at,
        end_reason=found.end_reason,
    )


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

"""The event index projection: usage events and customers, listable and filterable."""

from __future__ import annotations

from collections.abc import Sequence

from eventsourcing.persistence import Tracking

from application.follower import DomainEvent
from application.ledger import customer_view, usage_view
from application.ports import CustomerView, EventIndex, UsageEventView
from domain.customer import Customer
from domain.usage import UsageEvent


class EventIndexProjection:
    """Writes one row per usage event and per customer, with the log position."""

    name = "event_index"

    def __init__(self, view: EventIndex) -> None:
        self._view = view

    @property
    def view(self) -> EventIndex:
        return self._view

    def process(self, events: Sequence[DomainEvent], tracking: Tracking) -> None:
        usage: list[UsageEventView] = []
        customers: list[CustomerView] = []
        for domain_event in events:
            if isinstance(domain_event, UsageEvent.Recorded):
                usage.append(usage_view(domain_event))
            elif isinstance(domain_event, Customer.Registered):
                customers.append(customer_view(domain_event))
        self._view.record(usage, customers, tracking)

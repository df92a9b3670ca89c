"""The usage log projection: every usage event and every void, with its log position.

A usage event's row is written once, with the position it was recorded at; a
void is a row of its own with the void's position (a usage row is never
rewritten). So what counted at any position stays answerable after later
voids: an event counts at ``P`` if it was recorded at or before ``P`` and not
voided at or before ``P``. Event listings, the partial hours of every fold and
the recount of an hour after a void read these rows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Protocol

from eventsourcing.persistence import Tracking

from application.ports import TrackedView
from application.projection import Batch
from application.tally import HourKey, Recorded
from application.views import EventQuery, UsageEventView, VoidView
from domain.meter import UsageRecord
from domain.usage import UsageEvent


class UsageLogStore(TrackedView, Protocol):
    def record(
        self,
        events: Sequence[tuple[int, UsageEvent.Recorded]],
        voids: Sequence[tuple[int, VoidView]],
        tracking: Tracking,
        after: int,
    ) -> None:
        """Write the recorded events (as they were stored: no view built per event),
        the voids and ``tracking``, if the view is still at ``after``."""
        ...

    def list_events(self, query: EventQuery) -> list[UsageEventView]: ...

    def list_events_from(self, query: EventQuery, offset: int, limit: int) -> list[UsageEventView]:
        """What ``list_events`` selects, ``limit`` rows from ``offset`` (not a page)."""
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
        """The events of a name in ``[start, end)`` that count at log position ``up_to``
        (``None``: every event not voided), as a meter reads them, streamed."""
        ...

    def stream_customer_records(
        self,
        business_id: str,
        event_name: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        up_to: int | None = None,
    ) -> Iterator[tuple[str, UsageRecord]]:
        """What ``stream_records`` streams, each record with its customer's id."""
        ...

    def events_per_hour(
        self, business_id: str, start: datetime, end: datetime
    ) -> dict[datetime, int]:
        """How many events (voided ones too) the business sent, per UTC hour of their
        timestamps in ``[start, end)``; an hour without any is absent."""
        ...

    def counted_in_hours(
        self, hours: Collection[HourKey], up_to: int, application_name: str
    ) -> dict[HourKey, list[UsageRecord]] | None:
        """The events that count at ``up_to`` in each hour; ``None`` while the log has
        not reached ``up_to`` (position and rows are read in one transaction)."""
        ...

    def name_history(self, business_id: str, event_name: str, up_to: int) -> Iterator[Recorded]:
        """Every event of a name recorded at or before ``up_to``, voided or not (with the
        void's position when it is at or before ``up_to``), streamed: a meter defined
        later is measured from these."""
        ...

    def changed_between(
        self, business_id: str, customer_id: str, start: datetime, end: datetime, after: int
    ) -> bool:
        """Whether an event of the customer in ``[start, end)`` was recorded, or voided,
        after log position ``after``."""
        ...

    def customers_changed(self, after: int, until: int, limit: int) -> list[tuple[str, str, int]]:
        """(business, customer, first position) of the customers an event of whose was
        recorded or voided in ``(after, until]``, in the order they first changed."""
        ...

    def label_at(self, position: int) -> str | None:
        """The usage event recorded at ``position``, for a person; None if none was."""
        ...


class UsageLogProjection:
    name = "usage_log"

    def __init__(self, view: UsageLogStore) -> None:
        self._view = view

    @property
    def view(self) -> UsageLogStore:
        return self._view

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        voids = [(position, void_view(v)) for position, v in batch.of(UsageEvent.Voided)]
        self._view.record(batch.of(UsageEvent.Recorded), voids, tracking, after)


def usage_view(usage: UsageEvent | UsageEvent.Recorded) -> UsageEventView:
    """The read shape of a usage event, from the aggregate or from its event."""
    voided_at, reason = (
        (usage.voided_at, usage.void_reason) if isinstance(usage, UsageEvent) else (None, None)
    )
    return UsageEventView(
        business_id=usage.business_id,
        event_id=usage.event_id,
        customer_id=usage.customer_id,
        event_name=usage.event_name,
        timestamp=usage.timestamp,
        metadata=usage.metadata,
        voided_at=voided_at,
        void_reason=reason,
    )


def void_view(voided: UsageEvent.Voided) -> VoidView:
    return VoidView(
        voided.business_id,
        voided.event_id,
        voided.customer_id,
        voided.event_name,
        voided.event_timestamp,
        voided.voided_at,
        voided.reason,
    )

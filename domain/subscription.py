"""A subscription: a customer billed for a product, cycle after cycle.

Cycles are anchored at the subscription's start and follow the billing
frequency the product's price had at that moment (``domain.cycles``: month ends
as billing systems do them). The frequency is kept on the subscription, so a
later price change alters what a cycle costs, never where cycles fall.

A cycle begins when the subscription renews (``Renewed``, one event per cycle
after the first, which begins with the subscription): the billing loop renews
each subscription when its next cycle starts, and the credit grants of that
cycle are given in the same transaction.

Cancellation is at period end: the cycle in which it is asked for is the last
one; until that cycle ends it can be withdrawn. Payment fields (billing
address, payment method...) are kept as they were sent; collecting money is
not this ledger's job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.cycles import Cycle, Interval, cycle, cycle_at
from domain.errors import InvalidSubscriptionError
from domain.metadata import Metadata

SUBSCRIPTION_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/subscription")
MAX_QUANTITY = 1_000_000


def subscription_aggregate_id(business_id: str, subscription_id: str) -> UUID:
    return uuid5(SUBSCRIPTION_NAMESPACE, f"{business_id}\x1f{subscription_id}")


def check_quantity(quantity: object) -> int:
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidSubscriptionError(f"quantity must be an integer from 1 to {MAX_QUANTITY:,}")
    return quantity


def cycle_holding(started_at: datetime, interval: str, count: int, moment: datetime) -> Cycle:
    """The cycle holding ``moment`` (the first one for a moment before the start)."""
    if moment < started_at:
        return cycle(started_at, Interval(interval), count, 0)
    return cycle_at(started_at, Interval(interval), count, moment)


def status_at(ends_at: datetime | None, end_reason: str, now: datetime) -> str:
    """``active`` until ``ends_at``, then why it ended (``cancelled`` or ``expired``)."""
    if ends_at is not None and now >= ends_at:
        return "cancelled" if end_reason == "cancelled" else "expired"
    return "active"


class Subscription(Aggregate):
    """A customer's subscription to a product; its cycles follow from its start."""

    class Created(Aggregate.Created):
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
        term_ends_at: datetime | None = None  # the price's subscription period, from the start
        trial_ends_at: datetime | None = None  # the trial (trial_period_days), from the start

    class Renewed(Aggregate.Event):
        """Cycle ``cycle_index`` (1 or more) has begun, at ``cycle_start``."""

        cycle_index: int
        cycle_start: datetime

    class Ended(Aggregate.Event):
        """The subscription has ended: cancelled at a period end, or its term expired."""

        reason: str  # cancelled, expired
        ended_at: datetime

    class CancellationScheduled(Aggregate.Event):
        requested_at: datetime
        comment: str | None

    class CancellationWithdrawn(Aggregate.Event):
        withdrawn_at: datetime

    @event(Created)
    def __init__(
        self,
        business_id: str,
        subscription_id: str,
        customer_id: str,
        product_id: str,
        quantity: int,
        interval: str,
        interval_count: int,
        started_at: datetime,
        billing: dict[str, Any],
        metadata: Metadata,
        payment: dict[str, Any],
        created_at: datetime,
        term_ends_at: datetime | None = None,
        trial_ends_at: datetime | None = None,
    ) -> None:
        self.business_id = business_id
        self.subscription_id = subscription_id
        self.customer_id = customer_id
        self.product_id = product_id
        self.quantity = quantity
        self.interval = interval
        self.interval_count = interval_count
        self.started_at = started_at
        self.billing = billing
        self.metadata = metadata
        self.payment = payment
        self.created_at = created_at
        self.cancel_requested_at: datetime | None = None
        self.cancellation_comment: str | None = None
        self.renewed_through = 0  # the last cycle begun; the first begins with the subscription
        self.term_ends_at = term_ends_at
        self.trial_ends_at = trial_ends_at
        self.ended: str | None = None  # why it ended, once it has

    @staticmethod
    def create_id(business_id: str, subscription_id: str) -> UUID:
        return subscription_aggregate_id(business_id, subscription_id)

    def cycle(self, index: int) -> Cycle:
        return cycle(self.started_at, Interval(self.interval), self.interval_count, index)

    def cycle_at(self, moment: datetime) -> Cycle:
        """The cycle holding ``moment`` (the first one for a moment before the start)."""
        return cycle_holding(self.started_at, self.interval, self.interval_count, moment)

    @property
    def ends_at(self) -> datetime | None:
        """When the subscription ends: the end of the cycle cancellation was asked in, or
        its term's end, whichever comes first."""
        ends = [self.term_ends_at] if self.term_ends_at is not None else []
        if self.cancel_requested_at is not None:
            ends.append(self.cycle_at(self.cancel_requested_at).end)
        return min(ends, default=None)

    @property
    def end_reason(self) -> str:
        """Why it ends at ``ends_at``: a cancellation, or the end of its term."""
        requested = self.cancel_requested_at
        if requested is not None and self.ends_at == self.cycle_at(requested).end:
            return "cancelled"
        return "expired"

    def end(self, at: datetime) -> bool:
        """Record that it has ended (at ``ends_at``, once ``at`` is past it); False if not."""
        ends_at = self.ends_at
        if self.ended is not None or ends_at is None or at < ends_at:
            return False
        self._on_ended(self.end_reason, ends_at)
        return True

    @event(Ended)
    def _on_ended(self, reason: str, ended_at: datetime) -> None:
        del ended_at
        self.ended = reason

    def bills(self, index: int) -> bool:
        """Whether cycle ``index`` is billed: it begins before a cancellation takes effect."""
        ends_at = self.ends_at
        return index == 0 or ends_at is None or self.cycle(index).start < ends_at

    def renew(self, through: int) -> list[int]:
        """Begin every cycle up to ``through`` not begun yet (and billed); their indexes."""
        begun = []
        while self.renewed_through < through and self.bills(self.renewed_through + 1):
            index = self.renewed_through + 1
            self._on_renewed(index, self.cycle(index).start)
            begun.append(index)
        return begun

    @event(Renewed)
    def _on_renewed(self, cycle_index: int, cycle_start: datetime) -> None:
        del cycle_start
        self.renewed_through = cycle_index

    def status(self, now: datetime) -> str:
        return status_at(self.ends_at, self.end_reason, now)

    def cancel_at_period_end(self, comment: str | None, at: datetime) -> None:
        ends_at = self.ends_at
        if ends_at is not None and at >= ends_at:
            raise InvalidSubscriptionError("the subscription has already ended")
        if self.cancel_requested_at is None:
            self._on_cancellation_scheduled(at, comment)

    def withdraw_cancellation(self, at: datetime) -> None:
        ends_at = self.ends_at
        if ends_at is None or self.cancel_requested_at is None:
            return
        if at >= ends_at:
            raise InvalidSubscriptionError("the subscription has already ended")
        self._on_cancellation_withdrawn(at)

    @event(CancellationScheduled)
    def _on_cancellation_scheduled(self, requested_at: datetime, comment: str | None) -> None:
        self.cancel_requested_at = requested_at
        self.cancellation_comment = comment

    @event(CancellationWithdrawn)
    def _on_cancellation_withdrawn(self, withdrawn_at: datetime) -> None:
        del withdrawn_at
        self.cancel_requested_at = None
        self.cancellation_comment = None

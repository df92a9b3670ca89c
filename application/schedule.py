"""The billing schedule projection: what falls due when, so the billing loop asks once.

For each subscription it keeps what the schedule needs (its cycles' anchor and
frequency, when a cancellation ends it, the last cycle begun and the next to
finalize) and at most two entries: RENEW, when its next cycle begins (its credit
grants are given then), and FINALIZE, when its oldest unfinalized cycle ends.
For each credit grant with an expiry, an EXPIRE entry. The billing loop reads
the entries due with one indexed query (``ScheduleStore.due``), so a tick with
nothing due costs the same however many subscriptions there are. Every entry
derives from the log: rebuilding the schedule gives the same rows.

Cycles are finalized in order, so FINALIZE follows the last finalized cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Tracking

from application.ports import TrackedView
from application.projection import Batch
from application.views import Due, DueEntry
from domain.credit_account import CreditAccount
from domain.cycles import Cycle, Interval, cycle, cycle_at
from domain.errors import DomainError
from domain.invoice_record import InvoiceRecord
from domain.subscription import Subscription, subscription_aggregate_id

AggregateAt = Callable[[UUID, int], Aggregate]
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Billed:
    """What the schedule keeps of one subscription."""

    aggregate_id: str
    started_at: datetime
    interval: str
    interval_count: int
    cancelled_at: datetime | None = None  # when a cancellation takes effect
    renewed_through: int = 0
    next_to_finalize: int = 0
    term_ends_at: datetime | None = None
    ended: bool = False

    @property
    def ends_at(self) -> datetime | None:
        """When it ends: a cancellation taking effect, or its term running out."""
        ends = [t for t in (self.cancelled_at, self.term_ends_at) if t is not None]
        return min(ends, default=None)

    def _billed(self, index: int) -> Cycle | None:
        """Cycle ``index``, if it is billed (it begins before a cancellation ends it)."""
        try:
            found = cycle(self.started_at, Interval(self.interval), self.interval_count, index)
        except DomainError:  # no cycle ends past the year 9999
            return None
        if index and self.ends_at is not None and found.start >= self.ends_at:
            return None
        return found

    def entries(self) -> list[DueEntry]:
        """RENEW when the next cycle begins, FINALIZE when the next to finalize ends,
        END when the subscription ends."""
        due = []
        if self.ends_at is not None and not self.ended:
            due.append(DueEntry(Due.END, self.aggregate_id, self.ends_at))
        renew = self._billed(self.renewed_through + 1)
        if renew is not None:
            due.append(DueEntry(Due.RENEW, self.aggregate_id, renew.start, renew.index))
        final = self._billed(self.next_to_finalize)
        if final is not None:
            due.append(DueEntry(Due.FINALIZE, self.aggregate_id, final.end, final.index))
        return due

    def end_of_cycle_holding(self, moment: datetime) -> datetime:
        """The end of the cycle ``moment`` falls in (the first, before the start)."""
        moment = max(moment, self.started_at)
        interval = Interval(self.interval)
        return cycle_at(self.started_at, interval, self.interval_count, moment).end

    def ended_by(self, requested_at: datetime) -> datetime:
        """When a cancellation asked at ``requested_at`` takes effect: that cycle's end."""
        requested_at = max(requested_at, self.started_at)
        return cycle_at(
            self.started_at, Interval(self.interval), self.interval_count, requested_at
        ).end


@dataclass(slots=True)
class ScheduleChanges:
    subscriptions: list[Billed] = field(default_factory=list)
    entries: list[DueEntry] = field(default_factory=list)  # written (replacing one of its key)
    removed: list[tuple[int, str, str]] = field(default_factory=list)  # DueEntry.key


class ScheduleStore(TrackedView, Protocol):
    def record(self, changes: ScheduleChanges, tracking: Tracking, after: int) -> None: ...

    def subscriptions(self, aggregate_ids: Collection[str]) -> list[Billed]: ...

    def due(self, now: datetime, grace: timedelta, limit: int) -> list[DueEntry]:
        """Entries due: RENEW at or before ``now``; FINALIZE and EXPIRE at or before
        ``now - grace``; the oldest first, at most ``limit`` of each kind."""
        ...


class ScheduleProjection:
    """An EXPIRE entry falls due when the grant may end: at its expiry, or, for a grant
    a subscription gave, once the cycle it expires in has ended (that cycle draws on it
    and is finalized first); so a grant shorter than its cycle does not sit at the top
    of the schedule, due but refused, until then."""

    name = "billing_schedule"

    def __init__(self, view: ScheduleStore, aggregate_at: AggregateAt) -> None:
        self._view = view
        self._aggregate_at = aggregate_at

    @property
    def view(self) -> ScheduleStore:
        return self._view

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        accounts, named = self._accounts(batch)
        givers = {
            str(subscription_aggregate_id(account.business_id, state.source_id))
            for account in accounts.values()
            for grant_id in named[str(account.id)]
            if (state := account.grants.get(grant_id)) is not None and state.source_id
        }
        wanted = {str(aggregate_id) for aggregate_id in _subscriptions_in(batch)} | givers
        known = {b.aggregate_id: b for b in self._view.subscriptions(wanted)} if wanted else {}
        touched: set[str] = set()
        for _, e in batch.of(Subscription.Event, InvoiceRecord.Finalized):
            touched.update(_apply(known, e))
        changes = ScheduleChanges()
        for aggregate_id in sorted(touched):
            billed = known[aggregate_id]
            changes.subscriptions.append(billed)
            entries = billed.entries()
            changes.entries.extend(entries)
            kept = {entry.key for entry in entries}
            for kind in (Due.RENEW, Due.FINALIZE, Due.END):
                if (int(kind), aggregate_id, "") not in kept:
                    changes.removed.append((int(kind), aggregate_id, ""))
        for account_id, account in accounts.items():
            for grant_id in sorted(named[account_id]):
                entry = _expiry(account, grant_id, known)
                if entry is None:
                    changes.removed.append((int(Due.EXPIRE), account_id, grant_id))
                else:
                    changes.entries.append(entry)
        self._view.record(changes, tracking, after)

    def _accounts(self, batch: Batch) -> tuple[dict[str, CreditAccount], dict[str, set[str]]]:
        """The credit accounts whose grants the batch gave or ended, as of the batch, and
        those grants."""
        versions: dict[str, tuple[UUID, int]] = {}
        named: dict[str, set[str]] = {}
        for _, e in batch.of(CreditAccount.Granted, CreditAccount.Expired):
            key = str(e.originator_id)
            versions[key] = (e.originator_id, e.originator_version)
            grants = named.setdefault(key, set())
            grants.add(e.grant_id)
            if isinstance(e, CreditAccount.Expired) and e.child_grant_id:
                grants.add(e.child_grant_id)
        accounts = {}
        for key, (aggregate_id, version) in versions.items():
            found = self._aggregate_at(aggregate_id, version)
            assert isinstance(found, CreditAccount)
            accounts[key] = found
        return accounts, named


def _expiry(account: CreditAccount, grant_id: str, known: dict[str, Billed]) -> DueEntry | None:
    """The grant's EXPIRE entry; None once it has ended, or if it never expires."""
    state = account.grants.get(grant_id)
    if state is None or state.expired or state.grant.expires_at is None:
        return None
    due = state.grant.expires_at
    if state.source_id and state.source_type in ("subscription", "rollover"):
        giver = known.get(str(subscription_aggregate_id(account.business_id, state.source_id)))
        if giver is not None:
            due = max(due, giver.end_of_cycle_holding(due - _TICK))
    return DueEntry(Due.EXPIRE, str(account.id), due, 0, grant_id)


def _subscriptions_in(batch: Batch) -> Iterable[UUID]:
    for _, e in batch.of(Subscription.Event, InvoiceRecord.Finalized):
        if isinstance(e, Subscription.Event):
            yield e.originator_id
        elif isinstance(e, InvoiceRecord.Finalized):
            yield subscription_aggregate_id(e.business_id, e.subscription_id)


def _apply(known: dict[str, Billed], e: Subscription.Event | InvoiceRecord.Finalized) -> list[str]:
    """Change what is known of a subscription by one event; the subscription it touched."""
    if isinstance(e, InvoiceRecord.Finalized):
        aggregate_id = str(subscription_aggregate_id(e.business_id, e.subscription_id))
        billed = known.get(aggregate_id)
        if billed is None:  # pragma: no cover - an invoice is always of a subscription
            return []
        next_index = max(billed.next_to_finalize, e.cycle_index + 1)
        known[aggregate_id] = replace(billed, next_to_finalize=next_index)
        return [aggregate_id]
    aggregate_id = str(e.originator_id)
    if isinstance(e, Subscription.Created):
        known[aggregate_id] = Billed(
            aggregate_id, e.started_at, e.interval, e.interval_count, term_ends_at=e.term_ends_at
        )
        return [aggregate_id]
    billed = known[aggregate_id]
    if isinstance(e, Subscription.Renewed):
        billed = replace(billed, renewed_through=max(billed.renewed_through, e.cycle_index))
    elif isinstance(e, Subscription.CancellationScheduled):
        billed = replace(billed, cancelled_at=billed.ended_by(e.requested_at))
    elif isinstance(e, Subscription.CancellationWithdrawn):
        billed = replace(billed, cancelled_at=None)
    elif isinstance(e, Subscription.Ended):
        billed = replace(billed, ended=True)
    known[aggregate_id] = billed
    return [aggregate_id]

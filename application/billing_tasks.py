"""The billing loop's work: whatever the schedule says is due, done once.

Each round reads the due entries with one indexed query
(``ScheduleStore.due``) and runs the task of each:

- ``renew``: a subscription's next cycle has begun; it renews, with the cycle's
  credit grants, in one transaction;
- ``finalize``: a cycle ended the grace period ago; it and any later due cycle
  of the subscription are finalized, in order;
- ``expire``: a credit grant expired the grace period ago; it is ended (rolling
  over what its terms allow) once no cycle that may draw on it is open;
- ``end``: a subscription's cancellation took effect, or its term ran out: that
  it ended is recorded (``Subscription.Ended``).

Every task is idempotent (deterministic ids, versions), so two loops, or a
loop and ``ledger billing close``, may run at once. Once a task has written,
the schedule projection moves its entry on; until then the entry is due again
and its task finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.billing import finalize_cycle
from application.errors import ConflictRetryExhaustedError
from application.grants import end_grant
from application.ledger import Ledger
from application.reads import CATALOGUE, SCHEDULE, Reads
from application.subscriptions import load, renew_subscription
from application.views import Due, DueEntry
from domain.credit_account import CreditAccount
from domain.invoice_record import InvoiceRecord, invoice_aggregate_id, invoice_id_of
from domain.subscription import Subscription

ROUND_LIMIT = 1000  # entries read per round
MAX_ROUNDS = 100  # rounds per call: a backlog larger than this waits for the next tick
MAX_SAVE_ATTEMPTS = 8


@dataclass
class Tick:
    """What one call of ``run_due`` did."""

    finalized: list[InvoiceRecord] = field(default_factory=list)
    renewed: int = 0
    expired: int = 0
    ended: int = 0
    rounds: int = 0


def run_due(
    ledger: Ledger,
    reads: Reads,
    *,
    now: datetime,
    grace: timedelta,
    catch_up: Callable[[], None] | None = None,
) -> Tick:
    """Do everything due by ``now``: rounds until a round finds nothing left to do.

    Between rounds the schedule is brought up to date: by ``catch_up`` when
    given (no projector runs here), else by waiting for this process's projector.
    """
    tick = Tick()
    for _ in range(MAX_ROUNDS):
        if catch_up is not None:
            catch_up()
        else:
            reads.fresh(SCHEDULE, CATALOGUE)
        head = ledger.head()
        entries = reads.schedule.due(now, grace, ROUND_LIMIT)
        tick.rounds += 1
        acted = sum(_run(ledger, reads, entry, now, grace, tick, head) for entry in entries)
        if not acted:
            break
    return tick


def _run(
    ledger: Ledger,
    reads: Reads,
    entry: DueEntry,
    now: datetime,
    grace: timedelta,
    tick: Tick,
    head: int,
) -> bool:
    if entry.kind is Due.RENEW:
        renewed = renew_subscription(ledger, UUID(entry.aggregate_id), now)
        tick.renewed += renewed
        return renewed
    if entry.kind is Due.FINALIZE:
        aggregate_id = UUID(entry.aggregate_id)
        done = finalize_due(ledger, reads, aggregate_id, entry.cycle_index, now, grace, head)
        tick.finalized.extend(done)
        return bool(done)
    if entry.kind is Due.END:
        ended = end_subscription(ledger, UUID(entry.aggregate_id), now)
        tick.ended += ended
        return ended
    expired = expire_grant(ledger, reads, UUID(entry.aggregate_id), entry.grant_id)
    tick.expired += expired
    return expired


def end_subscription(ledger: Ledger, aggregate_id: UUID, now: datetime) -> bool:
    """Record that the subscription has ended, once its end has come."""
    for _ in range(MAX_SAVE_ATTEMPTS):
        subscription = ledger.load(Subscription, aggregate_id)
        if subscription is None or not subscription.end(now):
            return False
        try:
            ledger.save(subscription)
        except IntegrityError:
            continue
        return True
    raise ConflictRetryExhaustedError("the subscription kept changing under its end")


def finalize_due(
    ledger: Ledger,
    reads: Reads,
    aggregate_id: UUID,
    first: int,
    now: datetime,
    grace: timedelta,
    as_of: int | None = None,
) -> list[InvoiceRecord]:
    """Finalize the subscription's cycles from ``first`` on that ended ``grace`` ago, at
    cuts holding at least the log up to ``as_of`` (default: its head as each begins)."""
    subscription = ledger.load(Subscription, aggregate_id)
    if subscription is None:
        return []
    finalized = []
    index = first
    business_id, subscription_id = subscription.business_id, subscription.subscription_id
    while subscription.bills(index) and subscription.cycle(index).end + grace <= now:
        invoice_id = invoice_id_of(business_id, subscription_id, index)
        if not ledger.exists(invoice_aggregate_id(business_id, invoice_id)):
            finalized.append(
                finalize_cycle(
                    ledger, reads, business_id, subscription_id, index, now=now, as_of=as_of
                )
            )
        index += 1
    return finalized


def expire_grant(ledger: Ledger, reads: Reads, account_id: UUID, grant_id: str) -> bool:
    """End one expired grant unless a cycle may still draw on it; True when ended."""
    for _ in range(MAX_SAVE_ATTEMPTS):
        account = ledger.load(CreditAccount, account_id)
        if account is None or grant_id not in account.grants:
            return False
        entries = reads.catalogue.subscriptions_of(account.business_id, account.customer_id)
        peers = [load(ledger, e.business_id, e.subscription_id) for e in entries]
        if not end_grant(ledger, account, grant_id, peers):
            return False
        try:
            ledger.save(account)
        except IntegrityError:
            continue  # the account moved (a debit, a settlement): decide again
        return True
    raise ConflictRetryExhaustedError(f"grant {grant_id}: the account kept changing")

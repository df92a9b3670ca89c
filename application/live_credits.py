"""Live credit: what an open cycle draws, recorded on the accounts as its usage arrives.

Every few seconds (``LEDGER_LIVE_CREDIT_SECONDS``, ``infrastructure.runtime``)
the customers whose usage changed since the last look are read from the usage
log. For each cycle of theirs not finalized yet whose price draws on credits,
finalization is planned as it would be now (``application.billing.plan_cycle``,
at the tallies' cut) and what the plan draws is recorded on each account as the
cycle's provisional draws (``CreditAccount.draw``): the balance goes down as
credit is used, and the ledger has one ``credit_deducted`` entry for the change,
at most one per cycle and entitlement a look. When the cycle is finalized, its
invoice draws the same (the plan folds from the grants as they were before the
provisional draws) and the settlement replaces the provisional draws: a credit
is deducted once, and the entries of a cycle add up to what its invoice drew.

The plan's own decisions that the billing loop would otherwise take a moment
later (the cycle begun, with its grants; earlier grants ended) are saved with
the draws. Meters are not locked: only finalizing bills them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from eventsourcing.persistence import IntegrityError

from application.billing import CyclePlan, plan_cycle
from application.invoicing import latest_finalized
from application.ledger import Ledger
from application.reads import CATALOGUE, USAGE, USAGE_LOG, Reads
from application.subscriptions import load
from domain.credit_account import cycle_key
from domain.subscription import Subscription

MAX_CUSTOMERS = 1000  # customers looked at per round; the rest wait for the next
MAX_OPEN_CYCLES = 3  # cycles of one subscription drawn live: the open one and those in grace
MAX_SAVE_ATTEMPTS = 8


class Cursor(Protocol):
    """Where the last look at the usage log ended (kept across restarts)."""

    def position(self) -> int: ...

    def advance(self, position: int) -> None: ...


def draw_live(ledger: Ledger, reads: Reads, cursor: Cursor, *, now: datetime) -> int:
    """One look: the customers whose usage changed, their open cycles drawn; how many
    accounts changed."""
    reads.fresh(USAGE_LOG, USAGE, CATALOGUE)
    after = cursor.position()
    until = reads.usage_log.max_tracking_id(reads.application_name) or 0
    if until <= after:
        return 0
    changed = 0
    customers = reads.usage_log.customers_changed(after, until, MAX_CUSTOMERS + 1)
    if len(customers) > MAX_CUSTOMERS:  # look at part of the window now, the rest next time
        customers, until = customers[:MAX_CUSTOMERS], customers[MAX_CUSTOMERS][2] - 1
    for business_id, customer_id, _ in customers:
        changed += draw_customer(ledger, reads, business_id, customer_id, now)
    cursor.advance(until)
    return changed


def draw_customer(
    ledger: Ledger, reads: Reads, business_id: str, customer_id: str, now: datetime
) -> int:
    changed = 0
    for entry in reads.catalogue.subscriptions_of(business_id, customer_id):
        subscription = load(ledger, business_id, entry.subscription_id)
        for index in open_cycles(ledger, reads, subscription, now):
            changed += draw_cycle(ledger, reads, subscription, index, now)
    return changed


def open_cycles(ledger: Ledger, reads: Reads, subscription: Subscription, now: datetime) -> range:
    """The cycles begun by ``now`` and not finalized yet (the last few), if any draws credit."""
    product = ledger.load_product(subscription.business_id, subscription.product_id)
    current = subscription.cycle_at(now).index
    if not subscription.bills(current):
        current -= 1
    if current < 0 or not product.price_at(subscription.cycle(current).start).credits:
        return range(0)
    latest = latest_finalized(ledger, reads.catalogue, subscription, current + 1)
    first = 0 if latest is None else latest.cycle_index + 1
    return range(max(first, current - MAX_OPEN_CYCLES + 1), current + 1)


def draw_cycle(
    ledger: Ledger, reads: Reads, subscription: Subscription, index: int, now: datetime
) -> int:
    """Record what cycle ``index`` draws so far on each account it draws from."""
    for _ in range(MAX_SAVE_ATTEMPTS):
        ids = (subscription.business_id, subscription.subscription_id)
        plan = plan_cycle(ledger, reads, *ids, index, now)
        changed = record(plan, now)
        pending = [a for a in (plan.subscription, *plan.accounts.changed()) if a.pending_events]
        if not changed:
            return 0
        try:
            ledger.save(*pending)
        except IntegrityError:
            continue  # a finalization, a debit, another look: plan again
        return changed
    return 0  # it keeps moving: the next look, or finalization, settles it


def record(plan: CyclePlan, now: datetime) -> int:
    """Apply the plan's draws to its accounts as the cycle's provisional draws."""
    draws: dict[str, dict[str, Decimal]] = defaultdict(dict)
    overage: dict[str, Decimal] = defaultdict(Decimal)
    for draw in plan.invoice.draws:
        grants = draws[draw.entitlement_id]
        grants[draw.grant_id] = grants.get(draw.grant_id, Decimal(0)) + draw.credits
    for item in plan.invoice.overage:
        overage[item.entitlement_id] += item.credits
    changed = 0
    cycle, subscription_id = plan.cycle, plan.subscription.subscription_id
    key = cycle_key(subscription_id, cycle.index)
    drawn_before = {a.entitlement_id for a in plan.accounts.loaded() if key in a.provisional}
    for entitlement_id in sorted(set(draws) | set(overage) | drawn_before):
        account = plan.accounts.load(entitlement_id)
        if account is None:
            continue
        totals = sorted(draws.get(entitlement_id, {}).items())
        extra = overage.get(entitlement_id, Decimal(0))
        changed += account.draw(subscription_id, cycle.index, cycle.start, totals, extra, now)
    return changed

"""Credit grants over a subscription's life: given when a cycle begins, drawn by its
invoice, ended when they expire.

Every change is an event on a ``CreditAccount`` (``domain.credit_account``).
The functions here decide on accounts loaded into an ``AccountSet`` and never
save: the caller saves the set's changed accounts with whatever else it
decided (a renewal with its subscription, a finalization with its invoice
record) in one transaction, and decides again if a concurrent writer got there
first. So a preview can take the very decisions finalization takes and show
their result without writing anything.

- A subscription's cycle grants each entitlement its product attaches (at the
  cycle's start, with the price in force then) ``credits_amount`` credits,
  expiring at the cycle's end, or ``expires_after_days`` after its start.
- A cycle's overage under ``carry_deficit`` / ``carry_deficit_auto_repay`` is
  carried as the account's deficit when the cycle is settled (``settle``).
- A grant past its expiry is ended, rolling over what the terms allow into a
  grant that lasts one more cycle (or the rollover timeframe), once no cycle
  that may draw on it is still open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from application.ledger import Ledger
from domain.credit_account import (
    CreditAccount,
    account_aggregate_id,
    cycle_grant_id,
    cycle_key,
    trial_grant_id,
)
from domain.credits import CreditTerms, Grant
from domain.cycles import Cycle, cycle
from domain.invoice_record import invoice_aggregate_id, invoice_id_of
from domain.pricing import UsagePrice
from domain.subscription import Subscription


class AccountSet:
    """A customer's credit accounts as loaded (or opened) for one decision."""

    def __init__(self, ledger: Ledger, business_id: str, customer_id: str) -> None:
        self._ledger = ledger
        self.business_id = business_id
        self.customer_id = customer_id
        self._accounts: dict[str, CreditAccount] = {}

    def get(self, entitlement_id: str, opened_at: datetime) -> CreditAccount:
        """The account under ``entitlement_id``; opened (unsaved) at ``opened_at`` if new."""
        found = self._accounts.get(entitlement_id)
        if found is None:
            found = self.load(entitlement_id) or CreditAccount(
                business_id=self.business_id,
                entitlement_id=entitlement_id,
                customer_id=self.customer_id,
                opened_at=opened_at,
            )
            self._accounts[entitlement_id] = found
        return found

    def load(self, entitlement_id: str) -> CreditAccount | None:
        found = self._accounts.get(entitlement_id)
        if found is not None:
            return found
        aggregate_id = account_aggregate_id(self.business_id, entitlement_id, self.customer_id)
        loaded = self._ledger.load(CreditAccount, aggregate_id)
        if loaded is not None:
            self._accounts[entitlement_id] = loaded
        return loaded

    def loaded(self) -> list[CreditAccount]:
        return list(self._accounts.values())

    def changed(self) -> list[CreditAccount]:
        """The accounts that hold events not saved yet."""
        return [a for a in self._accounts.values() if a.pending_events]


def cycle_price(ledger: Ledger, subscription: Subscription, index: int) -> tuple[Cycle, UsagePrice]:
    """A cycle of the subscription and the price in force when it began."""
    current = subscription.cycle(index)
    product = ledger.load_product(subscription.business_id, subscription.product_id)
    return current, product.price_at(current.start)


def grant_expiry(terms: CreditTerms, current: Cycle) -> datetime:
    if terms.expires_after_days is not None:
        return current.start + timedelta(days=terms.expires_after_days)
    return current.end


def give_cycle_grants(
    ledger: Ledger, subscription: Subscription, index: int, accounts: AccountSet
) -> None:
    """Grant cycle ``index``'s credits (once: their ids are the cycle's)."""
    current, price = cycle_price(ledger, subscription, index)
    for terms in price.credits:
        if index == 0:
            give_trial_credits(subscription, terms, accounts)
        if not terms.credits_amount:
            continue
        account = accounts.get(terms.entitlement_id, current.start)
        account.grant(
            cycle_grant_id(subscription.subscription_id, terms.entitlement_id, index),
            terms.credits_amount,
            source_type="subscription",
            source_id=subscription.subscription_id,
            granted_at=current.start,
            expires_at=grant_expiry(terms, current),
        )


def give_trial_credits(
    subscription: Subscription, terms: CreditTerms, accounts: AccountSet
) -> None:
    """A subscription with a trial gets the attachment's ``trial_credits`` once, at its
    start: until the trial ends (usable by the cycles that begin before it) when they
    expire after the trial, else until spent. They never roll over."""
    trial_ends_at = subscription.trial_ends_at
    if trial_ends_at is None or not terms.trial_credits:
        return
    account = accounts.get(terms.entitlement_id, subscription.started_at)
    account.grant(
        trial_grant_id(subscription.subscription_id, terms.entitlement_id),
        terms.trial_credits,
        source_type="subscription",
        source_id=subscription.subscription_id,
        granted_at=subscription.started_at,
        expires_at=trial_ends_at if terms.trial_credits_expire_after_trial else None,
    )


def renew(ledger: Ledger, subscription: Subscription, through: int, accounts: AccountSet) -> None:
    """Begin the subscription's cycles up to ``through``, giving each one's grants."""
    for index in subscription.renew(through):
        give_cycle_grants(ledger, subscription, index, accounts)


def usable_grants(
    price: UsagePrice, current: Cycle, accounts: AccountSet
) -> dict[str, list[Grant]]:
    """The grants each attached entitlement has usable in ``current``."""
    found: dict[str, list[Grant]] = {}
    for terms in price.credits:
        account = accounts.load(terms.entitlement_id)
        found[terms.entitlement_id] = (
            [] if account is None else account.usable_grants(current.start, current.end)
        )
    return found


def end_expired(
    ledger: Ledger,
    subscription: Subscription,
    price: UsagePrice,
    before: datetime,
    peers: Sequence[Subscription],
    accounts: AccountSet,
) -> None:
    """End the grants this subscription gave under ``price``'s entitlements that expired
    by ``before``, where no cycle of the customer's may still draw on them."""
    for terms in price.credits:
        account = accounts.load(terms.entitlement_id)
        if account is None:
            continue
        due = sorted(
            (s.grant.expires_at, grant_id)
            for grant_id, s in account.grants.items()
            if not s.expired
            and s.grant.expires_at is not None
            and s.grant.expires_at <= before
            and s.source_id == subscription.subscription_id
        )
        for _, grant_id in due:
            end_grant(ledger, account, grant_id, peers)


def end_grant(
    ledger: Ledger, account: CreditAccount, grant_id: str, peers: Sequence[Subscription]
) -> bool:
    """End an expired grant unless a cycle that may draw on it is not finalized yet.

    A subscription's grant rolls over by the terms of the subscription that gave
    it; ``peers`` are the customer's subscriptions. False when it stays.
    """
    state = account.grants[grant_id]
    expires_at = state.grant.expires_at
    if state.expired or expires_at is None or still_drawn_on(ledger, state.grant, peers):
        return False
    giver = next((p for p in peers if p.subscription_id == state.source_id), None)
    carried = Decimal(0)
    child_expires: datetime | None = None
    rolls = state.source_type in ("subscription", "rollover") and giver is not None
    if giver is not None and grant_id == trial_grant_id(
        giver.subscription_id, account.entitlement_id
    ):
        rolls = False  # trial credits never roll over
    if rolls and giver is not None and state.grant.balance:
        terms = _terms_for(ledger, giver, account.entitlement_id, state.grant.granted_at)
        if terms is not None and terms.rollover is not None:
            carried, _ = terms.rollover.split(state.grant.balance, state.rollover_count)
            if terms.rollover_timeframe is not None:
                frequency = terms.rollover_timeframe
                child_expires = cycle(expires_at, frequency.interval, frequency.count, 0).end
            else:
                child_expires = giver.cycle_at(expires_at).end
    account.expire(grant_id, carried, child_expires, expires_at)
    return True


def still_drawn_on(ledger: Ledger, grant: Grant, peers: Sequence[Subscription]) -> bool:
    """Some cycle that may draw on ``grant`` (it overlaps its life) is not finalized yet."""
    assert grant.expires_at is not None
    for peer in peers:
        start = max(grant.granted_at, peer.started_at)
        if start >= grant.expires_at:
            continue
        index = peer.cycle_at(start).index
        while peer.bills(index) and (current := peer.cycle(index)).start < grant.expires_at:
            invoice_id = invoice_id_of(peer.business_id, peer.subscription_id, current.index)
            if not ledger.exists(invoice_aggregate_id(peer.business_id, invoice_id)):
                return True
            index += 1
    return False


def _terms_for(
    ledger: Ledger, subscription: Subscription, entitlement_id: str, at: datetime
) -> CreditTerms | None:
    product = ledger.load_product(subscription.business_id, subscription.product_id)
    return product.price_at(at).terms(entitlement_id)


def drawn_grants(document: Mapping[str, Any], start: datetime) -> dict[str, list[Grant]]:
    """Grants holding exactly what a finalized invoice drew, in the order it drew them:
    folding its cycle again (an adjustment, an audit) uses that credit, never more."""
    drawn: dict[tuple[str, str], Decimal] = {}
    for draw in document.get("credit_draws", []):
        key = (draw["credit_entitlement_id"], draw["grant_id"])
        drawn[key] = drawn.get(key, Decimal(0)) + Decimal(draw["credits"])
    grants: dict[str, list[Grant]] = {}
    for order, ((entitlement_id, grant_id), credits) in enumerate(drawn.items(), start=1):
        # expiring one microsecond apart in first-drawn order, they are drawn in that order
        expires = start + timedelta(microseconds=order)
        grants.setdefault(entitlement_id, []).append(Grant(grant_id, credits, start, expires))
    return grants


@dataclass(frozen=True, slots=True)
class LateOverage:
    """What late usage of finalized cycles adds to an entitlement's overage that carries
    a deficit (``carry_deficit*``): ``carried`` of ``overage`` credits stays as deficit."""

    overage: Decimal
    carried: Decimal
    repays: bool


def settle(
    accounts: AccountSet,
    invoice_id: str,
    document: Mapping[str, Any],
    at: datetime,
    *,
    subscription_id: str,
    cycle_index: int,
    terms: Mapping[str, CreditTerms],
    late: Mapping[str, LateOverage] | None = None,
) -> None:
    """Apply a finalized invoice's draws and overage to the accounts they came from,
    in place of what the cycle drew provisionally; with the ``late`` overage of the
    earlier cycles it adjusts, where their entitlements carry a deficit.

    ``terms`` are the cycle's (the price in force at its start): they say how much
    of each entitlement's overage is carried as a deficit, and whether credit
    repays it. The invoice was folded from these same account versions, so every
    draw fits; saving them with the invoice record in one transaction makes both
    or neither.
    """
    own = settlements(document)
    late = late or {}
    for entitlement_id in sorted(own.keys() | late.keys()):
        drawn, overage, billed = own.get(entitlement_id, ([], Decimal(0), Decimal(0)))
        account = accounts.get(entitlement_id, at)
        found = terms.get(entitlement_id)
        carried = Decimal(0) if found is None else found.carried(overage)
        repays = found is not None and found.repays_deficit
        if entitlement_id in late:  # earlier cycles' late overage, carried with this one's
            extra = late[entitlement_id]
            overage, carried = overage + extra.overage, carried + extra.carried
            repays = repays or extra.repays
        account.settle(
            invoice_id,
            drawn,
            overage,
            billed,
            at,
            subscription_id=subscription_id,
            cycle_index=cycle_index,
            carried=carried,
            repays=repays,
        )
    key = cycle_key(subscription_id, cycle_index)
    for account in accounts.loaded():  # drew provisionally, and at the cut nothing
        if key in account.provisional and invoice_id not in account.settled:
            account.settle(
                invoice_id,
                [],
                Decimal(0),
                Decimal(0),
                at,
                subscription_id=subscription_id,
                cycle_index=cycle_index,
            )


def settlements(
    document: Mapping[str, Any],
) -> dict[str, tuple[list[tuple[str, Decimal]], Decimal, Decimal]]:
    """Per entitlement, what a finalized invoice drew (grant, credits) and its overage."""
    found: dict[str, tuple[dict[str, Decimal], Decimal, Decimal]] = {}
    zero = Decimal(0)
    for draw in document.get("credit_draws", []):
        drawn, overage, billed = found.get(draw["credit_entitlement_id"], ({}, zero, zero))
        drawn[draw["grant_id"]] = drawn.get(draw["grant_id"], Decimal(0)) + Decimal(draw["credits"])
        found[draw["credit_entitlement_id"]] = (drawn, overage, billed)
    for item in document.get("credit_overage", []):
        drawn, overage, billed = found.get(item["credit_entitlement_id"], ({}, zero, zero))
        found[item["credit_entitlement_id"]] = (
            drawn,
            overage + Decimal(item["credits"]),
            billed + Decimal(item["billed_credits"]),
        )
    return {
        entitlement_id: (sorted(drawn.items()), overage, billed)
        for entitlement_id, (drawn, overage, billed) in sorted(found.items())
    }

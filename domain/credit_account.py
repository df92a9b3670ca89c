"""Each customer's credit account under one credit entitlement.

A ``CreditAccount`` is one customer's credit under one entitlement: a log of
grants, debits, cycle settlements and expiries, every one an immutable event.
Its state is the grants with what is left of each, and the ledger entries
(``balance_before``/``after``, ``overage_before``/``after``) those events
produced, so the balance projection and the API read exactly what the log
says. Amounts are exact Decimals at the entitlement's precision.

- A cycle's grant has a deterministic id (subscription, entitlement, cycle),
  so granting it twice changes nothing.
- ``draw`` records what an open (not yet finalized) cycle has drawn so far, as
  its usage arrives: provisional, the cycle's total per grant and its overage
  each time, so the balance shows credit as it is used. A change of that total
  is one ledger entry (``credit_deducted``; credits given back if it fell, after
  a void, with ``is_credit``), and a change of the overage one
  ``overage_charged``.
- ``settle`` records what a finalized invoice drew (``domain.credits.cover``)
  and its overage, which is billed or forgiven, then reset, at once; what the
  cycle drew provisionally is reconciled, so each credit is deducted once.
  A cycle's fold reads the grants as they were before its own provisional
  draws and those of later cycles (``usable_grants``): what it draws does not
  depend on when the provisional draws were recorded.
- A deficit: a cycle settled under ``carry_deficit`` or
  ``carry_deficit_auto_repay`` keeps its overage (``carried``; no
  ``overage_reset``): the account's ``overage`` holds it as ``deficit`` after the
  settlement. Under ``carry_deficit`` it stays (credit given later is the
  customer's in full); under ``carry_deficit_auto_repay`` credit pays it back
  first (``_repay``): at the settlement, the credit there is then, in the
  drawdown order, including what later open cycles drew provisionally (their
  draws give way and become their overage, so a later cycle draws on its grant
  minus the deficit whenever its draws were recorded), and then each grant
  given while a deficit is owed. A repayment is an ``overage_reset`` entry that
  lowers the balance and the overage by the same credits.
- ``expire`` ends a grant: its remaining balance rolls over by the terms'
  ``RolloverRule`` into a new grant (``source_type`` ``rollover``, its
  ``rollover_count`` one more) and the rest is forfeited, or all of it expires.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.credits import Grant, draw_down, drawdown_order
from domain.errors import InsufficientCreditError, InvalidCreditError
from domain.meter import canonical_number

CREDIT_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/credit")
_ZERO = Decimal(0)
_SEP = "\x1f"


def account_aggregate_id(business_id: str, entitlement_id: str, customer_id: str) -> UUID:
    return uuid5(CREDIT_NAMESPACE, f"account\x1f{business_id}\x1f{entitlement_id}\x1f{customer_id}")


def cycle_grant_id(subscription_id: str, entitlement_id: str, cycle_index: int) -> str:
    """The id of the grant a subscription's cycle gives: the same for every granter."""
    key = f"cycle\x1f{subscription_id}\x1f{entitlement_id}\x1f{cycle_index}"
    return f"grt_{uuid5(CREDIT_NAMESPACE, key).hex[:24]}"


def trial_grant_id(subscription_id: str, entitlement_id: str) -> str:
    """The id of the grant of a subscription's trial credits."""
    key = f"trial\x1f{subscription_id}\x1f{entitlement_id}"
    return f"grt_{uuid5(CREDIT_NAMESPACE, key).hex[:24]}"


def rollover_grant_id(parent_grant_id: str) -> str:
    return f"grt_{uuid5(CREDIT_NAMESPACE, 'rollover' + _SEP + parent_grant_id).hex[:24]}"


def entry_id_of(account: UUID, sequence: int) -> str:
    return f"cle_{uuid5(CREDIT_NAMESPACE, f'{account}{_SEP}{sequence}').hex[:24]}"


@dataclass(frozen=True, slots=True)
class Provisional:
    """What an open cycle has drawn so far: per grant, and its overage."""

    cycle_start: datetime
    draws: dict[str, Decimal]
    overage: Decimal


def cycle_key(subscription_id: str, cycle_index: int) -> str:
    return f"{subscription_id}{_SEP}{cycle_index}"


@dataclass(frozen=True, slots=True)
class GrantState:
    """A grant as the account holds it."""

    grant: Grant
    initial: Decimal
    source_type: str
    source_id: str | None
    parent_grant_id: str | None
    rollover_count: int
    created_at: datetime
    updated_at: datetime
    expired: bool = False
    rolled_over: bool = False


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One movement of an account, with the balance and overage around it."""

    entry_id: str
    transaction_type: str
    amount: Decimal
    is_credit: bool
    balance_before: Decimal
    balance_after: Decimal
    overage_before: Decimal
    overage_after: Decimal
    created_at: datetime
    grant_id: str | None = None
    reference_type: str | None = None
    reference_id: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None


class CreditAccount(Aggregate):
    """One customer's credit under one entitlement."""

    class Opened(Aggregate.Created):
        business_id: str
        entitlement_id: str
        customer_id: str
        opened_at: datetime

    class Granted(Aggregate.Event):
        grant_id: str
        amount: Decimal
        source_type: str
        source_id: str | None
        parent_grant_id: str | None
        rollover_count: int
        granted_at: datetime
        expires_at: datetime | None
        reason: str | None
        metadata: dict[str, Any] | None
        idempotency_key: str | None

    class Debited(Aggregate.Event):
        amount: Decimal
        deductions: list[tuple[str, Decimal]]
        at: datetime
        reason: str | None
        metadata: dict[str, Any] | None
        idempotency_key: str | None

    class Drawn(Aggregate.Event):
        """An open cycle's draws so far (totals, not changes) and its overage."""

        subscription_id: str
        cycle_index: int
        cycle_start: datetime
        draws: list[tuple[str, Decimal]]
        overage: Decimal
        at: datetime

    class Settled(Aggregate.Event):
        invoice_id: str
        deductions: list[tuple[str, Decimal]]
        overage: Decimal
        overage_billed: Decimal  # of ``overage``, credits billed on the invoice
        at: datetime
        subscription_id: str = ""  # the cycle settled: its provisional draws end
        cycle_index: int = -1
        carried: Decimal = _ZERO  # of ``overage``, credits kept as a deficit (not reset)
        repays: bool = False  # whether credit pays the deficit back

    class Expired(Aggregate.Event):
        grant_id: str
        carried: Decimal
        forfeited: Decimal
        child_grant_id: str | None
        child_expires_at: datetime | None
        at: datetime

    @event(Opened)
    def __init__(
        self, business_id: str, entitlement_id: str, customer_id: str, opened_at: datetime
    ) -> None:
        self.business_id = business_id
        self.entitlement_id = entitlement_id
        self.customer_id = customer_id
        self.opened_at = opened_at
        self.updated_at = opened_at
        self.last_transaction_at: datetime | None = None
        self.grants: dict[str, GrantState] = {}
        self.entries: list[LedgerEntry] = []
        self.settled: set[str] = set()
        self.keys: dict[str, str] = {}  # idempotency key -> entry id
        self.provisional: dict[str, Provisional] = {}  # cycle_key -> what it drew so far
        self.overage = _ZERO  # the open cycles' provisional overage and the deficit
        self.deficit = _ZERO  # overage carried past settled cycles, not repaid yet
        self.repays_deficit = False  # as the last settlement that carried one said

    @staticmethod
    def create_id(business_id: str, entitlement_id: str, customer_id: str) -> UUID:
        return account_aggregate_id(business_id, entitlement_id, customer_id)

    @property
    def balance(self) -> Decimal:
        live = (s.grant.balance for s in self.grants.values() if not s.expired)
        return canonical_number(sum(live, _ZERO))

    def usable_grants(self, start: datetime, end: datetime) -> list[Grant]:
        """Grants with credit left that a cycle from ``start`` to ``end`` may draw on,
        as they were before the provisional draws of that cycle and later ones."""
        back: dict[str, Decimal] = {}
        for provisional in self.provisional.values():
            if provisional.cycle_start >= start:
                for grant_id, credits in provisional.draws.items():
                    back[grant_id] = back.get(grant_id, _ZERO) + credits
        found = []
        for grant_id, s in self.grants.items():
            balance = canonical_number(s.grant.balance + back.get(grant_id, _ZERO))
            if (
                not s.expired
                and balance > 0
                and s.grant.granted_at < end
                and (s.grant.expires_at is None or s.grant.expires_at > start)
            ):
                found.append(replace(s.grant, balance=balance))
        return found

    def entry_for(self, idempotency_key: str) -> LedgerEntry | None:
        entry_id = self.keys.get(idempotency_key)
        return next((e for e in self.entries if e.entry_id == entry_id), None)

    # --- commands -------------------------------------------------------------

    def grant(
        self,
        grant_id: str,
        amount: Decimal,
        *,
        source_type: str,
        source_id: str | None,
        granted_at: datetime,
        expires_at: datetime | None,
        parent_grant_id: str | None = None,
        rollover_count: int = 0,
        reason: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> bool:
        """Give a grant once; False when ``grant_id`` (or the key) was given before."""
        if grant_id in self.grants or (idempotency_key and idempotency_key in self.keys):
            return False
        Grant(grant_id, amount, granted_at, expires_at)  # validates
        self._on_granted(
            grant_id,
            amount,
            source_type,
            source_id,
            parent_grant_id,
            rollover_count,
            granted_at,
            expires_at,
            reason,
            metadata,
            idempotency_key,
        )
        return True

    def debit(
        self,
        amount: Decimal,
        at: datetime,
        *,
        reason: str | None,
        metadata: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> None:
        """Take ``amount`` from the grants usable at ``at``, in the drawdown order."""
        grants = [s.grant for s in self.grants.values() if not s.expired]
        drawdown = draw_down(grants, amount, at)
        if drawdown.overage:
            raise InsufficientCreditError(
                f"a debit of {amount} exceeds the {drawdown.covered} credits usable now"
            )
        deductions = [(d.grant_id, d.units) for d in drawdown.deductions]
        self._on_debited(amount, deductions, at, reason, metadata, idempotency_key)

    def draw(
        self,
        subscription_id: str,
        cycle_index: int,
        cycle_start: datetime,
        draws: list[tuple[str, Decimal]],
        overage: Decimal,
        at: datetime,
    ) -> bool:
        """Record an open cycle's draws so far (its totals); False when unchanged."""
        key = cycle_key(subscription_id, cycle_index)
        before = self.provisional.get(key)
        wanted = {grant_id: canonical_number(credits) for grant_id, credits in draws if credits}
        if before is not None and (before.draws, before.overage) == (wanted, overage):
            return False
        if before is None and not wanted and not overage:
            return False
        for grant_id, credits in wanted.items():
            state = self.grants.get(grant_id)
            drawn = before.draws.get(grant_id, _ZERO) if before else _ZERO
            if state is None or state.expired or state.grant.balance + drawn < credits:
                raise InvalidCreditError(f"cycle {key!r} draws more than grant {grant_id}")
        self._on_drawn(
            subscription_id, cycle_index, cycle_start, sorted(wanted.items()), overage, at
        )
        return True

    def settle(
        self,
        invoice_id: str,
        deductions: list[tuple[str, Decimal]],
        overage: Decimal,
        overage_billed: Decimal,
        at: datetime,
        *,
        subscription_id: str = "",
        cycle_index: int = -1,
        carried: Decimal = _ZERO,
        repays: bool = False,
    ) -> bool:
        """Record what a finalized invoice drew; once per invoice.

        ``carried`` of the ``overage`` stays as a deficit (``repays``: paid back by
        credit); the rest is reset.

        The invoice was folded from this account's grants as they were before the
        cycle's provisional draws, so every deduction fits once those are given
        back; one that does not means it was folded from another state.
        """
        if invoice_id in self.settled:
            return False
        provisional = self.provisional.get(cycle_key(subscription_id, cycle_index))
        for grant_id, credits in deductions:
            state = self.grants.get(grant_id)
            drawn = provisional.draws.get(grant_id, _ZERO) if provisional else _ZERO
            if state is None or state.expired or state.grant.balance + drawn < credits:
                raise InvalidCreditError(f"invoice {invoice_id} draws more than grant {grant_id}")
        if not _ZERO <= carried <= overage:
            raise InvalidCreditError(f"invoice {invoice_id} carries more than its overage")
        self._on_settled(
            invoice_id,
            deductions,
            overage,
            overage_billed,
            at,
            subscription_id,
            cycle_index,
            carried,
            repays,
        )
        return True

    def expire(
        self,
        grant_id: str,
        carried: Decimal,
        child_expires_at: datetime | None,
        at: datetime,
    ) -> None:
        """End a grant; ``carried`` of its balance rolls into a new grant, the rest is lost."""
        state = self.grants[grant_id]
        if state.expired:
            return
        if not _ZERO <= carried <= state.grant.balance:
            raise InvalidCreditError("a rollover carries at most the grant's balance")
        forfeited = canonical_number(state.grant.balance - carried)
        child = rollover_grant_id(grant_id) if carried else None
        self._on_expired(
            grant_id, carried, forfeited, child, child_expires_at if child else None, at
        )

    # --- events ---------------------------------------------------------------

    def _entry(
        self,
        kind: str,
        amount: Decimal,
        before: tuple[Decimal, Decimal],
        at: datetime,
        *,
        is_credit: bool,
        **extra: Any,
    ) -> None:
        entry = LedgerEntry(
            entry_id_of(self.id, len(self.entries)),
            kind,
            canonical_number(amount),
            is_credit,
            before[0],
            self.balance,
            before[1],
            extra.pop("overage_after", _ZERO),
            at,
            **extra,
        )
        self.entries.append(entry)
        if entry.idempotency_key:
            self.keys[entry.idempotency_key] = entry.entry_id
        self.updated_at = self.last_transaction_at = at

    def _take(self, grant_id: str, credits: Decimal, at: datetime) -> None:
        state = self.grants[grant_id]
        left = canonical_number(state.grant.balance - credits)
        self.grants[grant_id] = replace(
            state, grant=replace(state.grant, balance=left), updated_at=at
        )

    @event(Granted)
    def _on_granted(
        self,
        grant_id: str,
        amount: Decimal,
        source_type: str,
        source_id: str | None,
        parent_grant_id: str | None,
        rollover_count: int,
        granted_at: datetime,
        expires_at: datetime | None,
        reason: str | None,
        metadata: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> None:
        before = (self.balance, _ZERO)
        self.grants[grant_id] = GrantState(
            Grant(grant_id, amount, granted_at, expires_at),
            canonical_number(amount),
            source_type,
            source_id,
            parent_grant_id,
            rollover_count,
            granted_at,
            granted_at,
        )
        kind = "manual_adjustment" if source_type == "api" else "credit_added"
        self._entry(
            kind,
            amount,
            before,
            granted_at,
            is_credit=True,
            grant_id=grant_id,
            reference_type=source_type,
            reference_id=source_id,
            description=reason,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        if self.deficit and self.repays_deficit:
            self._repay(granted_at, "grant", grant_id)

    @event(Debited)
    def _on_debited(
        self,
        amount: Decimal,
        deductions: list[tuple[str, Decimal]],
        at: datetime,
        reason: str | None,
        metadata: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> None:
        before = (self.balance, _ZERO)
        for grant_id, credits in deductions:
            self._take(grant_id, credits, at)
        first = deductions[0][0] if len(deductions) == 1 else None
        self._entry(
            "manual_adjustment",
            amount,
            before,
            at,
            is_credit=False,
            grant_id=first,
            reference_type="api",
            description=reason,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )

    @event(Drawn)
    def _on_drawn(
        self,
        subscription_id: str,
        cycle_index: int,
        cycle_start: datetime,
        draws: list[tuple[str, Decimal]],
        overage: Decimal,
        at: datetime,
    ) -> None:
        key = cycle_key(subscription_id, cycle_index)
        before = self.provisional.get(key) or Provisional(cycle_start, {}, _ZERO)
        wanted = {grant_id: Decimal(credits) for grant_id, credits in draws}
        reference = f"{subscription_id}:{cycle_index}"
        self._redraw(before.draws, wanted, at, reference, "subscription_cycle")
        self._reovercharge(before.overage, Decimal(overage), at, reference)
        self.provisional[key] = Provisional(cycle_start, wanted, Decimal(overage))

    def _redraw(
        self,
        before: dict[str, Decimal],
        after: dict[str, Decimal],
        at: datetime,
        reference: str,
        reference_type: str,
    ) -> None:
        """Move the grants from ``before``'s draws to ``after``'s: one entry for the change."""
        changes = {
            grant_id: after.get(grant_id, _ZERO) - before.get(grant_id, _ZERO)
            for grant_id in sorted(set(before) | set(after))
        }
        changes = {grant_id: change for grant_id, change in changes.items() if change}
        if not changes:
            return
        balance_before = (self.balance, self.overage)
        for grant_id, change in changes.items():
            self._take(grant_id, change, at)
        total = canonical_number(sum(changes.values(), _ZERO))
        if not total:
            return  # moved between grants, the balance the same
        self._entry(
            "credit_deducted",
            abs(total),
            balance_before,
            at,
            is_credit=total < 0,
            overage_after=self.overage,
            grant_id=next(iter(changes)) if len(changes) == 1 else None,
            reference_type=reference_type,
            reference_id=reference,
        )

    def _reovercharge(self, before: Decimal, after: Decimal, at: datetime, reference: str) -> None:
        change = canonical_number(after - before)
        if not change:
            return
        overage_before = self.overage
        self.overage = canonical_number(self.overage + change)
        self._entry(
            "overage_charged",
            abs(change),
            (self.balance, overage_before),
            at,
            is_credit=change < 0,
            overage_after=self.overage,
            reference_type="subscription_cycle",
            reference_id=reference,
        )

    @event(Settled)
    def _on_settled(
        self,
        invoice_id: str,
        deductions: list[tuple[str, Decimal]],
        overage: Decimal,
        overage_billed: Decimal,
        at: datetime,
        subscription_id: str = "",
        cycle_index: int = -1,
        carried: Decimal = _ZERO,
        repays: bool = False,
    ) -> None:
        self.settled.add(invoice_id)
        provisional = self.provisional.pop(cycle_key(subscription_id, cycle_index), None)
        drawn = {} if provisional is None else provisional.draws
        final: dict[str, Decimal] = {}
        for grant_id, credits in deductions:
            final[grant_id] = final.get(grant_id, _ZERO) + Decimal(credits)
        order = [grant_id for grant_id, _ in deductions] + sorted(set(drawn) - set(final))
        for grant_id in dict.fromkeys(order):  # in the drawdown order, each grant once
            change = final.get(grant_id, _ZERO) - drawn.get(grant_id, _ZERO)
            if not change:
                continue
            before = (self.balance, self.overage)
            self._take(grant_id, change, at)
            self._entry(
                "credit_deducted",
                abs(change),
                before,
                at,
                is_credit=change < 0,
                overage_after=self.overage,
                grant_id=grant_id,
                reference_type="invoice",
                reference_id=invoice_id,
            )
        provisional_overage = _ZERO if provisional is None else provisional.overage
        extra = canonical_number(Decimal(overage) - provisional_overage)
        if extra:
            overage_before = self.overage
            self.overage = canonical_number(self.overage + extra)
            self._entry(
                "overage_charged",
                abs(extra),
                (self.balance, overage_before),
                at,
                is_credit=extra < 0,
                overage_after=self.overage,
                reference_type="invoice",
                reference_id=invoice_id,
                description=_overage_text(Decimal(overage), Decimal(overage_billed)),
            )
        reset = canonical_number(Decimal(overage) - Decimal(carried))
        if reset:
            overage_before = self.overage
            self.overage = canonical_number(self.overage - reset)
            self._entry(
                "overage_reset",
                reset,
                (self.balance, overage_before),
                at,
                is_credit=True,
                overage_after=self.overage,
                reference_type="invoice",
                reference_id=invoice_id,
            )
        if carried:
            self.deficit = canonical_number(self.deficit + Decimal(carried))
            self.repays_deficit = repays
        if self.deficit and self.repays_deficit:
            self._repay(at, "invoice", invoice_id)

    def _repay(self, at: datetime, reference_type: str, reference_id: str) -> None:
        """Pay the deficit back from the credit there is, in the drawdown order.

        Credit that an open cycle drew provisionally pays too: that cycle's draw
        gives way (its overage grows by as much), so what a later cycle may draw is
        its grants minus the deficit, whenever its draws were recorded.
        """
        live = [s.grant for s in self.grants.values() if not s.expired]
        for grant in drawdown_order(live):
            if not self.deficit:
                return
            held = sum(
                (p.draws.get(grant.grant_id, _ZERO) for p in self.provisional.values()), _ZERO
            )
            balance = self.grants[grant.grant_id].grant.balance
            take = min(canonical_number(balance + held), self.deficit)
            if take > balance:
                self._give_way(grant.grant_id, canonical_number(take - balance), at)
            if not take:
                continue
            before = (self.balance, self.overage)
            self._take(grant.grant_id, take, at)
            self.deficit = canonical_number(self.deficit - take)
            self.overage = canonical_number(self.overage - take)
            self._entry(
                "overage_reset",
                take,
                before,
                at,
                is_credit=True,
                overage_after=self.overage,
                grant_id=grant.grant_id,
                reference_type=reference_type,
                reference_id=reference_id,
                description=f"deficit repaid from grant {grant.grant_id}",
            )

    def _give_way(self, grant_id: str, credits: Decimal, at: datetime) -> None:
        """Undo ``credits`` of the open cycles' draws on a grant, the latest cycle first;
        what they no longer draw becomes their overage."""
        for key in sorted(self.provisional, key=lambda k: self.provisional[k].cycle_start)[::-1]:
            provisional = self.provisional[key]
            back = min(provisional.draws.get(grant_id, _ZERO), credits)
            if not back:
                continue
            draws = {
                **provisional.draws,
                grant_id: canonical_number(provisional.draws[grant_id] - back),
            }
            draws = {g: c for g, c in draws.items() if c}
            after = replace(
                provisional, draws=draws, overage=canonical_number(provisional.overage + back)
            )
            self.provisional[key] = after
            reference = key.replace(_SEP, ":")
            self._redraw({grant_id: back}, {}, at, reference, "subscription_cycle")
            self._reovercharge(_ZERO, back, at, reference)
            credits = canonical_number(credits - back)
            if not credits:
                return

    @event(Expired)
    def _on_expired(
        self,
        grant_id: str,
        carried: Decimal,
        forfeited: Decimal,
        child_grant_id: str | None,
        child_expires_at: datetime | None,
        at: datetime,
    ) -> None:
        if forfeited:  # what is lost leaves the balance first
            before = (self.balance, _ZERO)
            self._take(grant_id, forfeited, at)
            kind = "rollover_forfeited" if child_grant_id else "credit_expired"
            self._entry(kind, forfeited, before, at, is_credit=False, grant_id=grant_id)
        state = self.grants[grant_id]
        before = (self.balance, _ZERO)
        self.grants[grant_id] = replace(
            state,
            grant=replace(state.grant, balance=_ZERO),
            expired=True,
            rolled_over=child_grant_id is not None,
            updated_at=at,
        )
        if child_grant_id is not None:  # the rest moves to a new grant: the balance stays
            self.grants[child_grant_id] = GrantState(
                Grant(child_grant_id, carried, at, child_expires_at),
                canonical_number(carried),
                "rollover",
                state.source_id,
                grant_id,
                state.rollover_count + 1,
                at,
                at,
            )
            self._entry(
                "credit_rolled_over",
                carried,
                before,
                at,
                is_credit=True,
                grant_id=child_grant_id,
                reference_type="grant",
                reference_id=grant_id,
            )


def _overage_text(overage: Decimal, billed: Decimal) -> str:
    forgiven = canonical_number(overage - billed)
    parts = [f"{canonical_number(billed)} billed on the invoice"] if billed else []
    return ", ".join([*parts, f"{forgiven} forgiven"] if forgiven else parts)

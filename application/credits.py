"""Credits: entitlements, each customer's account, and the grants cycles give.

Every change is an event on a ``CreditAccount`` (``domain.credit_account``);
this module decides when they happen:

- a subscription's cycle grants each entitlement its product attaches (at the
  cycle's start, with the price in force then) ``credits_amount`` credits,
  expiring at the cycle's end, or ``expires_after_days`` after its start;
- a cycle's invoice draws on the grants usable in it (``usable_grants``), and
  its finalization records the draws and the overage on the account
  (``settle_accounts``, in the same transaction as the invoice record);
- a grant past its expiry is ended by the billing loop, rolling over what the
  terms allow into a grant that lasts one more cycle (or the rollover timeframe);
- manual ledger entries credit (a new grant) or debit (in the drawdown order).

Saving an account retries on a concurrent write: every command is idempotent
(deterministic grant ids, one settlement per invoice, idempotency keys).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.errors import (
    ConflictRetryExhaustedError,
    IdempotencyKeyReusedError,
    NotFoundError,
)
from application.ledger import Ledger
from domain.credit_account import (
    CreditAccount,
    LedgerEntry,
    account_aggregate_id,
    cycle_grant_id,
)
from domain.credit_entitlement import (
    CreditEntitlement,
    entitlement_aggregate_id,
    parse_entitlement,
)
from domain.credits import CreditTerms, Grant
from domain.cycles import Cycle, cycle
from domain.errors import InvalidCreditError
from domain.invoice_record import invoice_aggregate_id, invoice_id_of
from domain.metadata import validate_metadata
from domain.pricing import UsagePrice
from domain.subscription import Subscription

T = TypeVar("T")
_AMOUNT_TEXT = re.compile(r"[0-9]{1,10}(\.[0-9]{1,28})?")
MAX_SAVE_ATTEMPTS = 8


def create_entitlement(
    ledger: Ledger, business_id: str, raw: Mapping[str, Any], now: datetime
) -> CreditEntitlement:
    entitlement = CreditEntitlement(
        business_id=business_id,
        entitlement_id=f"cet_{secrets.token_hex(12)}",
        settings=parse_entitlement(raw),
        created_at=now,
    )
    ledger.save(entitlement)
    return entitlement


def load_entitlement(ledger: Ledger, business_id: str, entitlement_id: str) -> CreditEntitlement:
    try:
        found: CreditEntitlement = ledger.repository.get(
            entitlement_aggregate_id(business_id, entitlement_id)
        )
    except AggregateNotFoundError:
        raise NotFoundError(f"credit entitlement {entitlement_id!r} not found") from None
    return found


def entitlements(ledger: Ledger, business_id: str) -> list[CreditEntitlement]:
    """The business's entitlements, newest first."""
    found = [
        load_entitlement(ledger, created.business_id, created.entitlement_id)
        for created in ledger.created(CreditEntitlement.Created)
        if created.business_id == business_id
    ]
    return found[::-1]


def load_account(
    ledger: Ledger, business_id: str, entitlement_id: str, customer_id: str
) -> CreditAccount | None:
    try:
        account: CreditAccount = ledger.repository.get(
            account_aggregate_id(business_id, entitlement_id, customer_id)
        )
    except AggregateNotFoundError:
        return None
    return account


def change_account(
    ledger: Ledger,
    business_id: str,
    entitlement_id: str,
    customer_id: str,
    at: datetime,
    command: Callable[[CreditAccount], T],
) -> tuple[CreditAccount, T]:
    """Apply ``command`` to the account (opened at ``at`` when new) and save it, retrying."""
    for _ in range(MAX_SAVE_ATTEMPTS):
        account = load_account(ledger, business_id, entitlement_id, customer_id)
        if account is None:
            account = CreditAccount(
                business_id=business_id,
                entitlement_id=entitlement_id,
                customer_id=customer_id,
                opened_at=at,
            )
        result = command(account)
        try:
            ledger.save(account)
        except IntegrityError:
            continue  # another writer went first: read its events and decide again
        return account, result
    raise ConflictRetryExhaustedError("the credit account kept changing under this write")


def cycle_price(ledger: Ledger, subscription: Subscription, index: int) -> tuple[Cycle, UsagePrice]:
    """A cycle of the subscription and the price in force when it began."""
    current = subscription.cycle(index)
    product = ledger.load_product(subscription.business_id, subscription.product_id)
    return current, product.price_at(current.start)


def grant_expiry(terms: CreditTerms, current: Cycle) -> datetime:
    if terms.expires_after_days is not None:
        return current.start + timedelta(days=terms.expires_after_days)
    return current.end


def grant_cycle(ledger: Ledger, subscription: Subscription, index: int) -> None:
    """Give the cycle's credit grants (once: their ids are the cycle's)."""
    current, price = cycle_price(ledger, subscription, index)
    for terms in price.credits:
        if not terms.credits_amount:
            continue
        grant_id = cycle_grant_id(subscription.subscription_id, terms.entitlement_id, index)
        command = partial(
            CreditAccount.grant,
            grant_id=grant_id,
            amount=terms.credits_amount,
            source_type="subscription",
            source_id=subscription.subscription_id,
            granted_at=current.start,
            expires_at=grant_expiry(terms, current),
        )
        change_account(
            ledger,
            subscription.business_id,
            terms.entitlement_id,
            subscription.customer_id,
            current.start,
            command,
        )


def started_cycles(subscription: Subscription, now: datetime) -> Iterator[int]:
    """Indexes of the cycles that have begun by ``now`` (up to a cancellation)."""
    index = 0
    while True:
        current = subscription.cycle(index)
        ends_at = subscription.ends_at
        if current.start > now or (ends_at is not None and current.start >= ends_at):
            return
        yield index
        index += 1


def usable_grants(
    ledger: Ledger, subscription: Subscription, index: int, *, virtual: bool = False
) -> dict[str, list[Grant]]:
    """The grants each attached entitlement has usable in cycle ``index``, as stored.

    With ``virtual``, a cycle grant not given yet counts as given (for previews).
    """
    current, price = cycle_price(ledger, subscription, index)
    found: dict[str, list[Grant]] = {}
    for terms in price.credits:
        account = load_account(
            ledger, subscription.business_id, terms.entitlement_id, subscription.customer_id
        )
        grants = [] if account is None else account.usable_grants(current.start, current.end)
        grant_id = cycle_grant_id(subscription.subscription_id, terms.entitlement_id, index)
        given = account is not None and grant_id in account.grants
        if virtual and not given and terms.credits_amount:
            grants.append(
                Grant(grant_id, terms.credits_amount, current.start, grant_expiry(terms, current))
            )
        found[terms.entitlement_id] = grants
    return found


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


def settlements(
    document: str,
) -> dict[str, tuple[list[tuple[str, Decimal]], Decimal, Decimal]]:
    """Per entitlement, what a finalized invoice drew (grant, credits) and its overage."""
    parsed = json.loads(document)
    found: dict[str, tuple[dict[str, Decimal], Decimal, Decimal]] = {}
    zero = Decimal(0)
    for draw in parsed.get("credit_draws", []):
        drawn, overage, billed = found.get(draw["credit_entitlement_id"], ({}, zero, zero))
        drawn[draw["grant_id"]] = drawn.get(draw["grant_id"], Decimal(0)) + Decimal(draw["credits"])
        found[draw["credit_entitlement_id"]] = (drawn, overage, billed)
    for item in parsed.get("credit_overage", []):
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


def accounts_for(
    ledger: Ledger, subscription: Subscription, index: int
) -> dict[str, CreditAccount]:
    """The customer's account under each entitlement cycle ``index``'s price attaches,
    as stored now (opened, unsaved, where there is none yet)."""
    current, price = cycle_price(ledger, subscription, index)
    accounts = {}
    for terms in price.credits:
        account = load_account(
            ledger, subscription.business_id, terms.entitlement_id, subscription.customer_id
        )
        accounts[terms.entitlement_id] = account or CreditAccount(
            business_id=subscription.business_id,
            entitlement_id=terms.entitlement_id,
            customer_id=subscription.customer_id,
            opened_at=current.start,
        )
    return accounts


def settle_accounts(
    accounts: Mapping[str, CreditAccount], invoice_id: str, document: str, at: datetime
) -> list[CreditAccount]:
    """Apply a finalized invoice's draws and overage to ``accounts``; those changed.

    The invoice was folded from these same account versions, so every draw fits;
    saving them with the invoice record in one transaction makes both or neither.
    """
    changed = []
    for entitlement_id, (drawn, overage, billed) in settlements(document).items():
        account = accounts[entitlement_id]
        if account.settle(invoice_id, drawn, overage, billed, at):
            changed.append(account)
    return changed


def expire_grants(
    ledger: Ledger,
    subscription: Subscription,
    before: datetime,
    peers: Sequence[Subscription],
    *,
    own_only: bool = False,
) -> None:
    """End the grants of the subscription's accounts that expired by ``before``.

    A grant is ended only once every cycle that may draw on it, of any of the
    customer's subscriptions (``peers``, this one included), is finalized: so
    whether a cycle gets its credit never depends on when billing ran. A
    subscription's grant rolls over by the terms of the subscription that gave it.
    ``own_only``: only the grants this subscription gave.
    """
    seen: set[str] = set()
    for index in started_cycles(subscription, before):
        _, price = cycle_price(ledger, subscription, index)
        seen.update(t.entitlement_id for t in price.credits)
    mine = [p for p in peers if (p.business_id, p.customer_id) == _owner(subscription)]
    by_id = {p.subscription_id: p for p in mine}
    for entitlement_id in sorted(seen):
        account = load_account(
            ledger, subscription.business_id, entitlement_id, subscription.customer_id
        )
        if account is None:
            continue
        due = sorted(
            (s.grant.expires_at, grant_id)
            for grant_id, s in account.grants.items()
            if not s.expired
            and s.grant.expires_at is not None
            and s.grant.expires_at <= before
            and (not own_only or s.source_id == subscription.subscription_id)
            and not _still_drawn_on(ledger, s.grant, mine)
        )
        for expires_at, grant_id in due:
            giver = by_id.get(account.grants[grant_id].source_id or "", subscription)
            _expire(ledger, giver, entitlement_id, grant_id, expires_at)


def _owner(subscription: Subscription) -> tuple[str, str]:
    return subscription.business_id, subscription.customer_id


def _still_drawn_on(ledger: Ledger, grant: Grant, peers: Sequence[Subscription]) -> bool:
    """Some cycle that may draw on ``grant`` (it overlaps its life) is not finalized yet."""
    assert grant.expires_at is not None
    for peer in peers:
        ends_at = peer.ends_at
        start = max(grant.granted_at, peer.started_at)
        if start >= grant.expires_at:
            continue
        index = peer.cycle_at(start).index
        while True:
            current = peer.cycle(index)
            if current.start >= grant.expires_at or (
                ends_at is not None and current.start >= ends_at
            ):
                break
            invoice_id = invoice_id_of(peer.business_id, peer.subscription_id, index)
            try:
                ledger.repository.get(invoice_aggregate_id(peer.business_id, invoice_id))
            except AggregateNotFoundError:
                return True
            index += 1
    return False


def _expire(
    ledger: Ledger,
    subscription: Subscription,
    entitlement_id: str,
    grant_id: str,
    expires_at: datetime,
) -> None:
    def command(account: CreditAccount) -> None:
        state = account.grants[grant_id]
        carried = Decimal(0)
        child_expires: datetime | None = None
        terms = _terms_for(ledger, subscription, entitlement_id, state.grant.granted_at)
        rolls = state.source_type in ("subscription", "rollover") and terms is not None
        if rolls and terms is not None and terms.rollover is not None and state.grant.balance:
            carried, _ = terms.rollover.split(state.grant.balance, state.rollover_count)
            if terms.rollover_timeframe is not None:
                frequency = terms.rollover_timeframe
                child_expires = cycle(expires_at, frequency.interval, frequency.count, 0).end
            else:
                child_expires = subscription.cycle_at(expires_at).end
        account.expire(grant_id, carried, child_expires, expires_at)

    change_account(
        ledger,
        subscription.business_id,
        entitlement_id,
        subscription.customer_id,
        expires_at,
        command,
    )


def _terms_for(
    ledger: Ledger, subscription: Subscription, entitlement_id: str, at: datetime
) -> CreditTerms | None:
    product = ledger.load_product(subscription.business_id, subscription.product_id)
    return product.price_at(at).terms(entitlement_id)


def add_ledger_entry(
    ledger: Ledger,
    business_id: str,
    entitlement_id: str,
    customer_id: str,
    *,
    amount: str,
    entry_type: str,
    reason: str | None,
    metadata: Mapping[str, object] | None,
    idempotency_key: str | None,
    expires_at: datetime | None,
    now: datetime,
) -> LedgerEntry:
    """A manual credit (a new grant) or debit (drawn in order); idempotent by key."""
    entitlement = load_entitlement(ledger, business_id, entitlement_id)
    ledger.customer(business_id, customer_id)  # NotFoundError for an unknown customer
    precision = entitlement.settings["precision"]
    units = CreditTerms(entitlement_id, Decimal(0), precision).at_precision(
        "amount", _amount(amount)
    )
    if not units:
        raise InvalidCreditError("amount must be greater than zero")
    if entry_type not in ("credit", "debit"):
        raise InvalidCreditError("entry_type must be 'credit' or 'debit'")
    if expires_at is not None and (entry_type == "debit" or expires_at <= now):
        raise InvalidCreditError("expires_at is for credits, and must be in the future")
    if reason is not None and (len(reason) > 500 or "\x00" in reason):
        raise InvalidCreditError("reason must be at most 500 characters")
    clean = dict(validate_metadata(metadata)) if metadata else None

    def command(account: CreditAccount) -> LedgerEntry:
        if idempotency_key is not None:
            earlier = account.entry_for(idempotency_key)
            if earlier is not None:
                if (earlier.amount, earlier.is_credit) != (units, entry_type == "credit"):
                    raise IdempotencyKeyReusedError(
                        f"idempotency_key {idempotency_key!r} was used for another entry "
                        f"({'credit' if earlier.is_credit else 'debit'} of {earlier.amount})"
                    )
                return earlier
        if entry_type == "credit":
            account.grant(
                f"grt_{secrets.token_hex(12)}",
                units,
                source_type="api",
                source_id=None,
                granted_at=now,
                expires_at=expires_at,
                reason=reason,
                metadata=clean,
                idempotency_key=idempotency_key,
            )
        else:
            account.debit(
                units, now, reason=reason, metadata=clean, idempotency_key=idempotency_key
            )
        return account.entries[-1]

    _, entry = change_account(ledger, business_id, entitlement_id, customer_id, now, command)
    return entry


def _amount(raw: str) -> Decimal:
    """The wire's amount: digits, optionally a point and up to 28 more (NUMERIC(38,28))."""
    if not isinstance(raw, str) or _AMOUNT_TEXT.fullmatch(raw) is None:
        raise InvalidCreditError(
            "amount must be a decimal string below 10^10 with at most 28 decimal places, "
            "such as '100' or '2.5'"
        )
    return Decimal(raw)

"""Credits: entitlements (the kinds of credit a business gives) and manual ledger entries.

Every change of a customer's credit is an event on a ``CreditAccount``
(``domain.credit_account``); what a subscription's cycles grant, draw and end
is ``application.grants``. Saving an account retries on a concurrent write:
every command is idempotent (deterministic grant ids, idempotency keys).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.errors import (
    ConflictRetryExhaustedError,
    IdempotencyKeyReusedError,
    NotFoundError,
)
from application.ledger import Ledger
from application.reads import CATALOGUE, Reads
from application.views import EntitlementQuery, EntitlementView
from domain.credit_account import CreditAccount, LedgerEntry, account_aggregate_id
from domain.credit_entitlement import (
    CreditEntitlement,
    entitlement_aggregate_id,
    parse_entitlement,
)
from domain.credits import CreditTerms
from domain.errors import InvalidCreditError
from domain.metadata import validate_metadata

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


def change_entitlement(
    ledger: Ledger,
    business_id: str,
    entitlement_id: str,
    command: Callable[[CreditEntitlement], None],
) -> CreditEntitlement:
    """Apply ``command`` to the entitlement and save it, retrying on a concurrent write."""
    return ledger.change(
        lambda: load_entitlement(ledger, business_id, entitlement_id),
        command,
        "credit entitlement",
    )


def update_entitlement(
    ledger: Ledger, business_id: str, entitlement_id: str, changes: Mapping[str, Any], now: datetime
) -> CreditEntitlement:
    """New rules for attachments made from now on; what attaches it already keeps its own."""
    return change_entitlement(ledger, business_id, entitlement_id, lambda e: e.update(changes, now))


def delete_entitlement(
    ledger: Ledger, business_id: str, entitlement_id: str, now: datetime
) -> CreditEntitlement:
    return change_entitlement(ledger, business_id, entitlement_id, lambda e: e.delete(now))


def undelete_entitlement(
    ledger: Ledger, business_id: str, entitlement_id: str, now: datetime
) -> CreditEntitlement:
    return change_entitlement(ledger, business_id, entitlement_id, lambda e: e.undelete(now))


def entitlements(reads: Reads, query: EntitlementQuery) -> list[EntitlementView]:
    """One page of the business's entitlements, deleted or not, newest first (from the
    catalogue)."""
    reads.fresh(CATALOGUE)
    return reads.catalogue.list_entitlements(query)


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

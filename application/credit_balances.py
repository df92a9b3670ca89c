"""The balance projection: each credit account's balance, grants and ledger, as rows.

It follows the log like the other projections. For each account a batch
touches, it reads the account at the batch's last version of it (so a rebuild
writes the same rows) and writes its balance, every grant and every ledger
entry; entries are keyed by their deterministic ids, so a batch applied twice
writes nothing new.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Tracking

from application.ports import TrackedView
from application.projection import Batch
from domain.credit_account import CreditAccount

AccountAt = Callable[[UUID, int], CreditAccount]


@dataclass(frozen=True, slots=True)
class BalanceQuery:
    business_id: str
    entitlement_id: str
    customer_id: str | None = None
    page_number: int = 0
    page_size: int = 10


@dataclass(frozen=True, slots=True)
class LedgerQuery:
    business_id: str
    entitlement_id: str
    customer_id: str
    start: datetime | None = None
    end: datetime | None = None
    transaction_type: str | None = None
    page_number: int = 0
    page_size: int = 10


@dataclass(frozen=True, slots=True)
class GrantQuery:
    business_id: str
    entitlement_id: str
    customer_id: str
    status: str | None = None  # active, expired, depleted
    page_number: int = 0
    page_size: int = 10


class CreditStore(TrackedView, Protocol):
    """The balance projection's rows."""

    def record(
        self, accounts: Sequence[tuple[CreditAccount, set[str]]], tracking: Tracking, after: int
    ) -> None:
        """Write each account's balance, the grants named and the entries not written yet."""
        ...

    def balances(self, query: BalanceQuery) -> list[dict[str, Any]]: ...

    def customer_balances(
        self, business_id: str, customer_id: str, limit: int
    ) -> list[dict[str, Any]]:
        """``credit_entitlement_id``, ``balance`` and ``overage`` of each of the customer's
        accounts, oldest first."""
        ...

    def grants(self, query: GrantQuery) -> list[dict[str, Any]]: ...

    def entries(self, query: LedgerQuery) -> list[dict[str, Any]]: ...


class CreditBalanceProjection:
    name = "credit_balances"

    def __init__(self, view: CreditStore, account_at: AccountAt) -> None:
        self._view = view
        self._account_at = account_at

    @property
    def view(self) -> CreditStore:
        return self._view

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        versions: dict[UUID, int] = {}
        touched: dict[UUID, set[str]] = {}
        for _, e in batch.of(CreditAccount.Event):
            versions[e.originator_id] = e.originator_version
            touched.setdefault(e.originator_id, set()).update(grants_named(e))
        accounts = [(self._account_at(i, v), touched[i]) for i, v in versions.items()]
        self._view.record(accounts, tracking, after)


def grants_named(e: CreditAccount.Event) -> set[str]:
    """The grants an account event changes: only their rows are written again."""
    if isinstance(e, CreditAccount.Granted):
        return {e.grant_id}
    if isinstance(e, CreditAccount.Debited | CreditAccount.Settled):
        return {grant_id for grant_id, _ in e.deductions}
    if isinstance(e, CreditAccount.Expired):
        return {e.grant_id, *([e.child_grant_id] if e.child_grant_id else [])}
    return set()

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
from uuid import UUID

from eventsourcing.persistence import Notification, Tracking
from eventsourcing.utils import get_topic

from application.follower import DomainEvent
from application.ports import CreditStore
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


class CreditBalanceProjection:
    name = "credit_balances"
    # it reads only credit account events: the follower skips the rest unread
    topics = tuple(
        get_topic(kind)
        for kind in (
            CreditAccount.Opened,
            CreditAccount.Granted,
            CreditAccount.Debited,
            CreditAccount.Settled,
            CreditAccount.Expired,
        )
    )

    def __init__(self, view: CreditStore, account_at: AccountAt) -> None:
        self._view = view
        self._account_at = account_at

    @property
    def view(self) -> CreditStore:
        return self._view

    def process(
        self,
        events: Sequence[DomainEvent],
        tracking: Tracking,
        after: int,
        positions: Sequence[int] = (),
        notifications: Sequence[Notification] = (),
    ) -> None:
        del after, positions, notifications
        versions: dict[UUID, int] = {}
        for domain_event in events:
            if isinstance(domain_event, CreditAccount.Event):
                versions[domain_event.originator_id] = domain_event.originator_version
        accounts = [self._account_at(i, v) for i, v in versions.items()]
        self._view.record(accounts, tracking)

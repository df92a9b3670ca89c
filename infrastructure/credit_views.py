"""The balance projection's tables, on SQLite and PostgreSQL, beside its tracking row."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.credit_balances import BalanceQuery, GrantQuery, LedgerQuery
from domain.credit_account import CreditAccount
from infrastructure.codec import from_micros, to_micros
from infrastructure.sql import TrackedSQL, tuples

TABLES = (
    "CREATE TABLE IF NOT EXISTS credit_balances ("
    "business_id TEXT NOT NULL, entitlement_id TEXT NOT NULL, customer_id TEXT NOT NULL, "
    "account_id TEXT NOT NULL, balance TEXT NOT NULL, overage TEXT NOT NULL, "
    "created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, last_transaction_at BIGINT, "
    "PRIMARY KEY (business_id, entitlement_id, customer_id))",
    "CREATE TABLE IF NOT EXISTS credit_grants ("
    "business_id TEXT NOT NULL, entitlement_id TEXT NOT NULL, customer_id TEXT NOT NULL, "
    "grant_id TEXT NOT NULL, state TEXT NOT NULL, created_at BIGINT NOT NULL, "
    "status TEXT NOT NULL, PRIMARY KEY (business_id, entitlement_id, customer_id, grant_id))",
    "CREATE TABLE IF NOT EXISTS credit_ledger ("
    "business_id TEXT NOT NULL, entitlement_id TEXT NOT NULL, customer_id TEXT NOT NULL, "
    "sequence BIGINT NOT NULL, entry_id TEXT NOT NULL, transaction_type TEXT NOT NULL, "
    "created_at BIGINT NOT NULL, state TEXT NOT NULL, "
    "PRIMARY KEY (business_id, entitlement_id, customer_id, sequence))",
    "CREATE INDEX IF NOT EXISTS credit_grants_by_status "
    "ON credit_grants (business_id, entitlement_id, customer_id, status, created_at)",
    "CREATE INDEX IF NOT EXISTS credit_balances_by_customer "
    "ON credit_balances (business_id, customer_id, created_at)",
    "CREATE INDEX IF NOT EXISTS credit_ledger_by_type "
    "ON credit_ledger (business_id, entitlement_id, customer_id, transaction_type, sequence)",
)
NAMES = ("credit_balances", "credit_grants", "credit_ledger")
DROP = tuple(f"DROP TABLE IF EXISTS {name}" for name in NAMES)
UPSERT_BALANCE = (
    "INSERT INTO credit_balances (business_id, entitlement_id, customer_id, account_id, "
    "balance, overage, created_at, updated_at, last_transaction_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (business_id, entitlement_id, customer_id) DO UPDATE SET "
    "balance = excluded.balance, overage = excluded.overage, "
    "updated_at = excluded.updated_at, last_transaction_at = excluded.last_transaction_at"
)
UPSERT_GRANT = (
    "INSERT INTO credit_grants (business_id, entitlement_id, customer_id, grant_id, state, "
    "created_at, status) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (business_id, entitlement_id, customer_id, grant_id) DO UPDATE SET "
    "state = excluded.state, status = excluded.status"
)
INSERT_ENTRY = (
    "INSERT INTO credit_ledger (business_id, entitlement_id, customer_id, sequence, entry_id, "
    "transaction_type, created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)


def _text(value: Any) -> Any:
    return None if value is None else format(value, "f")


def _iso(value: Any) -> Any:
    return None if value is None else value.isoformat()


class CreditSQL(TrackedSQL):
    drop_statements: tuple[str, ...] = DROP

    def record(
        self, accounts: Sequence[tuple[CreditAccount, set[str]]], tracking: Tracking, after: int
    ) -> None:
        """Each account's balance, the grants the batch touched and the entries it added."""
        with self._batch(tracking, after) as curs:
            for account, touched in accounts:
                key = (account.business_id, account.entitlement_id, account.customer_id)
                curs.execute(
                    self._q(UPSERT_BALANCE),
                    (
                        *key,
                        str(account.id),
                        _text(account.balance),
                        _text(account.overage),
                        to_micros(account.opened_at),
                        to_micros(account.updated_at),
                        None
                        if account.last_transaction_at is None
                        else to_micros(account.last_transaction_at),
                    ),
                )
                for grant_id in sorted(touched & account.grants.keys()):
                    state = account.grants[grant_id]
                    status = (
                        "expired"
                        if state.expired
                        else "depleted"
                        if not state.grant.balance
                        else "active"
                    )
                    document = {
                        "id": grant_id,
                        "credit_entitlement_id": account.entitlement_id,
                        "customer_id": account.customer_id,
                        "initial_amount": _text(state.initial),
                        "remaining_amount": _text(state.grant.balance),
                        "is_expired": state.expired,
                        "is_rolled_over": state.rolled_over,
                        "rollover_count": state.rollover_count,
                        "source_type": state.source_type,
                        "source_id": state.source_id,
                        "parent_grant_id": state.parent_grant_id,
                        "expires_at": _iso(state.grant.expires_at),
                        "created_at": _iso(state.created_at),
                        "updated_at": _iso(state.updated_at),
                    }
                    curs.execute(
                        self._q(UPSERT_GRANT),
                        (*key, grant_id, json.dumps(document), to_micros(state.created_at), status),
                    )
                curs.execute(
                    self._q(
                        "SELECT MAX(sequence) FROM credit_ledger WHERE business_id = ? "
                        "AND entitlement_id = ? AND customer_id = ?"
                    ),
                    key,
                )
                found = tuples(curs)
                written = -1 if not found or found[0][0] is None else int(found[0][0])
                for sequence, entry in enumerate(account.entries):
                    if sequence <= written:
                        continue
                    document = {
                        "id": entry.entry_id,
                        "transaction_type": entry.transaction_type,
                        "amount": _text(entry.amount),
                        "is_credit": entry.is_credit,
                        "balance_before": _text(entry.balance_before),
                        "balance_after": _text(entry.balance_after),
                        "overage_before": _text(entry.overage_before),
                        "overage_after": _text(entry.overage_after),
                        "grant_id": entry.grant_id,
                        "reference_type": entry.reference_type,
                        "reference_id": entry.reference_id,
                        "description": entry.description,
                        "metadata": entry.metadata or {},
                        "created_at": _iso(entry.created_at),
                    }
                    curs.execute(
                        self._q(INSERT_ENTRY),
                        (
                            *key,
                            sequence,
                            entry.entry_id,
                            entry.transaction_type,
                            to_micros(entry.created_at),
                            json.dumps(document),
                        ),
                    )

    def balances(self, query: BalanceQuery) -> list[dict[str, Any]]:
        statement = (
            "SELECT account_id, balance, overage, created_at, updated_at, last_transaction_at, "
            "customer_id FROM credit_balances WHERE business_id = ? AND entitlement_id = ?"
        )
        params: list[object] = [query.business_id, query.entitlement_id]
        if query.customer_id is not None:
            statement += " AND customer_id = ?"
            params.append(query.customer_id)
        statement += " ORDER BY created_at DESC, customer_id LIMIT ? OFFSET ?"
        params += [query.page_size, query.page_number * query.page_size]
        return [
            {
                "id": row[0],
                "balance": row[1],
                "overage": row[2],
                "created_at": from_micros(row[3]),
                "updated_at": from_micros(row[4]),
                "last_transaction_at": None if row[5] is None else from_micros(row[5]),
                "customer_id": row[6],
                "credit_entitlement_id": query.entitlement_id,
            }
            for row in self._fetch(statement, params)
        ]

    def customer_balances(
        self, business_id: str, customer_id: str, limit: int
    ) -> list[dict[str, Any]]:
        """The customer's balance under each entitlement it has one under, oldest first."""
        rows = self._fetch(
            "SELECT entitlement_id, balance, overage FROM credit_balances "
            "WHERE business_id = ? AND customer_id = ? "
            "ORDER BY created_at, entitlement_id LIMIT ?",
            [business_id, customer_id, limit],
        )
        return [
            {"credit_entitlement_id": row[0], "balance": row[1], "overage": row[2]} for row in rows
        ]

    def grants(self, query: GrantQuery) -> list[dict[str, Any]]:
        statement = (
            "SELECT state FROM credit_grants WHERE business_id = ? AND entitlement_id = ? "
            "AND customer_id = ?"
        )
        params: list[object] = [query.business_id, query.entitlement_id, query.customer_id]
        if query.status is not None:
            statement += " AND status = ?"
            params.append(query.status)
        statement += " ORDER BY created_at DESC, grant_id LIMIT ? OFFSET ?"
        params += [query.page_size, query.page_number * query.page_size]
        return [json.loads(row[0]) for row in self._fetch(statement, params)]

    def entries(self, query: LedgerQuery) -> list[dict[str, Any]]:
        statement = (
            "SELECT state FROM credit_ledger WHERE business_id = ? AND entitlement_id = ? "
            "AND customer_id = ?"
        )
        params: list[object] = [query.business_id, query.entitlement_id, query.customer_id]
        if query.start is not None:
            statement += " AND created_at >= ?"
            params.append(to_micros(query.start))
        if query.end is not None:
            statement += " AND created_at < ?"
            params.append(to_micros(query.end))
        if query.transaction_type is not None:
            statement += " AND transaction_type = ?"
            params.append(query.transaction_type)
        statement += " ORDER BY sequence DESC LIMIT ? OFFSET ?"
        params += [query.page_size, query.page_number * query.page_size]
        return [json.loads(row[0]) for row in self._fetch(statement, params)]


class SQLiteCreditStore(CreditSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *TABLES]


class PostgresCreditStore(CreditSQL, PostgresTrackingRecorder):
    mark = "%s"

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="credit_balances_tracking")
        self.sql_create_statements.extend(SQL(t).format() for t in TABLES)

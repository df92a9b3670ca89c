"""The outbox on SQLite and PostgreSQL: the projection's state, the messages, their delivery.

The projection's own tables (``NAMES``) are dropped by a rebuild and derived
again. ``webhook_messages`` and ``webhook_health`` are not: a message derived
again is the same message (its id is deterministic; the row already there is
kept), so what was delivered stays delivered. Claiming due messages is one
query over the index on (status, next_attempt_at).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.delivery import MAX_PER_ENDPOINT, MessageQuery, MessageView, Outcome, Pending
from application.outbox import AlertRule, FinalizedCycle, Fired, OutboxChanges, Route
from infrastructure.codec import from_micros, to_micros
from infrastructure.metrics import record_attempt
from infrastructure.sql import TrackedSQL, tuples

STATE = (
    "CREATE TABLE IF NOT EXISTS outbox_routes ("
    "business_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, url TEXT NOT NULL, "
    "filter_types TEXT NOT NULL, disabled BOOLEAN NOT NULL, deleted BOOLEAN NOT NULL, "
    "rate_limit BIGINT, PRIMARY KEY (endpoint_id))",
    "CREATE TABLE IF NOT EXISTS outbox_alerts ("
    "business_id TEXT NOT NULL, alert_id TEXT NOT NULL, meter_id TEXT NOT NULL, "
    "customer_id TEXT, threshold TEXT NOT NULL, period TEXT NOT NULL, name TEXT NOT NULL, "
    "created_at BIGINT NOT NULL, deleted BOOLEAN NOT NULL, PRIMARY KEY (business_id, alert_id))",
    "CREATE TABLE IF NOT EXISTS outbox_fired ("
    "business_id TEXT NOT NULL, alert_id TEXT NOT NULL, customer_id TEXT NOT NULL, "
    "period_start BIGINT NOT NULL, PRIMARY KEY (business_id, alert_id, customer_id, period_start))",
    "CREATE TABLE IF NOT EXISTS outbox_finalized ("
    "business_id TEXT NOT NULL, customer_id TEXT NOT NULL, subscription_id TEXT NOT NULL, "
    "invoice_id TEXT NOT NULL, cycle_start BIGINT NOT NULL, cycle_end BIGINT NOT NULL, "
    "cut BIGINT NOT NULL, PRIMARY KEY (business_id, invoice_id))",
    "CREATE INDEX IF NOT EXISTS outbox_finalized_by_end ON outbox_finalized (cycle_end)",
    "CREATE TABLE IF NOT EXISTS outbox_entries ("
    "account_id TEXT PRIMARY KEY, entries BIGINT NOT NULL)",
)
KEPT = (
    "CREATE TABLE IF NOT EXISTS webhook_messages ("
    "message_id TEXT PRIMARY KEY, business_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, "
    "type TEXT NOT NULL, position BIGINT NOT NULL, created_at BIGINT NOT NULL, "
    "body TEXT NOT NULL, status TEXT NOT NULL, attempts BIGINT NOT NULL, "
    "next_attempt_at BIGINT, last_attempt_at BIGINT, last_status_code BIGINT, "
    "last_error TEXT, delivered_at BIGINT)",
    "CREATE INDEX IF NOT EXISTS webhook_messages_due ON webhook_messages (status, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS webhook_messages_by_endpoint "
    "ON webhook_messages (endpoint_id, position, message_id)",
    "CREATE INDEX IF NOT EXISTS webhook_messages_by_time ON webhook_messages (created_at)",
    "CREATE TABLE IF NOT EXISTS webhook_health ("
    "endpoint_id TEXT PRIMARY KEY, failing_since BIGINT)",
)
NAMES = ("outbox_routes", "outbox_alerts", "outbox_fired", "outbox_finalized", "outbox_entries")
DROP = tuple(f"DROP TABLE IF EXISTS {name}" for name in NAMES)
MESSAGES = (
    "webhook_messages",
    (
        ("message_id", "text"),
        ("business_id", "text"),
        ("endpoint_id", "text"),
        ("type", "text"),
        ("position", "bigint"),
        ("created_at", "bigint"),
        ("body", "text"),
        ("status", "text"),
        ("attempts", "bigint"),
        ("next_attempt_at", "bigint"),
    ),
)
UPSERT_ROUTE = (
    "INSERT INTO outbox_routes (business_id, endpoint_id, url, filter_types, disabled, deleted, "
    "rate_limit) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint_id) DO UPDATE SET "
    "url = excluded.url, filter_types = excluded.filter_types, disabled = excluded.disabled, "
    "deleted = excluded.deleted, rate_limit = excluded.rate_limit"
)
UPSERT_ALERT = (
    "INSERT INTO outbox_alerts (business_id, alert_id, meter_id, customer_id, threshold, period, "
    "name, created_at, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (business_id, alert_id) DO UPDATE SET deleted = excluded.deleted"
)
UPSERT_ENTRIES = (
    "INSERT INTO outbox_entries (account_id, entries) VALUES (?, ?) "
    "ON CONFLICT (account_id) DO UPDATE SET entries = excluded.entries"
)
_MESSAGE_COLUMNS = (
    "message_id, endpoint_id, type, status, attempts, position, created_at, last_attempt_at, "
    "last_status_code, last_error, next_attempt_at, delivered_at"
)
# One endpoint's due messages in log order (the index on (status, endpoint_id,
# next_attempt_at)): each endpoint that receives is asked on its own, so one
# endpoint's backlog never hides another's messages.
DUE = (
    "SELECT message_id, business_id, endpoint_id, type, body, attempts, next_attempt_at "
    "FROM webhook_messages WHERE status = 'pending' AND endpoint_id = ? "
    "AND next_attempt_at <= ? ORDER BY position, message_id LIMIT ?"
)
CLAIM = (
    "UPDATE webhook_messages SET next_attempt_at = ? "
    "WHERE message_id = ? AND status = 'pending' AND next_attempt_at = ?"
)


class OutboxSQL(TrackedSQL):
    drop_statements: tuple[str, ...] = DROP

    # -- the projection

    def record(self, changes: OutboxChanges, tracking: Tracking, after: int) -> None:
        with self._batch(tracking, after) as curs:
            if changes.routes:
                curs.executemany(self._q(UPSERT_ROUTE), [_route_row(r) for r in changes.routes])
            if changes.alerts:
                curs.executemany(self._q(UPSERT_ALERT), [_alert_row(a) for a in changes.alerts])
            self._insert_rows(
                curs,
                (
                    "outbox_fired",
                    (
                        ("business_id", "text"),
                        ("alert_id", "text"),
                        ("customer_id", "text"),
                        ("period_start", "bigint"),
                    ),
                ),
                [
                    (f.business_id, f.alert_id, f.customer_id, to_micros(f.period_start))
                    for f in changes.fired
                ],
            )
            self._insert_rows(
                curs,
                (
                    "outbox_finalized",
                    (
                        ("business_id", "text"),
                        ("customer_id", "text"),
                        ("subscription_id", "text"),
                        ("invoice_id", "text"),
                        ("cycle_start", "bigint"),
                        ("cycle_end", "bigint"),
                        ("cut", "bigint"),
                    ),
                ),
                [
                    (
                        c.business_id,
                        c.customer_id,
                        c.subscription_id,
                        c.invoice_id,
                        to_micros(c.cycle_start),
                        to_micros(c.cycle_end),
                        c.cut,
                    )
                    for c in changes.finalized
                ],
            )
            if changes.entries:
                curs.executemany(self._q(UPSERT_ENTRIES), sorted(changes.entries.items()))
            self._insert_rows(
                curs,
                MESSAGES,
                [
                    (
                        m.message_id,
                        m.business_id,
                        m.endpoint_id,
                        m.type,
                        m.position,
                        to_micros(m.created_at),
                        m.body.decode(),
                        "pending",
                        0,
                        0,  # due at once
                    )
                    for m in changes.messages
                ],
            )

    def routes(self) -> list[Route]:
        rows = self._fetch(
            "SELECT business_id, endpoint_id, url, filter_types, disabled, deleted, rate_limit "
            "FROM outbox_routes ORDER BY endpoint_id",
            [],
        )
        return [
            Route(r[0], r[1], r[2], tuple(json.loads(r[3])), bool(r[4]), bool(r[5]), r[6])
            for r in rows
        ]

    def alert_rules(self, business_id: str | None = None) -> list[AlertRule]:
        statement = (
            "SELECT business_id, alert_id, meter_id, customer_id, threshold, period, name, "
            "created_at, deleted FROM outbox_alerts WHERE NOT deleted"
        )
        params: list[object] = []
        if business_id is not None:
            statement += " AND business_id = ?"
            params.append(business_id)
        statement += " ORDER BY created_at, alert_id"
        return [_alert(r) for r in self._fetch(statement, params)]

    def alert_rule(self, business_id: str, alert_id: str) -> AlertRule | None:
        rows = self._fetch(
            "SELECT business_id, alert_id, meter_id, customer_id, threshold, period, name, "
            "created_at, deleted FROM outbox_alerts WHERE business_id = ? AND alert_id = ?",
            [business_id, alert_id],
        )
        return _alert(rows[0]) if rows else None

    def fired(self, keys: Iterable[Fired]) -> set[Fired]:
        wanted = set(keys)
        found: set[Fired] = set()
        for business_id, alert_id in sorted({(k.business_id, k.alert_id) for k in wanted}):
            rows = self._fetch(
                "SELECT customer_id, period_start FROM outbox_fired "
                "WHERE business_id = ? AND alert_id = ?",
                [business_id, alert_id],
            )
            for customer_id, start in rows:
                key = Fired(business_id, alert_id, customer_id, from_micros(start))
                if key in wanted:
                    found.add(key)
        return found

    def finalized_after(self, moment: datetime) -> list[FinalizedCycle]:
        rows = self._fetch(
            "SELECT business_id, customer_id, subscription_id, invoice_id, cycle_start, "
            "cycle_end, cut FROM outbox_finalized WHERE cycle_end > ?",
            [to_micros(moment)],
        )
        return [
            FinalizedCycle(r[0], r[1], r[2], r[3], from_micros(r[4]), from_micros(r[5]), r[6])
            for r in rows
        ]

    def entries_seen(self, account_ids: Sequence[str]) -> dict[str, int]:
        seen: dict[str, int] = {}
        for start in range(0, len(account_ids), 500):
            chunk = account_ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self._fetch(
                f"SELECT account_id, entries FROM outbox_entries WHERE account_id IN ({marks})",  # noqa: S608
                list(chunk),
            )
            seen.update({r[0]: int(r[1]) for r in rows})
        return seen

    # -- delivery

    def claim(
        self, now: datetime, lease_until: datetime, limit: int, busy: Collection[str]
    ) -> list[Pending]:
        claimed: list[Pending] = []
        lease = to_micros(lease_until)
        receiving = [
            r.endpoint_id
            for r in self.routes()
            if not (r.disabled or r.deleted) and r.endpoint_id not in busy
        ]
        for endpoint_id in receiving:
            if len(claimed) >= limit:
                break
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    self._q(DUE),
                    (endpoint_id, to_micros(now), min(MAX_PER_ENDPOINT, limit - len(claimed))),
                )
                for row in tuples(curs):
                    message_id, business_id, _, kind, body, attempts, due = row
                    curs.execute(self._q(CLAIM), (lease, message_id, due))
                    if _rowcount(curs) != 1:
                        continue  # another process claimed it first
                    claimed.append(
                        Pending(
                            message_id,
                            business_id,
                            endpoint_id,
                            kind,
                            body.encode(),
                            attempts,
                            lease_until,
                        )
                    )
        return claimed

    def finish(
        self, pending: Pending, at: datetime, outcome: Outcome, next_attempt_at: datetime | None
    ) -> None:
        status = "delivered" if outcome.ok else "pending" if next_attempt_at else "failed"
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._q(
                    "UPDATE webhook_messages SET status = ?, attempts = attempts + 1, "
                    "last_attempt_at = ?, last_status_code = ?, last_error = ?, "
                    "next_attempt_at = ?, delivered_at = COALESCE(?, delivered_at) "
                    "WHERE message_id = ? AND status = 'pending' AND next_attempt_at = ?"
                ),
                (
                    status,
                    to_micros(at),
                    outcome.status_code,
                    None if outcome.error is None else outcome.error[:500],
                    None if next_attempt_at is None else to_micros(next_attempt_at),
                    to_micros(at) if outcome.ok else None,
                    pending.message_id,
                    to_micros(pending.claimed_until),
                ),
            )
            recorded = _rowcount(curs) == 1  # 0: the lease ran out, another worker has it
        if recorded:
            record_attempt(outcome, retried=next_attempt_at is not None)

    def release(self, claimed: Sequence[Pending], at: datetime) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                self._q(
                    "UPDATE webhook_messages SET next_attempt_at = ? "
                    "WHERE message_id = ? AND status = 'pending' AND next_attempt_at = ?"
                ),
                [(to_micros(at), p.message_id, to_micros(p.claimed_until)) for p in claimed],
            )

    def failing_since(self, endpoint_id: str, at: datetime, *, ok: bool) -> datetime | None:
        with self.datastore.transaction(commit=True) as curs:
            if ok:
                curs.execute(
                    self._q("DELETE FROM webhook_health WHERE endpoint_id = ?"), (endpoint_id,)
                )
                return None
            curs.execute(
                self._q(
                    "INSERT INTO webhook_health (endpoint_id, failing_since) VALUES (?, ?) "
                    "ON CONFLICT (endpoint_id) DO NOTHING"
                ),
                (endpoint_id, to_micros(at)),
            )
            curs.execute(
                self._q("SELECT failing_since FROM webhook_health WHERE endpoint_id = ?"),
                (endpoint_id,),
            )
            rows = tuples(curs)
        return from_micros(rows[0][0]) if rows else None

    def messages(self, query: MessageQuery) -> list[MessageView]:
        statement = f"SELECT {_MESSAGE_COLUMNS} FROM webhook_messages WHERE endpoint_id = ?"  # noqa: S608
        params: list[object] = [query.endpoint_id]
        if query.status is not None:
            statement += " AND status = ?"
            params.append(query.status)
        if query.after is not None:
            statement += " AND (position > ? OR (position = ? AND message_id > ?))"
            params += [query.after[0], query.after[0], query.after[1]]
        statement += " ORDER BY position, message_id LIMIT ?"
        params.append(query.limit)
        return [_message(r) for r in self._fetch(statement, params)]

    def message(self, endpoint_id: str, message_id: str) -> MessageView | None:
        rows = self._fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM webhook_messages "  # noqa: S608
            "WHERE endpoint_id = ? AND message_id = ?",
            [endpoint_id, message_id],
        )
        return _message(rows[0]) if rows else None

    def retry(self, endpoint_id: str, message_id: str, now: datetime) -> bool:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._q(
                    "UPDATE webhook_messages SET status = 'pending', next_attempt_at = ? "
                    "WHERE endpoint_id = ? AND message_id = ?"
                ),
                (to_micros(now), endpoint_id, message_id),
            )
            return _rowcount(curs) == 1

    def replay(self, since: datetime, endpoint_id: str | None, now: datetime) -> int:
        statement = (
            "UPDATE webhook_messages SET status = 'pending', next_attempt_at = ? "
            "WHERE created_at >= ?"
        )
        params: list[object] = [to_micros(now), to_micros(since)]
        if endpoint_id is not None:
            statement += " AND endpoint_id = ?"
            params.append(endpoint_id)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._q(statement), params)
            return _rowcount(curs)

    def message_counts(self) -> dict[str, int]:
        rows = self._fetch("SELECT status, COUNT(*) FROM webhook_messages GROUP BY status", [])
        return {str(r[0]): int(r[1]) for r in rows}


def _rowcount(curs: Any) -> int:
    """Rows the last statement changed (the library's SQLite cursor wraps sqlite3's)."""
    return int(getattr(curs, "sqlite_cursor", curs).rowcount)


def _route_row(route: Route) -> tuple[object, ...]:
    return (
        route.business_id,
        route.endpoint_id,
        route.url,
        json.dumps(list(route.filter_types)),
        route.disabled,
        route.deleted,
        route.rate_limit,
    )


def _alert_row(alert: AlertRule) -> tuple[object, ...]:
    return (
        alert.business_id,
        alert.alert_id,
        alert.meter_id,
        alert.customer_id,
        format(alert.threshold, "f"),
        alert.period,
        alert.name,
        to_micros(alert.created_at),
        alert.deleted,
    )


def _alert(row: Sequence[Any]) -> AlertRule:
    return AlertRule(
        row[0],
        row[1],
        row[2],
        row[3],
        Decimal(row[4]),
        row[5],
        row[6],
        from_micros(row[7]),
        bool(row[8]),
    )


def _when(value: Any) -> datetime | None:
    return None if value is None else from_micros(value)


def _message(row: Sequence[Any]) -> MessageView:
    return MessageView(
        message_id=row[0],
        endpoint_id=row[1],
        type=row[2],
        status=row[3],
        attempts=int(row[4]),
        position=int(row[5]),
        created_at=from_micros(row[6]),
        last_attempt_at=_when(row[7]),
        last_status_code=None if row[8] is None else int(row[8]),
        last_error=row[9],
        next_attempt_at=_when(row[10]) if row[3] == "pending" else None,
        delivered_at=_when(row[11]),
    )


class SQLiteOutbox(OutboxSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *STATE, *KEPT]


class PostgresOutbox(OutboxSQL, PostgresTrackingRecorder):
    mark = "%s"

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="outbox_tracking")
        self.sql_create_statements.extend(SQL(t).format() for t in (*STATE, *KEPT))

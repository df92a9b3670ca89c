"""The billing schedule read model on SQLite and PostgreSQL (``application.schedule``).

``due`` is one query over the index on (kind, due_at): what a tick with nothing
due costs does not depend on how many entries wait for later.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.schedule import Billed, ScheduleChanges
from application.views import Due, DueEntry
from infrastructure.codec import from_micros, to_micros
from infrastructure.sql import TrackedSQL

TABLES = (
    "CREATE TABLE IF NOT EXISTS schedule_subscriptions ("
    "aggregate_id TEXT PRIMARY KEY, started_at BIGINT NOT NULL, interval TEXT NOT NULL, "
    "interval_count BIGINT NOT NULL, ends_at BIGINT, renewed_through BIGINT NOT NULL, "
    "next_to_finalize BIGINT NOT NULL, term_ends_at BIGINT, ended BOOLEAN NOT NULL)",
    "CREATE TABLE IF NOT EXISTS schedule_due ("
    "kind BIGINT NOT NULL, aggregate_id TEXT NOT NULL, grant_id TEXT NOT NULL, "
    "due_at BIGINT NOT NULL, cycle_index BIGINT NOT NULL, "
    "PRIMARY KEY (kind, aggregate_id, grant_id))",
    "CREATE INDEX IF NOT EXISTS schedule_due_by_time ON schedule_due (kind, due_at)",
)
NAMES = ("schedule_subscriptions", "schedule_due")
DROP = tuple(f"DROP TABLE IF EXISTS {name}" for name in NAMES)
UPSERT_SUBSCRIPTION = (
    "INSERT INTO schedule_subscriptions (aggregate_id, started_at, interval, interval_count, "
    "ends_at, renewed_through, next_to_finalize, term_ends_at, ended) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (aggregate_id) DO UPDATE SET ends_at = excluded.ends_at, "
    "renewed_through = excluded.renewed_through, next_to_finalize = excluded.next_to_finalize, "
    "ended = excluded.ended"
)
UPSERT_DUE = (
    "INSERT INTO schedule_due (kind, aggregate_id, grant_id, due_at, cycle_index) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, aggregate_id, grant_id) DO UPDATE SET "
    "due_at = excluded.due_at, cycle_index = excluded.cycle_index"
)
DELETE_DUE = "DELETE FROM schedule_due WHERE kind = ? AND aggregate_id = ? AND grant_id = ?"
# Each kind its own range of the index, and its own limit: entries of one kind that
# are due but cannot be done yet never hold back those of another.
_DUE_OF_KIND = (
    "SELECT * FROM (SELECT kind, aggregate_id, grant_id, due_at, cycle_index FROM schedule_due "
    "WHERE kind = ? AND due_at <= ? ORDER BY due_at, aggregate_id, grant_id LIMIT ?) AS d{n}"
)
DUE = " UNION ALL ".join(_DUE_OF_KIND.format(n=n) for n in range(4))


class ScheduleSQL(TrackedSQL):
    drop_statements: tuple[str, ...] = DROP

    def record(self, changes: ScheduleChanges, tracking: Tracking, after: int) -> None:
        with self._batch(tracking, after) as curs:
            if changes.subscriptions:
                curs.executemany(
                    self._q(UPSERT_SUBSCRIPTION),
                    [
                        (
                            b.aggregate_id,
                            to_micros(b.started_at),
                            b.interval,
                            b.interval_count,
                            None if b.cancelled_at is None else to_micros(b.cancelled_at),
                            b.renewed_through,
                            b.next_to_finalize,
                            None if b.term_ends_at is None else to_micros(b.term_ends_at),
                            b.ended,
                        )
                        for b in changes.subscriptions
                    ],
                )
            if changes.removed:
                curs.executemany(self._q(DELETE_DUE), changes.removed)
            if changes.entries:
                curs.executemany(
                    self._q(UPSERT_DUE),
                    [
                        (
                            int(e.kind),
                            e.aggregate_id,
                            e.grant_id,
                            to_micros(e.due_at),
                            e.cycle_index,
                        )
                        for e in changes.entries
                    ],
                )

    def subscriptions(self, aggregate_ids: Collection[str]) -> list[Billed]:
        wanted = sorted(aggregate_ids)
        found: list[Billed] = []
        for first in range(0, len(wanted), 500):  # bounded statements
            part = wanted[first : first + 500]
            marks = ", ".join("?" for _ in part)
            rows = self._fetch(
                "SELECT aggregate_id, started_at, interval, interval_count, ends_at, "  # noqa: S608
                "renewed_through, next_to_finalize, term_ends_at, ended "
                "FROM schedule_subscriptions "
                f"WHERE aggregate_id IN ({marks})",
                part,
            )
            found += [
                Billed(
                    str(r[0]),
                    from_micros(int(r[1])),
                    str(r[2]),
                    int(r[3]),
                    None if r[4] is None else from_micros(int(r[4])),
                    int(r[5]),
                    int(r[6]),
                    None if r[7] is None else from_micros(int(r[7])),
                    bool(r[8]),
                )
                for r in rows
            ]
        return found

    def due(self, now: datetime, grace: timedelta, limit: int) -> list[DueEntry]:
        bounds = (
            (Due.RENEW, now),
            (Due.FINALIZE, now - grace),
            (Due.EXPIRE, now - grace),
            (Due.END, now),
        )
        params = [p for kind, until in bounds for p in (int(kind), to_micros(until), limit)]
        entries = [
            DueEntry(Due(int(r[0])), str(r[1]), from_micros(int(r[3])), int(r[4]), str(r[2]))
            for r in self._fetch(DUE, params)
        ]
        return sorted(entries, key=lambda e: (e.due_at, e.kind, e.aggregate_id, e.grant_id))


class SQLiteSchedule(ScheduleSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *TABLES]


class PostgresSchedule(ScheduleSQL, PostgresTrackingRecorder):
    mark = "%s"

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="schedule_tracking")
        self.sql_create_statements.extend(SQL(t).format() for t in TABLES)

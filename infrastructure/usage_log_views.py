"""The usage log read model on SQLite and PostgreSQL (``application.usage_log``).

A usage row is keyed by its log position (an event id is unique by the store's
key); a void is a row of its own with the void's position and the event's
customer and time, so the voided events are listed from the voids themselves.
Indexes match the reads: the listing by business, customer, name or customer and
name, newest first; the folds' partial hours by business, name (and customer)
and time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL

from application.tally import HourKey, Recorded
from application.views import EventQuery, UsageEventView, VoidView
from domain.meter import UsageRecord
from domain.usage import UsageEvent
from infrastructure.codec import decode_metadata, encode_metadata, from_micros, to_micros
from infrastructure.sql import Table, TrackedSQL, tuples


def tables(position_type: str) -> tuple[str, ...]:
    """The tables, ``position_type`` the store's integer key (SQLite: a rowid alias)."""
    return (
        "CREATE TABLE IF NOT EXISTS usage_events ("
        f"position {position_type} PRIMARY KEY, business_id TEXT NOT NULL, "
        "event_id TEXT NOT NULL, customer_id TEXT NOT NULL, event_name TEXT NOT NULL, "
        "ts BIGINT NOT NULL, metadata TEXT NOT NULL)",
        # An event id is unique in the log by the store's key; nothing here reads by it
        # alone (a void finds its event by customer and time), so no index pays for it.
        "DROP INDEX IF EXISTS usage_events_by_id",
        "CREATE INDEX IF NOT EXISTS usage_events_by_time ON usage_events (business_id, ts)",
        "CREATE INDEX IF NOT EXISTS usage_events_by_customer "
        "ON usage_events (business_id, customer_id, ts)",
        "CREATE INDEX IF NOT EXISTS usage_events_by_name "
        "ON usage_events (business_id, event_name, ts)",
        "CREATE INDEX IF NOT EXISTS usage_events_by_customer_name "
        "ON usage_events (business_id, customer_id, event_name, ts)",
        "CREATE TABLE IF NOT EXISTS usage_voids ("
        "business_id TEXT NOT NULL, event_id TEXT NOT NULL, position BIGINT NOT NULL, "
        "voided_at BIGINT NOT NULL, reason TEXT, customer_id TEXT NOT NULL, "
        "event_name TEXT NOT NULL, ts BIGINT NOT NULL, PRIMARY KEY (business_id, event_id))",
        "CREATE INDEX IF NOT EXISTS usage_voids_by_time ON usage_voids (business_id, ts)",
        "CREATE INDEX IF NOT EXISTS usage_voids_by_position ON usage_voids (position)",
        "CREATE INDEX IF NOT EXISTS usage_voids_by_customer "
        "ON usage_voids (business_id, customer_id, ts)",
        "CREATE INDEX IF NOT EXISTS usage_voids_by_name "
        "ON usage_voids (business_id, event_name, ts)",
        "CREATE INDEX IF NOT EXISTS usage_voids_by_customer_name "
        "ON usage_voids (business_id, customer_id, event_name, ts)",
    )


NAMES = ("usage_events", "usage_voids")
HOUR_MICROS = 3_600_000_000
DROP = tuple(f"DROP TABLE IF EXISTS {name}" for name in NAMES)
EVENTS: Table = (
    "usage_events",
    (
        ("position", "bigint"),
        ("business_id", "text"),
        ("event_id", "text"),
        ("customer_id", "text"),
        ("event_name", "text"),
        ("ts", "bigint"),
        ("metadata", "text"),
    ),
)
INSERT_VOID = (
    "INSERT INTO usage_voids "
    "(business_id, event_id, position, voided_at, reason, customer_id, event_name, ts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
JOIN_VOIDS = "LEFT JOIN usage_voids v ON v.business_id = u.business_id AND v.event_id = u.event_id"
EVENT_COLUMNS = "u.business_id, u.event_id, u.customer_id, u.event_name, u.ts, u.metadata"
RECORD_COLUMNS = "u.ts, u.event_id, u.event_name, u.metadata"  # a meter's UsageRecord
# Not voided (by position ``?``): written as NOT EXISTS, an anti-join the planner
# estimates well; "LEFT JOIN ... WHERE v.position IS NULL" it took for one row, and
# so sorted the whole table for a page.
_VOID_OF = (
    "SELECT 1 FROM usage_voids v WHERE v.business_id = u.business_id AND v.event_id = u.event_id"
)
NOT_VOIDED = f"NOT EXISTS ({_VOID_OF})"
# An event counts at position ``?`` (twice): recorded by then, not voided by then.
COUNTED_AT = f"u.position <= ? AND NOT EXISTS ({_VOID_OF} AND v.position <= ?)"
STREAM_ROWS = 10_000  # rows a streamed read holds at a time
HOUR = timedelta(hours=1)


class UsageLogSQL(TrackedSQL):
    drop_statements: tuple[str, ...] = DROP

    def record(
        self,
        events: Sequence[tuple[int, UsageEvent.Recorded]],
        voids: Sequence[tuple[int, VoidView]],
        tracking: Tracking,
        after: int,
    ) -> None:
        rows = [
            (
                position,
                e.business_id,
                e.event_id,
                e.customer_id,
                e.event_name,
                to_micros(e.timestamp),
                encode_metadata(e.metadata),
            )
            for position, e in events
        ]
        with self._batch(tracking, after) as curs:
            self._append_rows(curs, EVENTS, rows)
            if voids:
                curs.executemany(
                    self._q(INSERT_VOID),
                    [
                        (
                            v.business_id,
                            v.event_id,
                            position,
                            to_micros(v.voided_at),
                            v.reason,
                            v.customer_id,
                            v.event_name,
                            to_micros(v.event_timestamp),
                        )
                        for position, v in voids
                    ],
                )

    def list_events(self, query: EventQuery) -> list[UsageEventView]:
        """One page, newest first; the voided ones read from the voids (they are few)."""
        return self.list_events_from(query, query.page_number * query.page_size, query.page_size)

    def list_events_from(self, query: EventQuery, offset: int, limit: int) -> list[UsageEventView]:
        base = "v" if query.voided else "u"
        where: list[str] = [f"{base}.business_id = ?"]
        params: list[object] = [query.business_id]
        for column, value in (("customer_id", query.customer_id), ("event_name", query.event_name)):
            if value is not None:
                where.append(f"{base}.{column} = ?")
                params.append(value)
        if query.start is not None:
            where.append(f"{base}.ts >= ?")
            params.append(to_micros(query.start))
        if query.end is not None:
            where.append(f"{base}.ts < ?")
            params.append(to_micros(query.end))
        if query.voided is False:
            where.append(NOT_VOIDED)
        if query.voided:
            # From the voids (few) to their events, in that order: SQLite keeps a CROSS
            # JOIN's order; the event found by its customer and time, as it is indexed.
            source = "usage_voids v CROSS JOIN usage_events u"
            where += [
                "u.business_id = v.business_id",
                "u.customer_id = v.customer_id",
                "u.ts = v.ts",
                "u.event_id = v.event_id",
            ]
        else:
            source = "usage_events u" if query.voided is False else f"usage_events u {JOIN_VOIDS}"
        voids = "NULL, NULL" if query.voided is False else "v.voided_at, v.reason"
        statement = (
            f"SELECT {EVENT_COLUMNS}, {voids} FROM {source} "  # noqa: S608
            f"WHERE {' AND '.join(where)} "
            f"ORDER BY {base}.ts DESC, {base}.event_id DESC LIMIT ? OFFSET ?"
        )
        params += [limit, offset]
        return [usage_of(row) for row in self._fetch(statement, params)]

    def events_per_hour(
        self, business_id: str, start: datetime, end: datetime
    ) -> dict[datetime, int]:
        rows = self._fetch(
            f"SELECT ts / {HOUR_MICROS} AS hour, COUNT(*) FROM usage_events "  # noqa: S608
            "WHERE business_id = ? AND ts >= ? AND ts < ? GROUP BY 1",
            [business_id, to_micros(start), to_micros(end)],
        )
        return {from_micros(int(hour) * HOUR_MICROS): int(count) for hour, count in rows}

    def stream_records(
        self,
        business_id: str,
        event_name: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        up_to: int | None = None,
    ) -> Iterator[UsageRecord]:
        """What counts, as (timestamp, event_id, event_name, metadata), ``STREAM_ROWS``
        rows at a time: on PostgreSQL through a server-side cursor, on SQLite by
        ``fetchmany``. The read transaction stays open until the iterator ends."""
        statement, params = _counted(
            RECORD_COLUMNS, business_id, event_name, customer_id, start, end, up_to
        )
        for ts, event_id, name, metadata in self._stream(statement, params):
            yield from_micros(ts), event_id, name, decode_metadata(metadata)

    def stream_customer_records(
        self,
        business_id: str,
        event_name: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        up_to: int | None = None,
    ) -> Iterator[tuple[str, UsageRecord]]:
        """What ``stream_records`` streams, each record with its customer."""
        columns = f"u.customer_id, {RECORD_COLUMNS}"
        statement, params = _counted(
            columns, business_id, event_name, customer_id, start, end, up_to
        )
        for customer, ts, event_id, name, metadata in self._stream(statement, params):
            yield customer, (from_micros(ts), event_id, name, decode_metadata(metadata))

    def name_history(self, business_id: str, event_name: str, up_to: int) -> Iterator[Recorded]:
        statement = (
            "SELECT u.position, u.customer_id, u.ts, u.event_id, u.event_name, u.metadata, "  # noqa: S608
            f"v.position FROM usage_events u {JOIN_VOIDS} "
            "WHERE u.business_id = ? AND u.event_name = ? AND u.position <= ?"
        )
        for position, customer_id, ts, event_id, name, metadata, void in self._stream(
            statement, [business_id, event_name, up_to]
        ):
            record = (from_micros(ts), event_id, name, decode_metadata(metadata))
            voided = void if void is not None and void <= up_to else None
            yield Recorded(position, business_id, customer_id, record, voided)

    def _stream(self, statement: str, params: Sequence[object]) -> Iterator[Sequence[Any]]:
        with self.datastore.transaction(commit=False) as curs:
            if self.is_postgres:
                cursor = curs.connection.cursor(
                    name="usage_log_stream", binary=True, row_factory=tuple_row
                )
            else:
                cursor = getattr(curs, "sqlite_cursor", curs)  # the library wraps sqlite3's
            try:
                cursor.execute(self._q(statement), list(params))
                while rows := cursor.fetchmany(STREAM_ROWS):
                    yield from rows
            finally:
                if self.is_postgres:
                    cursor.close()

    def counted_in_hours(
        self, hours: Collection[HourKey], up_to: int, application_name: str
    ) -> dict[HourKey, list[UsageRecord]] | None:
        with self.datastore.transaction(commit=False) as curs:
            if self._position(curs, application_name) < up_to:
                return None
            found: dict[HourKey, list[UsageRecord]] = {}
            for key in hours:
                business_id, event_name, customer_id, hour = key
                curs.execute(
                    self._q(
                        f"SELECT {RECORD_COLUMNS} FROM usage_events u "  # noqa: S608
                        "WHERE u.business_id = ? AND u.customer_id = ? AND u.event_name = ? "
                        f"AND u.ts >= ? AND u.ts < ? AND {COUNTED_AT}"
                    ),
                    [
                        business_id,
                        customer_id,
                        event_name,
                        to_micros(hour),
                        to_micros(hour + HOUR),
                        up_to,
                        up_to,
                    ],
                )
                found[key] = [
                    (from_micros(r[0]), r[1], r[2], decode_metadata(r[3])) for r in tuples(curs)
                ]
            return found

    def changed_between(
        self, business_id: str, customer_id: str, start: datetime, end: datetime, after: int
    ) -> bool:
        rows = self._fetch(
            "SELECT 1 FROM usage_events u "  # noqa: S608
            "WHERE u.business_id = ? AND u.customer_id = ? AND u.ts >= ? AND u.ts < ? "
            f"AND (u.position > ? OR EXISTS ({_VOID_OF} AND v.position > ?)) LIMIT 1",
            [business_id, customer_id, to_micros(start), to_micros(end), after, after],
        )
        return bool(rows)

    def customers_changed(self, after: int, until: int, limit: int) -> list[tuple[str, str, int]]:
        rows = self._fetch(
            "SELECT business_id, customer_id, MIN(position) AS first FROM ("
            "SELECT business_id, customer_id, position FROM usage_events "
            "WHERE position > ? AND position <= ? UNION ALL "
            "SELECT business_id, customer_id, position FROM usage_voids "
            "WHERE position > ? AND position <= ?) AS changed "
            "GROUP BY business_id, customer_id ORDER BY first LIMIT ?",
            [after, until, after, until, limit],
        )
        return [(str(b), str(c), int(p)) for b, c, p in rows]

    def label_at(self, position: int) -> str | None:
        rows = self._fetch(
            "SELECT business_id, event_id FROM usage_events WHERE position = ?", [position]
        )
        return f"usage event {rows[0][0]}/{rows[0][1]}" if rows else None


def _counted(
    columns: str,
    business_id: str,
    event_name: str,
    customer_id: str | None,
    start: datetime,
    end: datetime,
    up_to: int | None,
) -> tuple[str, list[object]]:
    """The statement selecting ``columns`` of the events of a name in ``[start, end)``
    that count at ``up_to`` (``None``: not voided), and its parameters."""
    statement = (
        f"SELECT {columns} FROM usage_events u "  # noqa: S608
        "WHERE u.business_id = ? AND u.event_name = ? AND u.ts >= ? AND u.ts < ?"
    )
    params: list[object] = [business_id, event_name, to_micros(start), to_micros(end)]
    if customer_id is not None:
        statement += " AND u.customer_id = ?"
        params.append(customer_id)
    if up_to is None:
        return statement + f" AND {NOT_VOIDED}", params
    return statement + f" AND {COUNTED_AT}", [*params, up_to, up_to]


def usage_of(row: Sequence[Any]) -> UsageEventView:
    """A usage event from its row: six columns, then the void's two, if selected."""
    voided_at = row[6] if len(row) > 6 else None
    return UsageEventView(
        row[0],
        row[1],
        row[2],
        row[3],
        from_micros(row[4]),
        decode_metadata(row[5]),
        None if voided_at is None else from_micros(voided_at),
        row[7] if voided_at is not None else None,
    )


class SQLiteUsageLog(UsageLogSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *tables("INTEGER")]


class PostgresUsageLog(UsageLogSQL, PostgresTrackingRecorder):
    mark = "%s"

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="usage_log_tracking")
        self.sql_create_statements.extend(SQL(t).format() for t in tables("BIGINT"))

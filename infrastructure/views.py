"""The event index read model, on SQLite and PostgreSQL, beside its tracking row.

Rows and the log position they reflect are written in one transaction through
eventsourcing's tracking recorders, so replaying a batch never doubles a row.
The SQL is shared; only placeholders and table creation differ per store.

Voids have a table of their own (a usage row is never rewritten), each with the
log position of the void: an event counts at a position if it was recorded at
or before it and not voided at or before it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL

from application.ports import (
    CustomerQuery,
    CustomerView,
    EventQuery,
    InvoiceQuery,
    InvoiceView,
    MeterQuery,
    MeterView,
    PositionMovedError,
    ProductQuery,
    ProductView,
    SealView,
    UsageEventView,
    VoidView,
)
from domain.meter import UsageRecord
from domain.seal import GENESIS, chain
from infrastructure.codec import (
    decode_invoice,
    decode_metadata,
    decode_meter,
    decode_product,
    encode_invoice,
    encode_metadata,
    encode_meter,
    encode_product,
    from_micros,
    to_micros,
)

TABLES = (
    "CREATE TABLE IF NOT EXISTS event_index_usage ("
    "business_id TEXT NOT NULL, event_id TEXT NOT NULL, customer_id TEXT NOT NULL, "
    "event_name TEXT NOT NULL, ts BIGINT NOT NULL, metadata TEXT NOT NULL, "
    "position BIGINT NOT NULL, PRIMARY KEY (business_id, event_id))",
    "CREATE INDEX IF NOT EXISTS event_index_usage_by_time ON event_index_usage (business_id, ts)",
    "CREATE INDEX IF NOT EXISTS event_index_usage_by_customer "
    "ON event_index_usage (business_id, customer_id, ts)",
    "CREATE INDEX IF NOT EXISTS event_index_usage_by_name "
    "ON event_index_usage (business_id, event_name, ts)",
    "CREATE TABLE IF NOT EXISTS event_index_voids ("
    "business_id TEXT NOT NULL, event_id TEXT NOT NULL, position BIGINT NOT NULL, "
    "voided_at BIGINT NOT NULL, reason TEXT, PRIMARY KEY (business_id, event_id))",
    "CREATE TABLE IF NOT EXISTS event_index_customers ("
    "business_id TEXT NOT NULL, customer_id TEXT NOT NULL, email TEXT NOT NULL, "
    "name TEXT NOT NULL, phone_number TEXT, metadata TEXT NOT NULL, "
    "created_at BIGINT NOT NULL, PRIMARY KEY (business_id, customer_id))",
    "CREATE INDEX IF NOT EXISTS event_index_customers_by_time "
    "ON event_index_customers (business_id, created_at)",
    "CREATE TABLE IF NOT EXISTS event_index_meters ("
    "business_id TEXT NOT NULL, meter_id TEXT NOT NULL, archived BOOLEAN NOT NULL, "
    "created_at BIGINT NOT NULL, state TEXT NOT NULL, "
    "PRIMARY KEY (business_id, meter_id))",
    "CREATE INDEX IF NOT EXISTS event_index_meters_by_time "
    "ON event_index_meters (business_id, archived, created_at)",
    "CREATE TABLE IF NOT EXISTS event_index_products ("
    "business_id TEXT NOT NULL, product_id TEXT NOT NULL, created_at BIGINT NOT NULL, "
    "state TEXT NOT NULL, PRIMARY KEY (business_id, product_id))",
    "CREATE INDEX IF NOT EXISTS event_index_products_by_time "
    "ON event_index_products (business_id, created_at)",
    "CREATE TABLE IF NOT EXISTS event_index_invoices ("
    "business_id TEXT NOT NULL, invoice_id TEXT NOT NULL, subscription_id TEXT NOT NULL, "
    "customer_id TEXT NOT NULL, cycle_start BIGINT NOT NULL, state TEXT NOT NULL, "
    "PRIMARY KEY (business_id, invoice_id))",
    "CREATE INDEX IF NOT EXISTS event_index_invoices_by_subscription "
    "ON event_index_invoices (business_id, subscription_id, cycle_start)",
    "CREATE TABLE IF NOT EXISTS event_index_seal ("
    "position BIGINT NOT NULL PRIMARY KEY, originator_id TEXT NOT NULL, "
    "version BIGINT NOT NULL, digest TEXT NOT NULL, chain TEXT NOT NULL)",
)
SEAL_TABLE = (
    "event_index_seal",
    (
        ("position", "bigint"),
        ("originator_id", "text"),
        ("version", "bigint"),
        ("digest", "text"),
        ("chain", "text"),
    ),
)
LAST_CHAIN = "SELECT chain FROM event_index_seal WHERE position <= ? ORDER BY position DESC LIMIT 1"
USAGE_TABLE = (  # name, (column, PostgreSQL type)...
    "event_index_usage",
    (
        ("business_id", "text"),
        ("event_id", "text"),
        ("customer_id", "text"),
        ("event_name", "text"),
        ("ts", "bigint"),
        ("metadata", "text"),
        ("position", "bigint"),
    ),
)
INSERT_VOID = (
    "INSERT INTO event_index_voids (business_id, event_id, position, voided_at, reason) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
# A usage row with its void, if any: ``v.position IS NULL`` means not voided.
USAGE_FROM = (
    "event_index_usage u LEFT JOIN event_index_voids v "
    "ON v.business_id = u.business_id AND v.event_id = u.event_id"
)
USAGE_COLUMNS = "u.business_id, u.event_id, u.customer_id, u.event_name, u.ts, u.metadata"
RECORD_COLUMNS = "u.ts, u.event_id, u.event_name, u.metadata"  # a meter's UsageRecord
# An event counts at position ``?`` (twice): recorded by then, not voided by then.
COUNTED_AT = "u.position <= ? AND (v.position IS NULL OR v.position > ?)"
UPSERT_METER = (
    "INSERT INTO event_index_meters (business_id, meter_id, archived, created_at, state) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (business_id, meter_id) DO UPDATE SET "
    "archived = excluded.archived, state = excluded.state"
)
INSERT_INVOICE = (
    "INSERT INTO event_index_invoices "
    "(business_id, invoice_id, subscription_id, customer_id, cycle_start, state) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
UPSERT_PRODUCT = (
    "INSERT INTO event_index_products (business_id, product_id, created_at, state) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (business_id, product_id) DO UPDATE SET "
    "state = excluded.state"
)
INSERT_CUSTOMER = (
    "INSERT INTO event_index_customers "
    "(business_id, customer_id, email, name, phone_number, metadata, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


STREAM_ROWS = 10_000  # rows a streamed scan holds at a time
MIGRATION_MARKER = "__migration__"  # the library's own row in each tracking table
DROP = (
    "DROP TABLE IF EXISTS event_index_usage",
    "DROP TABLE IF EXISTS event_index_voids",
    "DROP TABLE IF EXISTS event_index_customers",
    "DROP TABLE IF EXISTS event_index_meters",
    "DROP TABLE IF EXISTS event_index_products",
    "DROP TABLE IF EXISTS event_index_invoices",
    "DROP TABLE IF EXISTS event_index_seal",
)


class TrackedSQL:
    """A read model's SQL beside a tracking recorder; ``mark`` is the store's placeholder."""

    mark = "?"
    datastore: Any
    drop_statements: tuple[str, ...] = ()

    if TYPE_CHECKING:  # provided by the library's tracking recorder

        def _insert_tracking(self, curs: Any, tracking: Tracking) -> None: ...

    def _q(self, statement: str) -> Any:
        return statement if self.mark == "?" else statement.replace("?", self.mark)

    def reset(self) -> None:
        """Drop the rows and the tracking position, and create empty tables again."""
        reset_tables(self)

    def _fetch(self, statement: str, params: list[object]) -> list[Sequence[Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._q(statement), params)
            return _tuples(curs)


class EventIndexSQL(TrackedSQL):
    """The event index's statements."""

    drop_statements: tuple[str, ...] = DROP

    def record(
        self,
        events: Sequence[tuple[int, UsageEventView]],
        customers: Sequence[CustomerView],
        meters: Sequence[MeterView],
        products: Sequence[ProductView],
        invoices: Sequence[InvoiceView],
        tracking: Tracking,
        voids: Sequence[tuple[int, VoidView]] = (),
        seals: Sequence[SealView] = (),
        after: int | None = None,
    ) -> None:
        """Write a batch's rows and its position; with ``after``, only if the index is
        still where the batch was read (``PositionMovedError`` otherwise: another
        follower, or a rebuild, moved it)."""
        usage_rows = [
            (
                e.business_id,
                e.event_id,
                e.customer_id,
                e.event_name,
                to_micros(e.timestamp),
                encode_metadata(e.metadata),
                position,
            )
            for position, e in events
        ]
        customer_rows = [
            (
                c.business_id,
                c.customer_id,
                c.email,
                c.name,
                c.phone_number,
                encode_metadata(c.metadata),
                to_micros(c.created_at),
            )
            for c in customers
        ]
        meter_rows = [
            (m.business_id, m.meter_id, m.archived, to_micros(m.created_at), encode_meter(m))
            for m in meters
        ]
        with self.datastore.transaction(commit=True) as curs:
            if after is not None:
                self._check_position(curs, tracking.application_name, after)
            if usage_rows:
                self._insert_rows(curs, USAGE_TABLE, usage_rows)
            if voids:
                curs.executemany(
                    self._q(INSERT_VOID),
                    [
                        (v.business_id, v.event_id, position, to_micros(v.voided_at), v.reason)
                        for position, v in voids
                    ],
                )
            if customer_rows:
                curs.executemany(self._q(INSERT_CUSTOMER), customer_rows)
            if meter_rows:
                curs.executemany(self._q(UPSERT_METER), meter_rows)
            if invoices:
                curs.executemany(
                    self._q(INSERT_INVOICE),
                    [
                        (
                            i.business_id,
                            i.invoice_id,
                            i.subscription_id,
                            i.customer_id,
                            to_micros(i.cycle_start),
                            encode_invoice(i),
                        )
                        for i in invoices
                    ],
                )
            if products:
                curs.executemany(
                    self._q(UPSERT_PRODUCT),
                    [
                        (p.business_id, p.product_id, to_micros(p.created_at), encode_product(p))
                        for p in products
                    ],
                )
            if seals:
                self._insert_rows(curs, SEAL_TABLE, self._chained(curs, seals, after))
            self._insert_tracking(curs, tracking)

    def _check_position(self, curs: Any, application_name: str, after: int) -> None:
        table = getattr(self, "tracking_table_name", "tracking")
        if self.mark != "?":  # one batch at a time: a second writer waits, then sees the move
            curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (table,))
        curs.execute(
            self._q(f"SELECT MAX(notification_id) FROM {table} WHERE application_name = ?"),  # noqa: S608
            (application_name,),
        )
        rows = _tuples(curs)
        position = (rows[0][0] if rows else None) or 0
        if position != after:
            raise PositionMovedError(
                f"the event index is at {position}, not at {after} where this batch was read"
            )

    def _insert_rows(
        self, curs: Any, table: tuple[str, tuple[tuple[str, str], ...]], rows: Sequence[Any]
    ) -> None:
        """Insert ``rows`` (a row once only): on PostgreSQL as one statement over
        column arrays, which is several times faster than a statement a row."""
        name, columns = table
        names = ", ".join(column for column, _ in columns)
        if self.mark == "?":
            marks = ", ".join("?" for _ in columns)
            statement = f"INSERT INTO {name} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608
            curs.executemany(statement, rows)
            return
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)  # binary arrays
        curs.execute(
            f"INSERT INTO {name} ({names}) SELECT * FROM unnest({arrays}) "  # noqa: S608
            "ON CONFLICT DO NOTHING",
            [list(column) for column in zip(*rows, strict=True)],
        )

    def _chained(
        self, curs: Any, seals: Sequence[SealView], after: int | None
    ) -> list[tuple[object, ...]]:
        """Seal rows, each with the chain value up to it (from the last sealed before)."""
        curs.execute(self._q(LAST_CHAIN), (seals[0].position - 1,))
        found = _tuples(curs)
        if not found and after:
            raise PositionMovedError(f"no seal before position {seals[0].position}")
        previous = found[0][0] if found else GENESIS
        rows: list[tuple[object, ...]] = []
        for seal in seals:
            previous = chain(previous, seal.digest)
            rows.append(
                (
                    seal.position,
                    seal.originator_id,
                    seal.version,
                    seal.digest,
                    previous,
                )
            )
        return rows

    def seal_chain_at(self, position: int) -> str:
        rows = self._fetch(LAST_CHAIN, [position])
        return str(rows[0][0]) if rows else GENESIS

    def seals(self, after: int, limit: int) -> list[tuple[SealView, str]]:
        rows = self._fetch(
            "SELECT position, originator_id, version, digest, chain "
            "FROM event_index_seal WHERE position > ? ORDER BY position LIMIT ?",
            [after, limit],
        )
        return [(SealView(*row[:4]), str(row[4])) for row in rows]

    def label_of(self, seal: SealView) -> str:
        rows = self._fetch(
            "SELECT business_id, event_id FROM event_index_usage WHERE position = ?",
            [seal.position],
        )
        if rows:
            return f"usage event {rows[0][0]}/{rows[0][1]}"
        return f"aggregate {seal.originator_id} v{seal.version}"

    def list_meters(self, query: MeterQuery) -> list[MeterView]:
        statement = (
            "SELECT state FROM event_index_meters WHERE business_id = ? AND archived = ? "
            "ORDER BY created_at DESC, meter_id DESC LIMIT ? OFFSET ?"
        )
        params: list[object] = [
            query.business_id,
            query.archived,
            query.page_size,
            query.page_number * query.page_size,
        ]
        return [decode_meter(row[0]) for row in self._fetch(statement, params)]

    def list_events(self, query: EventQuery) -> list[UsageEventView]:
        where: list[str] = ["u.business_id = ?"]
        params: list[object] = [query.business_id]
        for column, value in (("customer_id", query.customer_id), ("event_name", query.event_name)):
            if value is not None:
                where.append(f"u.{column} = ?")
                params.append(value)
        if query.start is not None:
            where.append("u.ts >= ?")
            params.append(to_micros(query.start))
        if query.end is not None:
            where.append("u.ts < ?")
            params.append(to_micros(query.end))
        if query.voided is not None:
            where.append(f"v.position IS {'NOT ' if query.voided else ''}NULL")
        statement = (
            f"SELECT {USAGE_COLUMNS}, v.voided_at, v.reason FROM {USAGE_FROM} "  # noqa: S608
            f"WHERE {' AND '.join(where)} "
            "ORDER BY u.ts DESC, u.event_id DESC LIMIT ? OFFSET ?"
        )
        params += [query.page_size, query.page_number * query.page_size]
        return [usage_of(row) for row in self._fetch(statement, params)]

    def list_products(self, query: ProductQuery) -> list[ProductView]:
        statement = (
            "SELECT state FROM event_index_products WHERE business_id = ? "
            "ORDER BY created_at DESC, product_id DESC LIMIT ? OFFSET ?"
        )
        params: list[object] = [
            query.business_id,
            query.page_size,
            query.page_number * query.page_size,
        ]
        return [decode_product(row[0]) for row in self._fetch(statement, params)]

    def list_invoices(self, query: InvoiceQuery) -> list[InvoiceView]:
        where: list[str] = ["business_id = ?"]
        params: list[object] = [query.business_id]
        for column, value in (
            ("customer_id", query.customer_id),
            ("subscription_id", query.subscription_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        statement = (
            f"SELECT state FROM event_index_invoices WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY cycle_start DESC, invoice_id DESC LIMIT ? OFFSET ?"
        )
        params += [query.page_size, query.page_number * query.page_size]
        return [decode_invoice(row[0]) for row in self._fetch(statement, params)]

    def scan_events(
        self,
        business_id: str,
        event_name: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        up_to: int | None = None,
    ) -> list[UsageEventView]:
        """Every event of a name in ``[start, end)`` that counts, unpaged.

        With ``up_to``, as a fold at that cut saw them: recorded at a position up
        to it and not voided at one; without, every event not voided.
        """
        with self.datastore.transaction(commit=False) as curs:
            return self._scan(curs, business_id, event_name, customer_id, start, end, up_to)

    def stream_records(
        self,
        business_id: str,
        event_name: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        up_to: int | None = None,
    ) -> Iterator[UsageRecord]:
        """What ``scan_events`` selects, as (timestamp, event_id, event_name, metadata),
        ``STREAM_ROWS`` rows at a time: memory stays flat in the number of events.

        On PostgreSQL through a server-side cursor; on SQLite by ``fetchmany``.
        The read transaction stays open until the iterator is exhausted or closed.
        """
        statement, params = self._scan_query(
            business_id, event_name, customer_id, start, end, up_to, RECORD_COLUMNS
        )
        with self.datastore.transaction(commit=False) as curs:
            if self.mark == "?":
                cursor = getattr(curs, "sqlite_cursor", curs)  # the library wraps sqlite3's
                cursor.execute(statement, params)
                fetch = cursor.fetchmany
            else:
                cursor = curs.connection.cursor(
                    name="stream_records", binary=True, row_factory=tuple_row
                )
                cursor.execute(statement, params)
                fetch = cursor.fetchmany
            try:
                while rows := fetch(STREAM_ROWS):
                    for ts, event_id, name, metadata in rows:
                        yield from_micros(ts), event_id, name, decode_metadata(metadata)
            finally:
                if self.mark != "?":
                    cursor.close()

    def _scan_query(
        self,
        business_id: str,
        event_name: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        up_to: int | None,
        columns: str = "",
    ) -> tuple[Any, list[object]]:
        statement = (
            f"SELECT {columns or USAGE_COLUMNS} FROM {USAGE_FROM} "  # noqa: S608
            "WHERE u.business_id = ? AND u.event_name = ? AND u.ts >= ? AND u.ts < ?"
        )
        params: list[object] = [business_id, event_name, to_micros(start), to_micros(end)]
        if customer_id is not None:
            statement += " AND u.customer_id = ?"
            params.append(customer_id)
        if up_to is None:
            statement += " AND v.position IS NULL"
        else:
            statement += f" AND {COUNTED_AT}"
            params += [up_to, up_to]
        return self._q(statement), params

    def _scan(
        self,
        curs: Any,
        business_id: str,
        event_name: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        up_to: int | None,
    ) -> list[UsageEventView]:
        statement, params = self._scan_query(
            business_id, event_name, customer_id, start, end, up_to
        )
        curs.execute(statement, params)
        return [usage_of(row) for row in _tuples(curs)]

    def counted_in_hours(
        self,
        hours: Collection[tuple[str, str, str, datetime]],
        up_to: int,
        application_name: str,
    ) -> dict[tuple[str, str, str, datetime], list[UsageEventView]] | None:
        """The events that count at ``up_to`` in each (business, event name, customer, hour).

        ``None`` when the index has not reached ``up_to`` yet: its rows would not
        be complete. Position and rows are read in one transaction.
        """
        table = getattr(self, "tracking_table_name", "tracking")
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._q(
                    f"SELECT MAX(notification_id) FROM {table} WHERE application_name = ?"  # noqa: S608
                ),
                (application_name,),
            )
            rows = _tuples(curs)
            if not rows or rows[0][0] is None or rows[0][0] < up_to:
                return None
            return {
                key: self._scan(curs, key[0], key[1], key[2], key[3], key[3] + _HOUR, up_to)
                for key in hours
            }

    def list_customers(self, query: CustomerQuery) -> list[CustomerView]:
        where: list[str] = ["business_id = ?"]
        params: list[object] = [query.business_id]
        if query.email is not None:
            where.append("lower(email) = lower(?)")
            params.append(query.email)
        if query.name is not None:
            where.append("lower(name) LIKE ?")
            params.append(f"%{query.name.lower()}%")
        if query.created_at_gte is not None:
            where.append("created_at >= ?")
            params.append(to_micros(query.created_at_gte))
        if query.created_at_lte is not None:
            where.append("created_at <= ?")
            params.append(to_micros(query.created_at_lte))
        statement = (
            "SELECT business_id, customer_id, email, name, phone_number, metadata, "  # noqa: S608
            f"created_at FROM event_index_customers WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, customer_id DESC LIMIT ? OFFSET ?"
        )
        params += [query.page_size, query.page_number * query.page_size]
        return [
            CustomerView(
                row[0], row[1], row[2], row[3], row[4], decode_metadata(row[5]), from_micros(row[6])
            )
            for row in self._fetch(statement, params)
        ]


_HOUR = timedelta(hours=1)


def _tuples(curs: Any) -> list[Sequence[Any]]:
    return [
        tuple(row) if not isinstance(row, dict) else tuple(row.values()) for row in curs.fetchall()
    ]


def usage_of(row: Sequence[Any]) -> UsageEventView:
    """A usage event from its index row: six columns, then the void's two, if selected."""
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


def reset_tables(store: Any) -> None:
    """Drop a tracked view's tables and forget its positions, in one transaction.

    The tracking table itself stays: the library keeps a migration marker row
    in it (and remembers in memory that the table exists).
    """
    tracking = getattr(store, "tracking_table_name", "tracking")
    with store.datastore.transaction(commit=True) as curs:
        for statement in store.drop_statements:
            curs.execute(statement)
        curs.execute(
            f"DELETE FROM {tracking} WHERE application_name <> '{MIGRATION_MARKER}'"  # noqa: S608
        )
    store.create_table()


class SQLiteEventIndex(EventIndexSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *TABLES]


class PostgresEventIndex(EventIndexSQL, PostgresTrackingRecorder):
    mark = "%s"

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="event_index_tracking")
        self.sql_create_statements.extend(SQL(t).format() for t in TABLES)

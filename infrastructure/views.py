"""The event index read model, on SQLite and PostgreSQL, beside its tracking row.

Rows and the log position they reflect are written in one transaction through
eventsourcing's tracking recorders, so replaying a batch never doubles a row.
The SQL is shared; only placeholders and table creation differ per store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.ports import (
    CustomerQuery,
    CustomerView,
    EventQuery,
    InvoiceQuery,
    InvoiceView,
    MeterQuery,
    MeterView,
    ProductQuery,
    ProductView,
    UsageEventView,
)
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
)
INSERT_USAGE = (
    "INSERT INTO event_index_usage "
    "(business_id, event_id, customer_id, event_name, ts, metadata, position) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
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


MIGRATION_MARKER = "__migration__"  # the library's own row in each tracking table
DROP = (
    "DROP TABLE IF EXISTS event_index_usage",
    "DROP TABLE IF EXISTS event_index_customers",
    "DROP TABLE IF EXISTS event_index_meters",
    "DROP TABLE IF EXISTS event_index_products",
    "DROP TABLE IF EXISTS event_index_invoices",
)


class EventIndexSQL:
    """Shared statements; ``mark`` is the store's placeholder."""

    mark = "?"
    datastore: Any
    drop_statements: tuple[str, ...] = DROP

    if TYPE_CHECKING:  # provided by the library's tracking recorder

        def _insert_tracking(self, curs: Any, tracking: Tracking) -> None: ...

    def _q(self, statement: str) -> Any:
        return statement if self.mark == "?" else statement.replace("?", self.mark)

    def reset(self) -> None:
        """Drop the rows and the tracking position, and create empty tables again."""
        reset_tables(self)

    def record(
        self,
        events: Sequence[tuple[int, UsageEventView]],
        customers: Sequence[CustomerView],
        meters: Sequence[MeterView],
        products: Sequence[ProductView],
        invoices: Sequence[InvoiceView],
        tracking: Tracking,
    ) -> None:
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
            if usage_rows:
                curs.executemany(self._q(INSERT_USAGE), usage_rows)
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
            self._insert_tracking(curs, tracking)

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
        where: list[str] = ["business_id = ?"]
        params: list[object] = [query.business_id]
        for column, value in (("customer_id", query.customer_id), ("event_name", query.event_name)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.start is not None:
            where.append("ts >= ?")
            params.append(to_micros(query.start))
        if query.end is not None:
            where.append("ts < ?")
            params.append(to_micros(query.end))
        statement = (
            "SELECT business_id, event_id, customer_id, event_name, ts, metadata "  # noqa: S608
            f"FROM event_index_usage WHERE {' AND '.join(where)} "
            "ORDER BY ts DESC, event_id DESC LIMIT ? OFFSET ?"
        )
        params += [query.page_size, query.page_number * query.page_size]
        return [
            UsageEventView(
                row[0], row[1], row[2], row[3], from_micros(row[4]), decode_metadata(row[5])
            )
            for row in self._fetch(statement, params)
        ]

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
        """Every event of a name in ``[start, end)``, unpaged: a meter's partial hours.

        With ``up_to``, only events at log positions up to it: the cycle as a fold
        at that cut saw it.
        """
        statement = (
            "SELECT business_id, event_id, customer_id, event_name, ts, metadata "
            "FROM event_index_usage WHERE business_id = ? AND event_name = ? "
            "AND ts >= ? AND ts < ?"
        )
        params: list[object] = [business_id, event_name, to_micros(start), to_micros(end)]
        if customer_id is not None:
            statement += " AND customer_id = ?"
            params.append(customer_id)
        if up_to is not None:
            statement += " AND position <= ?"
            params.append(up_to)
        return [
            UsageEventView(
                row[0], row[1], row[2], row[3], from_micros(row[4]), decode_metadata(row[5])
            )
            for row in self._fetch(statement, params)
        ]

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

    def _fetch(self, statement: str, params: list[object]) -> list[Sequence[Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._q(statement), params)
            return [
                tuple(row) if not isinstance(row, dict) else tuple(row.values())
                for row in curs.fetchall()
            ]


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

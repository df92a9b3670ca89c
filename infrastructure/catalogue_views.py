"""The catalogue read model on SQLite and PostgreSQL (``application.catalogue``).

Each listing is served by an index on exactly what it filters and orders by:
the business first, then the filter, then the creation time (newest first).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.catalogue import CatalogueChanges
from application.views import (
    CatalogueCounts,
    CustomerQuery,
    CustomerView,
    EntitlementQuery,
    EntitlementView,
    InvoiceQuery,
    InvoiceView,
    MeterQuery,
    MeterView,
    ProductQuery,
    ProductView,
    WebhookView,
)
from infrastructure import catalogue_subscriptions
from infrastructure.catalogue_subscriptions import SubscriptionRowsSQL
from infrastructure.codec import (
    decode_entitlement,
    decode_invoice,
    decode_metadata,
    decode_meter,
    decode_product,
    decode_webhook,
    encode_entitlement,
    encode_invoice,
    encode_metadata,
    encode_meter,
    encode_product,
    encode_webhook,
    from_micros,
    to_micros,
)
from infrastructure.sql import reset_tables
from infrastructure.view_schema import lacking_columns, report_outdated

TABLES = (
    "CREATE TABLE IF NOT EXISTS catalogue_customers ("
    "business_id TEXT NOT NULL, customer_id TEXT NOT NULL, email TEXT NOT NULL, "
    "name TEXT NOT NULL, phone_number TEXT, metadata TEXT NOT NULL, "
    "created_at BIGINT NOT NULL, PRIMARY KEY (business_id, customer_id))",
    "CREATE INDEX IF NOT EXISTS catalogue_customers_by_time "
    "ON catalogue_customers (business_id, created_at)",
    "CREATE INDEX IF NOT EXISTS catalogue_customers_by_email "
    "ON catalogue_customers (business_id, lower(email), created_at)",
    "CREATE TABLE IF NOT EXISTS catalogue_meters ("
    "business_id TEXT NOT NULL, meter_id TEXT NOT NULL, archived BOOLEAN NOT NULL, "
    "created_at BIGINT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (business_id, meter_id))",
    "CREATE INDEX IF NOT EXISTS catalogue_meters_by_time "
    "ON catalogue_meters (business_id, archived, created_at)",
    "CREATE TABLE IF NOT EXISTS catalogue_products ("
    "business_id TEXT NOT NULL, product_id TEXT NOT NULL, archived BOOLEAN NOT NULL, "
    "created_at BIGINT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (business_id, product_id))",
    "CREATE INDEX IF NOT EXISTS catalogue_products_by_time "
    "ON catalogue_products (business_id, archived, created_at)",
    *catalogue_subscriptions.TABLES,
    "CREATE TABLE IF NOT EXISTS catalogue_entitlements ("
    "business_id TEXT NOT NULL, entitlement_id TEXT NOT NULL, deleted BOOLEAN NOT NULL, "
    "created_at BIGINT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (business_id, entitlement_id))",
    "CREATE INDEX IF NOT EXISTS catalogue_entitlements_by_time "
    "ON catalogue_entitlements (business_id, deleted, created_at)",
    "CREATE TABLE IF NOT EXISTS catalogue_invoices ("
    "business_id TEXT NOT NULL, invoice_id TEXT NOT NULL, subscription_id TEXT NOT NULL, "
    "customer_id TEXT NOT NULL, cycle_start BIGINT NOT NULL, position BIGINT NOT NULL, "
    "state TEXT NOT NULL, PRIMARY KEY (business_id, invoice_id))",
    "CREATE INDEX IF NOT EXISTS catalogue_invoices_by_subscription "
    "ON catalogue_invoices (business_id, subscription_id, cycle_start)",
    "CREATE INDEX IF NOT EXISTS catalogue_invoices_by_customer "
    "ON catalogue_invoices (business_id, customer_id, cycle_start)",
    "CREATE INDEX IF NOT EXISTS catalogue_invoices_by_time "
    "ON catalogue_invoices (business_id, cycle_start)",
    "CREATE UNIQUE INDEX IF NOT EXISTS catalogue_invoices_by_position "
    "ON catalogue_invoices (position)",
    "CREATE TABLE IF NOT EXISTS catalogue_webhooks ("
    "business_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, created_at BIGINT NOT NULL, "
    "state TEXT NOT NULL, PRIMARY KEY (business_id, endpoint_id))",
    "CREATE INDEX IF NOT EXISTS catalogue_webhooks_by_time "
    "ON catalogue_webhooks (business_id, created_at, endpoint_id)",
)
NAMES = (
    "catalogue_customers",
    "catalogue_meters",
    "catalogue_products",
    "catalogue_subscriptions",
    "catalogue_entitlements",
    "catalogue_invoices",
    "catalogue_webhooks",
)
DROP = tuple(f"DROP TABLE IF EXISTS {name}" for name in NAMES)
# Columns added since a table was first made: an older table is rebuilt (view_schema).
EXPECTED_COLUMNS = {
    "catalogue_products": ("archived",),
    "catalogue_entitlements": ("deleted",),
    "catalogue_subscriptions": catalogue_subscriptions.COLUMNS,
}
MAX_LOOKUP = 1000  # ids looked up at once: a page's worth, with room
UPSERT_CUSTOMER = (
    "INSERT INTO catalogue_customers "
    "(business_id, customer_id, email, name, phone_number, metadata, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (business_id, customer_id) DO UPDATE SET "
    "email = excluded.email, name = excluded.name, phone_number = excluded.phone_number, "
    "metadata = excluded.metadata"
)
UPSERT_METER = (
    "INSERT INTO catalogue_meters (business_id, meter_id, archived, created_at, state) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (business_id, meter_id) DO UPDATE SET "
    "archived = excluded.archived, state = excluded.state"
)
UPSERT_PRODUCT = (
    "INSERT INTO catalogue_products (business_id, product_id, archived, created_at, state) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (business_id, product_id) DO UPDATE SET "
    "archived = excluded.archived, state = excluded.state"
)
UPSERT_ENTITLEMENT = (
    "INSERT INTO catalogue_entitlements (business_id, entitlement_id, deleted, created_at, state) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (business_id, entitlement_id) DO UPDATE SET "
    "deleted = excluded.deleted, state = excluded.state"
)
INSERT_INVOICE = (
    "INSERT INTO catalogue_invoices "
    "(business_id, invoice_id, subscription_id, customer_id, cycle_start, position, state) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
UPSERT_WEBHOOK = (
    "INSERT INTO catalogue_webhooks (business_id, endpoint_id, created_at, state) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (business_id, endpoint_id) DO UPDATE SET "
    "state = excluded.state"
)
DELETE_WEBHOOK = "DELETE FROM catalogue_webhooks WHERE business_id = ? AND endpoint_id = ?"
PAGE = "LIMIT ? OFFSET ?"


class CatalogueSQL(SubscriptionRowsSQL):
    drop_statements: tuple[str, ...] = DROP

    def create_table(self) -> None:
        lacking = lacking_columns(self, EXPECTED_COLUMNS)
        if lacking:  # made by an older version: built again from the log
            report_outdated("catalogue", lacking)
            reset_tables(self)  # which creates the tables anew
            return
        super().create_table()

    def record(self, changes: CatalogueChanges, tracking: Tracking, after: int) -> None:
        with self._batch(tracking, after) as curs:
            if changes.customers:
                curs.executemany(
                    self._q(UPSERT_CUSTOMER), [_customer_row(c) for c in changes.customers]
                )
            if changes.meters:
                curs.executemany(
                    self._q(UPSERT_METER),
                    [
                        (
                            m.business_id,
                            m.meter_id,
                            m.archived,
                            to_micros(m.created_at),
                            encode_meter(m),
                        )
                        for m in changes.meters
                    ],
                )
            if changes.products:
                curs.executemany(
                    self._q(UPSERT_PRODUCT),
                    [
                        (
                            p.business_id,
                            p.product_id,
                            p.archived,
                            to_micros(p.created_at),
                            encode_product(p),
                        )
                        for p in changes.products
                    ],
                )
            self._write_subscriptions(curs, changes.subscriptions)
            if changes.entitlements:
                curs.executemany(
                    self._q(UPSERT_ENTITLEMENT),
                    [
                        (
                            e.business_id,
                            e.entitlement_id,
                            e.deleted,
                            to_micros(e.created_at),
                            encode_entitlement(e),
                        )
                        for e in changes.entitlements
                    ],
                )
            if changes.webhooks:
                curs.executemany(
                    self._q(UPSERT_WEBHOOK),
                    [
                        (w.business_id, w.endpoint_id, to_micros(w.created_at), encode_webhook(w))
                        for w in changes.webhooks
                    ],
                )
            if changes.deleted_webhooks:
                curs.executemany(self._q(DELETE_WEBHOOK), changes.deleted_webhooks)
            if changes.invoices:
                curs.executemany(
                    self._q(INSERT_INVOICE),
                    [
                        (
                            i.business_id,
                            i.invoice_id,
                            i.subscription_id,
                            i.customer_id,
                            to_micros(i.cycle_start),
                            position,
                            encode_invoice(i),
                        )
                        for position, i in changes.invoices
                    ],
                )

    def list_webhooks(
        self, business_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[WebhookView]:
        statement = "SELECT state FROM catalogue_webhooks WHERE business_id = ?"
        params: list[object] = [business_id]
        if after is not None:
            statement += " AND (created_at, endpoint_id) > (?, ?)"
            params += [to_micros(after[0]), after[1]]
        statement += " ORDER BY created_at, endpoint_id LIMIT ?"
        return [decode_webhook(row[0]) for row in self._fetch(statement, [*params, limit])]

    def list_customers(self, query: CustomerQuery) -> list[CustomerView]:
        where: list[str] = ["business_id = ?"]
        params: list[object] = [query.business_id]
        if query.email is not None:
            where.append("lower(email) = lower(?)")
            params.append(query.email)
        if query.name is not None:  # a substring: no index can seek it; the business's rows
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
            f"created_at FROM catalogue_customers WHERE {' AND '.join(where)} "
            f"ORDER BY created_at DESC, customer_id DESC {PAGE}"
        )
        params += _page(query.page_number, query.page_size)
        return [
            CustomerView(
                row[0], row[1], row[2], row[3], row[4], decode_metadata(row[5]), from_micros(row[6])
            )
            for row in self._fetch(statement, params)
        ]

    def counts(self, business_id: str) -> CatalogueCounts:
        """How many customers, meters and products (not archived) the business has."""
        customers, meters, products = (
            int(self._fetch(statement, params)[0][0])
            for statement, params in (
                ("SELECT COUNT(*) FROM catalogue_customers WHERE business_id = ?", [business_id]),
                (
                    "SELECT COUNT(*) FROM catalogue_meters WHERE business_id = ? AND archived = ?",
                    [business_id, False],
                ),
                (
                    "SELECT COUNT(*) FROM catalogue_products "
                    "WHERE business_id = ? AND archived = ?",
                    [business_id, False],
                ),
            )
        )
        return CatalogueCounts(int(customers), int(meters), int(products))

    def list_meters(self, query: MeterQuery) -> list[MeterView]:
        statement = (
            "SELECT state FROM catalogue_meters WHERE business_id = ? AND archived = ? "  # noqa: S608
            f"ORDER BY created_at DESC, meter_id DESC {PAGE}"
        )
        params = [query.business_id, query.archived, *_page(query.page_number, query.page_size)]
        return [decode_meter(row[0]) for row in self._fetch(statement, params)]

    def list_products(self, query: ProductQuery) -> list[ProductView]:
        statement = (
            "SELECT state FROM catalogue_products WHERE business_id = ? AND archived = ? "  # noqa: S608
            f"ORDER BY created_at DESC, product_id DESC {PAGE}"
        )
        params = [query.business_id, query.archived, *_page(query.page_number, query.page_size)]
        return [decode_product(row[0]) for row in self._fetch(statement, params)]

    def list_entitlements(self, query: EntitlementQuery) -> list[EntitlementView]:
        statement = (
            "SELECT state FROM catalogue_entitlements "  # noqa: S608
            "WHERE business_id = ? AND deleted = ? "
            f"ORDER BY created_at DESC, entitlement_id DESC {PAGE}"
        )
        params = [query.business_id, query.deleted, *_page(query.page_number, query.page_size)]
        return [decode_entitlement(row[0]) for row in self._fetch(statement, params)]

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
            f"SELECT state FROM catalogue_invoices WHERE {' AND '.join(where)} "  # noqa: S608
            f"ORDER BY cycle_start DESC, invoice_id DESC {PAGE}"
        )
        params += _page(query.page_number, query.page_size)
        return [decode_invoice(row[0]) for row in self._fetch(statement, params)]

    def customers_by_id(self, business_id: str, ids: Collection[str]) -> dict[str, CustomerView]:
        rows = self._by_id(
            "business_id, customer_id, email, name, phone_number, metadata, created_at",
            "catalogue_customers",
            "customer_id",
            business_id,
            ids,
        )
        found = (
            CustomerView(r[0], r[1], r[2], r[3], r[4], decode_metadata(r[5]), from_micros(r[6]))
            for r in rows
        )
        return {c.customer_id: c for c in found}

    def products_by_id(self, business_id: str, ids: Collection[str]) -> dict[str, ProductView]:
        rows = self._by_id("state", "catalogue_products", "product_id", business_id, ids)
        return {p.product_id: p for p in (decode_product(r[0]) for r in rows)}

    def meters_by_id(self, business_id: str, ids: Collection[str]) -> dict[str, MeterView]:
        rows = self._by_id("state", "catalogue_meters", "meter_id", business_id, ids)
        return {m.meter_id: m for m in (decode_meter(r[0]) for r in rows)}

    def entitlements_by_id(
        self, business_id: str, ids: Collection[str]
    ) -> dict[str, EntitlementView]:
        rows = self._by_id("state", "catalogue_entitlements", "entitlement_id", business_id, ids)
        return {e.entitlement_id: e for e in (decode_entitlement(r[0]) for r in rows)}

    def _by_id(
        self, columns: str, table: str, key: str, business_id: str, ids: Collection[str]
    ) -> list[Sequence[Any]]:
        wanted = sorted(set(ids))
        if not wanted:
            return []
        if len(wanted) > MAX_LOOKUP:
            raise ValueError(f"at most {MAX_LOOKUP} ids are looked up at once, not {len(wanted)}")
        marks = ", ".join("?" for _ in wanted)
        statement = f"SELECT {columns} FROM {table} WHERE business_id = ? AND {key} IN ({marks})"  # noqa: S608
        return self._fetch(statement, [business_id, *wanted])

    def invoices_after(self, position: int, limit: int) -> list[tuple[int, InvoiceView]]:
        rows = self._fetch(
            "SELECT position, state FROM catalogue_invoices WHERE position > ? "
            "ORDER BY position LIMIT ?",
            [position, limit],
        )
        return [(int(row[0]), decode_invoice(row[1])) for row in rows]


def _customer_row(c: CustomerView) -> tuple[object, ...]:
    return (
        c.business_id,
        c.customer_id,
        c.email,
        c.name,
        c.phone_number,
        encode_metadata(c.metadata),
        to_micros(c.created_at),
    )


def _page(number: int, size: int) -> list[object]:
    return [size, number * size]


class SQLiteCatalogue(CatalogueSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *TABLES]


class PostgresCatalogue(CatalogueSQL, PostgresTrackingRecorder):
    mark = "%s"

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="catalogue_tracking")
        self.sql_create_statements.extend(SQL(t).format() for t in TABLES)

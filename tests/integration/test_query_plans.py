"""Every read query of a read model uses an index that matches its filter, on both stores.

Each routine read (every listing with each filter it offers, the folds' reads, the
billing schedule's) is run once while its statements are recorded; then each
statement is explained: on PostgreSQL with sequential scans disabled, so a plan
that still scans a table has no index to use; on SQLite every table must be
searched through an index, never scanned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from application.credit_balances import BalanceQuery, GrantQuery, LedgerQuery
from application.views import (
    CustomerQuery,
    EntitlementQuery,
    EventQuery,
    InvoiceQuery,
    MeterQuery,
    ProductQuery,
    SubscriptionQuery,
)
from tests.conftest import FakeClock
from tests.integration.test_audit import billed  # noqa: F401 - the fixture: a log of every kind

Statements = list[tuple[str, str, Any]]  # (projection, statement, parameters)


class _Cursor:
    def __init__(self, inner: Any, log: Statements, view: str) -> None:
        self._inner, self._log, self._view = inner, log, view

    def execute(self, statement: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._log.append((self._view, str(statement), params))
        return self._inner.execute(statement, params, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name == "sqlite_cursor":
            return _Cursor(value, self._log, self._view)
        if name == "connection":
            return _Connection(value, self._log, self._view)
        return value


class _Connection:
    def __init__(self, inner: Any, log: Statements, view: str) -> None:
        self._inner, self._log, self._view = inner, log, view

    def cursor(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self._inner.cursor(*args, **kwargs), self._log, self._view)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Datastore:
    def __init__(self, inner: Any, log: Statements, view: str) -> None:
        self._inner, self._log, self._view = inner, log, view

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[_Cursor]:
        with self._inner.transaction(commit=commit) as curs:
            yield _Cursor(curs, self._log, self._view)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def recorded(container: Any, clock: FakeClock) -> Statements:
    """Every routine read of every read model, with each filter it offers."""
    log: Statements = []
    views = container.views
    for name, view in views.items():
        view.datastore = _Datastore(view.datastore, log, name)
    r = container.reads
    [customer] = r.catalogue.list_customers(CustomerQuery("default"))
    cid = customer.customer_id
    now = clock.now
    week = now - timedelta(days=7)
    r.catalogue.list_customers(CustomerQuery("default", email="a@example.com"))
    r.catalogue.list_customers(CustomerQuery("default", name="ada"))
    r.catalogue.list_customers(CustomerQuery("default", created_at_gte=week, created_at_lte=now))
    r.catalogue.list_meters(MeterQuery("default"))
    r.catalogue.list_meters(MeterQuery("default", archived=True))
    r.catalogue.list_products(ProductQuery("default"))
    r.catalogue.list_entitlements(EntitlementQuery("default"))
    [invoice, *_] = r.catalogue.list_invoices(InvoiceQuery("default"))
    r.catalogue.list_invoices(InvoiceQuery("default", customer_id=cid))
    r.catalogue.list_invoices(InvoiceQuery("default", subscription_id=invoice.subscription_id))
    r.catalogue.subscriptions_of("default", cid)
    [sub, *_] = r.catalogue.list_subscriptions(SubscriptionQuery("default"), now)
    for query in (
        SubscriptionQuery("default", customer_id=cid),
        SubscriptionQuery("default", product_id=sub.product_id),
        SubscriptionQuery("default", cancel_at_next_billing_date=True),
        SubscriptionQuery("default", status="active"),
        SubscriptionQuery("default", status="cancelled"),
        SubscriptionQuery("default", created_at_gte=week, created_at_lte=now),
    ):
        r.catalogue.list_subscriptions(query, now)
    r.catalogue.customers_by_id("default", [cid, "cus_other"])
    r.catalogue.products_by_id("default", [sub.product_id])
    r.catalogue.meters_by_id("default", ["mtr_a", "mtr_b"])
    r.catalogue.entitlements_by_id("default", ["cet_a"])
    r.credits.customer_balances("default", cid, 10)
    r.catalogue.invoices_after(0, 10)
    for customer_id in (None, cid):
        for event_name in (None, "api.call"):
            for voided in (None, False, True):
                query = EventQuery("default", customer_id, event_name, voided=voided)
                r.usage_log.list_events(query)
    r.usage_log.list_events(EventQuery("default", start=week, end=now))
    r.usage_log.list_events(EventQuery("default", cid, "api.call", week, now, voided=True))
    for customer_id in (None, cid):
        for up_to in (None, 10):
            list(r.usage_log.stream_records("default", "api.call", customer_id, week, now, up_to))
    head = container.ledger.head()
    r.usage_log.counted_in_hours(
        [("default", "api.call", cid, now.replace(minute=0))], head, "ledger"
    )
    list(r.usage_log.name_history("default", "api.call", head))
    r.usage_log.label_at(5)
    r.seal.chain_at(head)
    r.seal.segments(0, 10)
    [meter] = r.catalogue.list_meters(MeterQuery("default"))
    for customer_id in (None, cid):
        r.usage.snapshot("default", [meter.meter_id], customer_id, week, now)
    r.usage.changed_since("default", cid, 0, now)

    [balance] = r.credits.balances(BalanceQuery("default", _entitlement(container), cid))
    entitlement_id = balance["credit_entitlement_id"]
    r.credits.balances(BalanceQuery("default", entitlement_id))
    r.credits.grants(GrantQuery("default", entitlement_id, cid))
    r.credits.grants(GrantQuery("default", entitlement_id, cid, status="active"))
    r.credits.entries(LedgerQuery("default", entitlement_id, cid))
    r.credits.entries(LedgerQuery("default", entitlement_id, cid, week, now, "credit_added"))
    r.schedule.due(now, timedelta(hours=1), 100)
    r.schedule.subscriptions(["a", "b"])
    for view in views.values():
        view.datastore = view.datastore._inner
    return [(v, s, p) for v, s, p in log if s.lstrip().upper().startswith("SELECT")]


def _entitlement(container: Any) -> str:
    [found] = container.reads.catalogue.list_entitlements(EntitlementQuery("default"))
    return str(found.entitlement_id)


def test_every_read_query_uses_an_index(billed: Any, clock: FakeClock) -> None:  # noqa: F811
    statements = recorded(billed, clock)
    assert len(statements) > 50
    explain = _explain_postgres if billed.settings.is_postgres else _explain_sqlite
    found = [(s, problems) for v, s, p in statements if (problems := explain(billed, v, s, p))]
    assert not found, "\n\n".join(f"{s}\n  -> {problems}" for s, problems in found)


_EQUALS = re.compile(
    r"(?:(\w+)\.)?(\w+|lower\(\w+\))\s*(?:=\s*(?:\?|%s|lower\((?:\?|%s)\))|IN\s*\()"
)
_TABLES = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)(?:\s+(?!ON\b|WHERE\b|LEFT\b|JOIN\b)(\w+))?")


def pinned(statement: str) -> dict[tuple[str, str], set[str]]:
    """Per (table, alias), the columns the WHERE clause pins to a value."""
    tables = {alias or table: table for table, alias in _TABLES.findall(statement)}
    where = re.split(r"\bWHERE\b", statement, maxsplit=1)
    if len(where) < 2:
        return {}
    clause = re.split(r"\b(?:ORDER BY|LIMIT|GROUP BY)\b", where[1])[0]
    found: dict[tuple[str, str], set[str]] = {}
    for alias, column in _EQUALS.findall(clause):
        name = alias or next(iter(tables))
        found.setdefault((tables[name], alias or tables[name]), set()).add(column)
    return found


def _explain_sqlite(container: Any, view: str, statement: str, params: Any) -> list[str]:
    """A full scan, or a search whose index leaves out a column pinned by the query.

    SQLite plans without statistics here, so its plan is what it will do."""
    with container.views[view].datastore.transaction(commit=False) as curs:
        curs.execute(f"EXPLAIN QUERY PLAN {statement}", params or [])
        details = [str(row[3]) for row in curs.fetchall()]
    tables = {alias or table for table, alias in _TABLES.findall(statement)}
    # A SEARCH goes through an index; a SCAN of a subquery's rows is no table's.
    problems = [d for d in details if d.startswith("SCAN ") and d.split()[1] in tables]
    for (_, alias), columns in pinned(statement).items():
        searched = " ".join(d for d in details if d.startswith(f"SEARCH {alias} "))
        missing = [c for c in columns if _spelled(c) not in searched]
        problems += [f"{alias}.{c} not in the index searched: {searched!r}" for c in missing]
    return problems


def _spelled(column: str) -> str:
    if column.startswith("lower("):
        return "<expr>="
    return "rowid=" if column == "position" else f"{column}="  # usage_events: a rowid alias


def _explain_postgres(container: Any, view: str, statement: str, params: Any) -> list[str]:
    """A sequential scan (with those disabled: no index could serve), or no index whose
    leading columns are the columns the query pins.

    The planner's choice between indexes follows statistics, which a test's few rows
    do not have; so the index is looked for in the catalogue."""
    with container.views[view].datastore.transaction(commit=False) as curs:
        curs.execute("SET LOCAL enable_seqscan = off")
        curs.execute(f"EXPLAIN (FORMAT JSON) {statement}", params)
        plan = _value(curs.fetchone())
        problems = [
            f"Seq Scan on {n.get('Relation Name')}"
            for n in _nodes((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
            if n["Node Type"] == "Seq Scan"
        ]
        for (table, alias), columns in pinned(statement).items():
            curs.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))
            leading = [_columns(str(_value(row))) for row in curs.fetchall()]
            if not any(set(found[: len(columns)]) == columns for found in leading):
                problems.append(f"no index of {table} leads with {sorted(columns)} ({alias})")
    return problems


def _value(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def _columns(indexdef: str) -> list[str]:
    inside = indexdef[indexdef.index("(") + 1 : indexdef.rindex(")")]
    return [part.strip().strip('"') for part in inside.split(", ")]


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def test_the_index_by_event_id_an_older_version_made_is_dropped(container: Any) -> None:
    """No read filters on an event id alone (the store's key keeps it unique): the usage
    log's index on it, which every event paid for, goes when the service starts."""
    view = container.views["usage_log"]
    with view.datastore.transaction(commit=True) as curs:
        curs.execute(
            "CREATE UNIQUE INDEX usage_events_by_id ON usage_events (business_id, event_id)"
        )
    assert "usage_events_by_id" in _indexes(view)
    type(view)(view.datastore).create_table()
    assert "usage_events_by_id" not in _indexes(view)
    assert "usage_events_by_customer" in _indexes(view)


def _indexes(view: Any) -> set[str]:
    with view.datastore.transaction(commit=False) as curs:
        if view.is_postgres:
            curs.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'usage_events'")
            return {str(row["indexname"]) for row in curs.fetchall()}
        curs.execute("PRAGMA index_list(usage_events)")
        return {str(row[1]) for row in curs.fetchall()}

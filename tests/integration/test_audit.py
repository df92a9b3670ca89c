"""Audit: an untouched store checks out; a stored event changed, deleted or inserted
with SQL behind the service's back is named; a tampered projection row is found."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from application.audit import verify_log
from application.ledger import EventInput
from application.views import CustomerQuery
from infrastructure.audit import audit
from infrastructure.projections import NAMES, registered
from infrastructure.runtime import close_cycles
from tests.api.helpers import client_for, make_customer
from tests.api.test_billing_api import meter, subscribe
from tests.api.test_credits_api import credit_product, entitlement, send
from tests.integration.test_cli import ledger


@pytest.fixture
def billed(make_container, clock) -> Any:
    """Credits, late usage, a void, two finalized cycles: every kind of fact in the log."""
    container = make_container(backdate_window=timedelta(days=70))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client, rollover_enabled=True, rollover_percentage=50)
        product_id = credit_product(client, calls, ent)
        begun = (clock.now - timedelta(days=35)).isoformat()
        assert subscribe(client, cid, product_id, start_date=begun).status_code == 200
        send(client, cid, clock.now - timedelta(days=20), "a", 1500)
        close_cycles(container, catch_up=True)
        send(client, cid, clock.now - timedelta(days=20), "late", 3)
        assert client.post("/events/a-7/void", json={"reason": "test"}).status_code == 200
        send(client, cid, clock.now - timedelta(hours=2), "b", 40)
        clock.advance(timedelta(days=32))
        close_cycles(container, catch_up=True)
        container.projector.catch_up()  # nothing left to apply behind the test's back
        yield container


def events_table(container: Any) -> str:
    return str(container.ledger.recorder.events_table_name)


def sql(container: Any, statement: str, params: tuple[Any, ...] = ()) -> None:
    recorder = container.ledger.recorder
    if container.settings.is_postgres:
        statement = statement.replace("?", "%s")
    with recorder.datastore.transaction(commit=True) as curs:
        curs.execute(statement, params)


def position_of(container: Any, event_id: str) -> int:
    """The event's log position, as the usage log recorded it."""
    [(position,)] = container.reads.usage_log._fetch(
        "SELECT position FROM usage_events WHERE business_id = ? AND event_id = ?",
        ["default", event_id],
    )
    return int(position)


def test_an_untouched_store_checks_out(billed) -> None:
    report = audit(billed)
    assert report.ok, report.mismatches
    assert report.invoices == 2
    assert report.events > 1500
    assert report.projections == list(NAMES)


def test_a_changed_event_is_named(billed) -> None:
    position = position_of(billed, "a-3")
    table = events_table(billed)
    column = "notification_id" if billed.settings.is_postgres else "rowid"
    sql(
        billed,
        f"UPDATE {table} SET state = ? WHERE {column} = ?",
        (b'{"tampered":true}', position),
    )
    report = audit_log_only(billed)
    [mismatch] = [m for m in report if "changed" in m.detail]
    assert mismatch.subject == f"position {position} (usage event default/a-3)"


def test_a_deleted_event_is_named(billed) -> None:
    position = position_of(billed, "a-11")
    column = "notification_id" if billed.settings.is_postgres else "rowid"
    sql(billed, f"DELETE FROM {events_table(billed)} WHERE {column} = ?", (position,))
    report = audit_log_only(billed)
    [mismatch] = [m for m in report if "deleted" in m.detail]
    assert mismatch.subject == f"position {position} (usage event default/a-11)"


def test_an_inserted_event_is_named(billed) -> None:
    """A forged row slipped in among the sealed positions: on PostgreSQL into a gap a
    rolled-back write left in the sequence; on SQLite, whose rowids leave no gaps, in
    the place of an event removed for it (seen as that event changed)."""
    table = events_table(billed)
    column = "notification_id" if billed.settings.is_postgres else "rowid"
    if billed.settings.is_postgres:
        sql(billed, f"SELECT nextval(pg_get_serial_sequence('{table}', 'notification_id'))")
        gap = (billed.ledger.recorder.max_notification_id() or 0) + 1
        [customer] = billed.reads.catalogue.list_customers(CustomerQuery("default"))
        honest = EventInput("after-gap", customer.customer_id, "api.call")
        outcome = billed.ledger.ingest("default", [honest], billed.clock())
        assert outcome.ingested_count == 1  # an honest event after the gap
        billed.projector.catch_up()
        assert gap < (billed.ledger.recorder.max_notification_id() or 0)
    else:  # rowids follow each other: the forged row takes the place of a removed one
        gap = position_of(billed, "a-20")
        sql(billed, f"DELETE FROM {table} WHERE rowid = ?", (gap,))
    columns = "originator_id, originator_version, topic, state"
    with billed.ledger.recorder.datastore.transaction(commit=False) as curs:
        curs.execute(f"SELECT {columns} FROM {table} LIMIT 1")
        row = curs.fetchone()
    values = list(row.values()) if isinstance(row, dict) else list(row)
    values[1] = values[1] + 100  # a later version of an aggregate: no key collides
    sql(
        billed,
        f"INSERT INTO {table} ({column}, {columns}) VALUES (?, ?, ?, ?, ?)",
        (gap, *values),
    )
    report = audit_log_only(billed)
    [mismatch] = [m for m in report if m.subject.startswith(f"position {gap} ")]
    kind = "inserted" if billed.settings.is_postgres else "changed"
    assert kind in mismatch.detail


def test_a_tampered_projection_row_is_found(billed) -> None:
    usage_store = billed.reads.usage
    with usage_store.datastore.transaction(commit=True) as curs:
        curs.execute("UPDATE usage_buckets SET count = count + 1")
    report = audit(billed)
    assert [m.subject for m in report.mismatches] == ["usage: usage_buckets"]


def test_a_changed_event_fails_the_invoice_it_was_folded_into(billed) -> None:
    position = position_of(billed, "a-5")
    column = "notification_id" if billed.settings.is_postgres else "rowid"
    sql(billed, f"DELETE FROM {events_table(billed)} WHERE {column} = ?", (position,))
    for name in ("usage_log", "usage"):  # an operator rebuilds them from the doctored log
        billed.views[name].reset()
    billed.projector.replace(registered("usage").make(billed.ledger, billed.views))
    billed.projector.catch_up()
    report = audit(billed)
    subjects = [m.subject for m in report.mismatches if m.check == "invoice"]
    assert subjects, report.mismatches  # the folds no longer give the recorded bytes


def test_the_command_exits_non_zero_listing_each_mismatch(billed) -> None:
    env = {"LEDGER_DATABASE_URL": billed.settings.database_url}
    clean = ledger("audit", "verify", "--json", env=env)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["ok"] is True
    position = position_of(billed, "a-9")
    column = "notification_id" if billed.settings.is_postgres else "rowid"
    sql(billed, f"DELETE FROM {events_table(billed)} WHERE {column} = ?", (position,))
    tampered = ledger("audit", "verify", env=env)
    assert tampered.returncode == 1, tampered.stderr
    assert f"position {position} (usage event default/a-9)" in tampered.stdout
    assert "audit: " in tampered.stdout.splitlines()[-1]


def audit_log_only(container: Any) -> list[Any]:
    return verify_log(container.ledger, container.reads)[2]

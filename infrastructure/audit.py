"""The projections' part of the audit: rebuild each in a scratch space, compare rows.

Scratch stores are SQLite files in a temporary directory, whatever the live
store is (projections only need a datastore); rows are compared after mapping
booleans to integers, the one difference between the two stores' answers.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from application.audit import AuditReport, Mismatch, Progress, verify
from application.credit_balances import CreditBalanceProjection
from application.event_index import EventIndexProjection
from application.follower import BatchProjection, LogFollower
from application.usage import UsageProjection, log_history
from infrastructure.bootstrap import Container
from infrastructure.credit_views import SQLiteCreditStore
from infrastructure.usage_views import SQLiteUsageStore
from infrastructure.views import SQLiteEventIndex

TABLES = {
    EventIndexProjection.name: (
        "event_index_usage",
        "event_index_voids",
        "event_index_customers",
        "event_index_meters",
        "event_index_products",
        "event_index_invoices",
        "event_index_seal",
    ),
    UsageProjection.name: ("usage_meters", "usage_buckets"),
    CreditBalanceProjection.name: ("credit_balances", "credit_grants", "credit_ledger"),
}
EXAMPLES = 5


def audit(
    container: Container,
    *,
    customer_id: str | None = None,
    since: Any = None,
    progress: Progress | None = None,
) -> AuditReport:
    """``application.audit.verify`` with this deployment's projections compared too."""
    for follower in container.followers:  # the seal and the live rows up to the head
        follower.catch_up()
    return verify(
        container.ledger,
        container.event_index,
        projections=lambda: compare_projections(container, progress),
        customer_id=customer_id,
        since=since,
        progress=progress,
    )


def compare_projections(
    container: Container, progress: Progress | None = None
) -> tuple[list[str], list[Mismatch]]:
    ledger = container.ledger
    mismatches: list[Mismatch] = []
    with tempfile.TemporaryDirectory(prefix="ledger-audit-") as scratch:
        index = SQLiteEventIndex(_datastore(scratch, "event_index"))
        usage = SQLiteUsageStore(_datastore(scratch, "usage"), index)
        credits = SQLiteCreditStore(_datastore(scratch, "credit_balances"))
        for store in (index, usage, credits):
            store.create_table()
        fresh: dict[str, tuple[BatchProjection, Any]] = {
            EventIndexProjection.name: (
                EventIndexProjection(index, ledger.meter_at, ledger.product_at),
                index,
            ),
            UsageProjection.name: (UsageProjection(usage, log_history(ledger)), usage),
            CreditBalanceProjection.name: (
                CreditBalanceProjection(credits, ledger.account_at),
                credits,
            ),
        }
        followers = {
            name: LogFollower(ledger, projection, batch_size=5000)
            for name, (projection, _) in fresh.items()
        }
        live = {f.projection.name: f for f in container.followers}
        app = ledger.name
        for name, follower in followers.items():
            # The live rows and their position in one snapshot; the scratch copy is
            # built to exactly that position (the scratch index first, which the
            # usage recount after a void reads), so a moving service compares true.
            position, live_rows = snapshot(live[name].projection.view, TABLES[name], app)
            if name != EventIndexProjection.name:
                followers[EventIndexProjection.name].catch_up(until=position)
            follower.catch_up(until=position)
            scratch_rows = snapshot(fresh[name][1], TABLES[name], app)[1]
            mismatches += compare(name, live_rows, scratch_rows)
            if progress is not None:
                progress("projections", len(followers))
    return list(followers), mismatches


def snapshot(
    store: Any, tables: Sequence[str], application_name: str
) -> tuple[int, dict[str, list[tuple[Any, ...]]]]:
    """The projection's position and every row of ``tables`` (normalised, sorted), read
    in one snapshot: one SQLite read transaction, REPEATABLE READ on PostgreSQL."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    tracking = getattr(store, "tracking_table_name", "tracking")
    with store.datastore.transaction(commit=False) as curs:
        if isinstance(store.datastore, PostgresDatastore):
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        curs.execute(
            f"SELECT MAX(notification_id) FROM {tracking} WHERE application_name = "  # noqa: S608
            + ("%s" if isinstance(store.datastore, PostgresDatastore) else "?"),
            (application_name,),
        )
        found = curs.fetchone()
        value = (
            (next(iter(found.values())) if isinstance(found, dict) else found[0]) if found else 0
        )
        for table in tables:
            curs.execute(f"SELECT * FROM {table}")  # noqa: S608 - table names are ours
            read = [
                tuple(_normal(v) for v in (r.values() if isinstance(r, dict) else r))
                for r in curs.fetchall()
            ]
            rows[table] = sorted(read, key=repr)
    return value or 0, rows


def compare(
    name: str,
    live: dict[str, list[tuple[Any, ...]]],
    scratch: dict[str, list[tuple[Any, ...]]],
) -> list[Mismatch]:
    found = []
    for table, rows in live.items():
        mine, theirs = set(rows), set(scratch[table])
        extra, missing = sorted(mine - theirs, key=repr), sorted(theirs - mine, key=repr)
        if extra or missing:
            detail = (
                f"{len(extra)} live rows the log does not give, {len(missing)} rows the log "
                f"gives that are not live; e.g. live {extra[:EXAMPLES]!r}, "
                f"from the log {missing[:EXAMPLES]!r}"
            )
            found.append(Mismatch("projection", f"{name}: {table}", detail[:2000]))
    return found


def _normal(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, memoryview | bytes):
        return bytes(value).hex()
    return value


def _datastore(directory: str, name: str) -> SQLiteDatastore:
    return SQLiteDatastore(str(Path(directory) / f"{name}.sqlite"), lock_timeout=30)

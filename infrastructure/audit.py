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
ATTEMPTS = 3


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
        for name, follower in followers.items():
            for _ in range(ATTEMPTS):
                position = live[name].position
                follower.catch_up(until=position)
                live_rows = dump(live[name].projection.view, TABLES[name])
                if live[name].position == position:
                    break
            scratch_rows = dump(fresh[name][1], TABLES[name])
            mismatches += compare(name, live_rows, scratch_rows)
            if progress is not None:
                progress("projections", len(followers))
    return list(followers), mismatches


def dump(store: Any, tables: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables``, normalised and sorted."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with store.datastore.transaction(commit=False) as curs:
        for table in tables:
            curs.execute(f"SELECT * FROM {table}")  # noqa: S608 - table names are ours
            found = [
                tuple(_normal(v) for v in (r.values() if isinstance(r, dict) else r))
                for r in curs.fetchall()
            ]
            rows[table] = sorted(found, key=repr)
    return rows


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

"""The projections' part of the audit: rebuild each in a scratch space, compare rows.

Scratch stores are SQLite files in a temporary directory, whatever the live
store is (projections only need a datastore); rows are compared after mapping
booleans to integers, the one difference between the two stores' answers.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eventsourcing.postgres import PostgresDatastore

from application.audit import AuditReport, Mismatch, Progress, verify
from application.projection import Projector
from application.usage import UsageProjection
from application.usage_log import UsageLogProjection
from infrastructure.bootstrap import Container
from infrastructure.projections import NAMES, READS, make_projections, make_views, registered

EXAMPLES = 5
Compared = Callable[[str, list[tuple[Any, ...]]], list[tuple[Any, ...]]]


def audit(
    container: Container,
    *,
    customer_id: str | None = None,
    since: Any = None,
    progress: Progress | None = None,
) -> AuditReport:
    """``application.audit.verify`` with this deployment's projections compared too."""
    container.projector.catch_up()  # the seal and the live rows up to the head
    return verify(
        container.ledger,
        container.reads,
        projections=lambda: compare_projections(container, progress),
        customer_id=customer_id,
        since=since,
        progress=progress,
    )


def compare_projections(
    container: Container, progress: Progress | None = None
) -> tuple[list[str], list[Mismatch]]:
    """Each projection rebuilt from the log in scratch SQLite files, compared row by row."""
    ledger = container.ledger
    mismatches: list[Mismatch] = []
    with tempfile.TemporaryDirectory(prefix="ledger-audit-") as scratch:
        views = make_views(None, lambda name: Path(scratch) / f"{name}.sqlite")
        projector = Projector(ledger, make_projections(ledger, views), batch_size=5000, reads=READS)
        app = ledger.name
        for done, name in enumerate(NAMES, start=1):
            tables, compared = registered(name).tables, registered(name).compared
            # The live rows and their position in one snapshot; the scratch copy is
            # built to exactly that position (the usage log first, which the usage
            # projection reads, and which may be ahead), so a moving service compares true.
            position, live_rows = snapshot(container.views[name], tables, app, compared)
            if name == UsageProjection.name:
                projector.catch_up(names=[UsageLogProjection.name], until=position)
            projector.catch_up(names=[name], until=position)
            scratch_rows = snapshot(views[name], tables, app, compared)[1]
            mismatches += compare(name, live_rows, scratch_rows)
            if progress is not None:
                progress("projections", done)
        for view in views.values():
            view.datastore.close()
    return list(NAMES), mismatches


def snapshot(
    store: Any,
    tables: Sequence[str],
    application_name: str,
    compared: Compared | None = None,
) -> tuple[int, dict[str, list[tuple[Any, ...]]]]:
    """The projection's position and every row of ``tables`` (as ``compared`` gives
    them, normalised, sorted), read in one snapshot: one SQLite read transaction,
    REPEATABLE READ on PostgreSQL."""
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
            stored = [tuple(r.values() if isinstance(r, dict) else r) for r in curs.fetchall()]
            if compared is not None:
                stored = compared(table, stored)
            read = [tuple(_normal(v) for v in r) for r in stored]
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

"""What every read model's SQL shares: placeholders, batches beside their tracking row.

A view is one of eventsourcing's tracking recorders with its own tables. A batch
is written in one transaction with the tracking position it reaches, and only
if the view is still at the position the batch was read after: on PostgreSQL
writers of one view take a transaction-level advisory lock first; on SQLite the
transaction's snapshot does it (a write after another process committed fails).
The SQL is shared; only placeholders and table creation differ per store.

On PostgreSQL a batch commits asynchronously (``synchronous_commit`` off for that
transaction only): it does not wait for the WAL to reach disk, which on two cores
under load was the projections' longest wait. Nothing is lost that matters: a read
model is derived from the log, which ingest writes durably before it answers; a
crash of the database server can forget only the last batches of a view, rows and
tracking position together, and the view applies them again from the log. Any
durable commit after a batch (a webhook's delivery, an invoice) flushes the WAL up
to it, so nothing durable ever depends on a forgotten batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Tracking

from application.ports import PositionMovedError

MIGRATION_MARKER = "__migration__"  # the library's own row in each tracking table
Table = tuple[str, tuple[tuple[str, str], ...]]  # name, (column, PostgreSQL type)...


class TrackedSQL:
    """A read model's SQL beside a tracking recorder; ``mark`` is the store's placeholder."""

    mark = "?"
    datastore: Any
    drop_statements: tuple[str, ...] = ()

    if TYPE_CHECKING:  # provided by the library's tracking recorder

        def _insert_tracking(self, curs: Any, tracking: Tracking) -> None: ...

        def create_table(self) -> None: ...

    @property
    def is_postgres(self) -> bool:
        return self.mark != "?"

    @property
    def tracking_table(self) -> str:
        return str(getattr(self, "tracking_table_name", "tracking"))

    def _q(self, statement: str) -> Any:
        return statement if self.mark == "?" else statement.replace("?", self.mark)

    def reset(self) -> None:
        """Drop the rows and the tracking position, and create empty tables again."""
        reset_tables(self)

    def _fetch(self, statement: str, params: Sequence[object]) -> list[Sequence[Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._q(statement), list(params))
            return tuples(curs)

    @contextmanager
    def _batch(self, tracking: Tracking, after: int) -> Iterator[Any]:
        """A transaction writing one batch: refused (``PositionMovedError``, nothing
        written) unless the view is at ``after``; the tracking row is written last.
        On PostgreSQL it commits without waiting for the disk (see above)."""
        with self.datastore.transaction(commit=True) as curs:
            if self.is_postgres:  # one batch at a time: a second writer waits, then sees it
                curs.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s)), "
                    "set_config('synchronous_commit', 'off', true)",
                    (self.tracking_table,),
                )
            position = self._position(curs, tracking.application_name)
            if position != after:
                raise PositionMovedError(
                    f"{self.tracking_table} is at {position}, not at {after} where this batch "
                    "was read"
                )
            yield curs
            self._insert_tracking(curs, tracking)

    def _position(self, curs: Any, application_name: str) -> int:
        curs.execute(
            self._q(
                f"SELECT MAX(notification_id) FROM {self.tracking_table} "  # noqa: S608
                "WHERE application_name = ?"
            ),
            (application_name,),
        )
        rows = tuples(curs)
        return int((rows[0][0] if rows else None) or 0)

    def _insert_rows(
        self, curs: Any, table: Table, rows: Sequence[Sequence[Any]], *, conflict: str = ""
    ) -> None:
        """Insert ``rows``: on PostgreSQL as one statement over binary column arrays,
        several times faster than a statement a row. ``conflict`` is an ON CONFLICT
        clause (default: a row already there is kept)."""
        if not rows:
            return
        name, columns = table
        names = ", ".join(column for column, _ in columns)
        on_conflict = conflict or "ON CONFLICT DO NOTHING"
        if not self.is_postgres:
            marks = ", ".join("?" for _ in columns)
            statement = f"INSERT INTO {name} ({names}) VALUES ({marks}) {on_conflict}"  # noqa: S608
            curs.executemany(statement, rows)
            return
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
        curs.execute(
            f"INSERT INTO {name} ({names}) SELECT * FROM unnest({arrays}) {on_conflict}",  # noqa: S608
            [list(column) for column in zip(*rows, strict=True)],
        )

    def _append_rows(self, curs: Any, table: Table, rows: Iterable[Sequence[Any]]) -> None:
        """Insert rows known not to be there yet (keyed by log positions after the
        view's own, where alone a batch is written, or just deleted): on PostgreSQL
        with COPY, about half the server's work of an insert over arrays. A row that
        is there after all fails the batch (``IntegrityError``) on either store,
        never silently skipped. ``rows`` may be a generator (a rebuild's buckets)."""
        if isinstance(rows, Sequence) and not rows:
            return
        name, columns = table
        names = ", ".join(column for column, _ in columns)
        if not self.is_postgres:
            marks = ", ".join("?" for _ in columns)
            curs.executemany(f"INSERT INTO {name} ({names}) VALUES ({marks})", rows)  # noqa: S608
            return
        with curs.copy(f"COPY {name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _snapshot(self, curs: Any) -> None:
        """Make the rest of this read transaction see one snapshot."""
        if self.is_postgres:
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def tuples(curs: Any) -> list[Sequence[Any]]:
    return [
        tuple(row) if not isinstance(row, dict) else tuple(row.values()) for row in curs.fetchall()
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

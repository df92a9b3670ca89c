"""Loading an export into an empty store, per store, keeping every position.

One transaction: the events are written in batches as the reader yields them
(COPY on PostgreSQL, ``executemany`` on SQLite) and committed only after the
reader has matched the trailer, so a refused file writes nothing. Positions are
written as they are, gaps included: invoices record the position they folded
up to. On PostgreSQL the notification id sequence is then set to the highest;
on SQLite the next rowid is the highest plus one by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from eventsourcing.application import Application
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier

from application.transfer import (
    BATCH,
    EventLine,
    ExportReader,
    InvalidExportError,
    Progress,
    StoreNotEmptyError,
    TransferError,
    TransferSummary,
)


def import_events(
    app: Application[Any],
    reader: ExportReader,
    on_batch: Progress | None = None,
    batch: int = BATCH,
) -> TransferSummary:
    """Load an export into ``app``'s empty store, keeping every position, in one transaction."""
    if reader.header.application != app.name:
        raise InvalidExportError(
            f"the export is of application {reader.header.application!r}, not {app.name!r}"
        )
    batches = _batches(reader.events(), batch)
    recorder = app.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        _into_postgres(recorder, batches, on_batch)
    elif isinstance(recorder, SQLiteApplicationRecorder):
        _into_sqlite(recorder, batches, on_batch)
    else:
        raise TransferError(f"cannot import into a {type(recorder).__name__}")
    assert reader.summary is not None  # the events were read to the checked trailer
    return reader.summary


def _batches(lines: Iterator[EventLine], size: int) -> Iterator[list[EventLine]]:
    while chunk := list(islice(lines, size)):
        yield chunk


def _refuse_unless_empty(curs: Any, statement: Any, table: str) -> None:
    curs.execute(statement)
    if curs.fetchone() is not None:
        raise StoreNotEmptyError(
            f"the store already holds events (table {table}): import only into an empty store"
        )


def _into_postgres(
    recorder: PostgresApplicationRecorder,
    batches: Iterable[list[EventLine]],
    on_batch: Progress | None,
) -> None:
    datastore = recorder.datastore
    table = Identifier(datastore.schema, recorder.events_table_name)
    columns = "notification_id, originator_id, originator_version, topic, state"
    copy_statement = SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, SQL(columns))
    count = last = 0
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        # The file may arrive slowly (a pipe): the session's idle timeout must not end it.
        curs.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        curs.execute(SQL("SET LOCAL lock_timeout = '{}s'").format(datastore.lock_timeout))
        # Writers take this lock too: nobody appends between the check and the commit.
        curs.execute(SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
        first = SQL("SELECT 1 FROM {} LIMIT 1").format(table)
        _refuse_unless_empty(curs, first, recorder.events_table_name)
        with curs.copy(copy_statement) as copy:
            copy.set_types(["int8", datastore.originator_id_type, "int8", "text", "bytea"])
            for lines in batches:
                for line in lines:
                    copy.write_row(
                        (
                            line.position,
                            line.originator_id,
                            line.originator_version,
                            line.topic,
                            line.stored_state(),
                        )
                    )
                count, last = count + len(lines), lines[-1].position
                if on_batch is not None:
                    on_batch(count, last)
        if last:  # new events continue after the highest imported position
            curs.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), %s)",
                (table.as_string(conn), last),
            )


def _into_sqlite(
    recorder: SQLiteApplicationRecorder,
    batches: Iterable[list[EventLine]],
    on_batch: Progress | None,
) -> None:
    table = recorder.events_table_name
    # rowid is the notification id; new rows take max(rowid) + 1, so the log continues.
    insert = (
        f"INSERT INTO {table} (rowid, originator_id, originator_version, topic, state) "  # noqa: S608
        "VALUES (?, ?, ?, ?, ?)"
    )
    count = 0
    with recorder.datastore.get_connection(commit=True) as conn:
        curs = conn.cursor()
        curs.execute("BEGIN IMMEDIATE")  # the write lock now, before the emptiness check
        try:
            _refuse_unless_empty(curs, f"SELECT 1 FROM {table} LIMIT 1", table)  # noqa: S608
            for lines in batches:
                curs.executemany(
                    insert,
                    [
                        (
                            line.position,
                            line.originator_id.hex,  # as the library's recorder writes it
                            line.originator_version,
                            line.topic,
                            line.stored_state(),
                        )
                        for line in lines
                    ],
                )
                count += len(lines)
                if on_batch is not None:
                    on_batch(count, lines[-1].position)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

"""The event store: eventsourcing's own SQLite and PostgreSQL recorders, configured."""

from __future__ import annotations

import fcntl
import random
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    AggregateRecorder,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    Recorder,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier

from application.ports import StoredIdentities
from infrastructure.settings import Settings

_ADVISORY_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext('ledger-ingest'), hashtext(%s))"
_ADVISORY_UNLOCK = "SELECT pg_advisory_unlock(hashtext('ledger-ingest'), hashtext(%s))"


class BinaryArrayPostgresRecorder(PostgresApplicationRecorder):
    """The library's recorder, inserting a batch as four binary arrays.

    The library binds one array of a composite type, which psycopg can only send
    as text (every ``state`` escaped as hex): a fifth of ingest time went there.
    Four plain arrays travel in binary. The table lock, the NOTIFY, the RETURNING
    of notification ids and the transaction are the library's, unchanged.
    """

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        insert_all = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        self.insert_events_statement = insert_all + SQL("RETURNING notification_id")
        self.insert_all_statement = insert_all + SQL("RETURNING originator_id")
        self.insert_new_statement = insert_all + SQL(
            "ON CONFLICT (originator_id, originator_version) DO NOTHING RETURNING originator_id"
        )

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(self.insert_events_statement, _columns(stored_events))

    def insert_new(self, stored_events: Sequence[StoredEvent]) -> set[UUID]:
        """Insert the events whose (originator, version) is not stored yet; their ids.

        One pipelined transaction (the library's table lock and NOTIFY, then the
        insert), so one round trip: the primary key skips what is there already,
        whichever writer stored it, with no probe before and no lock held between.
        The batch goes in first as a plain insert, all or nothing: a fresh batch,
        the usual one, so costs the server a quarter less than ``ON CONFLICT``'s
        speculative insertion of each row. Only a batch that meets a stored event
        is rolled back and inserted again skipping those (the table lock makes that
        the only way the first can fail on the key).
        Not retried here: with the store away the request is answered 503 at once
        (the client repeats it; nothing doubles), and a commit whose answer was lost
        must not come back as "duplicates" of itself.
        """
        columns = _columns(stored_events)
        try:
            return self._insert_pipelined(self.insert_all_statement, columns)
        except IntegrityError as error:  # the library's, from psycopg's
            if not isinstance(error.__cause__, psycopg.errors.UniqueViolation):
                raise
            return self._insert_pipelined(self.insert_new_statement, columns)

    def _insert_pipelined(self, statement: Composed, columns: tuple[list[Any], ...]) -> set[UUID]:
        problem: Exception | None = None
        inserted: set[UUID] = set()
        with self.datastore.get_connection() as conn:
            with conn.pipeline() as pipeline, conn.transaction():
                with conn.cursor() as curs:
                    self._lock_table(curs)
                    self._notify_channel(curs)
                with conn.cursor(row_factory=tuple_row) as curs:
                    try:
                        curs.execute(statement, columns)
                        pipeline.sync()
                        inserted = {row[0] for row in curs.fetchall()}
                    except Exception as error:  # noqa: BLE001 - raised below, as the library does
                        problem = error  # outside the pipeline: psycopg warns otherwise
            if problem is not None:
                raise problem
        return inserted

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The library's query, read as plain tuples: a third of the cost of dict rows."""
        where: list[SQL] = []
        params: list[Any] = []
        if start is not None:
            where.append(
                SQL("notification_id >= %s" if inclusive_of_start else "notification_id > %s")
            )
            params.append(start)
        if stop is not None:
            where.append(SQL("notification_id <= %s"))
            params.append(stop)
        if topics:
            where.append(SQL("topic = ANY(%s)"))
            params.append(list(topics))
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {schema}.{table}"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        if where:
            statement += SQL(" WHERE ") + SQL(" AND ").join(where)
        statement += SQL(" ORDER BY notification_id LIMIT %s")
        params.append(limit)
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row, binary=True) as curs,
        ):
            curs.execute(statement, params, prepare=True)
            return [
                _notification(
                    {
                        "originator_id": originator_id,
                        "originator_version": originator_version,
                        "topic": topic,
                        "state": bytes(state),
                        "id": notification_id,
                    }
                )
                for notification_id, originator_id, originator_version, topic, state in curs
            ]


def _columns(stored_events: Sequence[StoredEvent]) -> tuple[list[Any], ...]:
    """The four columns of ``stored_events``, each one array parameter."""
    return (
        [e.originator_id for e in stored_events],
        [e.originator_version for e in stored_events],
        [e.topic for e in stored_events],
        [e.state for e in stored_events],
    )


def _notification(fields: dict[str, Any]) -> Notification:
    """A library ``Notification`` without the frozen dataclass's per-field ``__init__``."""
    notification: Notification = object.__new__(Notification)
    object.__setattr__(notification, "__dict__", fields)
    return notification


def eventsourcing_env(settings: Settings) -> dict[str, str]:
    """The environment eventsourcing's infrastructure factory reads."""
    common = {"MAPPER_TOPIC": "infrastructure.mapper:ExactMapper"}
    if settings.is_postgres:
        params = conninfo_to_dict(settings.database_url)
        return common | {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "APPLICATION_RECORDER_TOPIC": "infrastructure.store:BinaryArrayPostgresRecorder",
            "POSTGRES_DBNAME": str(params.get("dbname", "")),
            "POSTGRES_HOST": str(params.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(params.get("port", "5432")),
            "POSTGRES_USER": str(params.get("user", "postgres")),
            "POSTGRES_PASSWORD": str(params.get("password", "")),
            "POSTGRES_POOL_SIZE": "8",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_CONNECT_TIMEOUT": "5",
            # No ping per borrow (11% of ingest time); the library retries broken
            # connections and the pool discards them, so the service still recovers.
            "POSTGRES_PRE_PING": "n",
            "POSTGRES_LOCK_TIMEOUT": "30",
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
            # Tables are created by build() under schema_lock(), not by each process.
            "CREATE_TABLE": "n",
        }
    path = settings.sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return common | {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": "30",
        "CREATE_TABLE": "n",
    }


@contextmanager
def schema_lock(settings: Settings) -> Iterator[None]:
    """Serialise table creation across processes that start at the same moment."""
    if settings.is_postgres:
        with psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext('ledger-schema'))")
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext('ledger-schema'))")
        return
    with Path(f"{settings.sqlite_path}.schema-lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def projection_sqlite_path(settings: Settings, projection: str) -> Path:
    """On SQLite each projection has its own file (the library's tracking table is fixed)."""
    path = settings.sqlite_path
    return path.with_name(f"{path.stem}.{projection}{path.suffix or '.sqlite'}")


class SQLiteIdentities:
    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self._recorder = recorder
        self._lock_path = Path(f"{recorder.datastore.pool.db_name}.ingest-lock")

    @contextmanager
    def serialised(self, business_id: str) -> Iterator[None]:  # noqa: ARG002
        # SQLite serves one machine: a file lock spans its processes.
        with self._lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def insert_new(self, events: Sequence[StoredEvent]) -> None:  # noqa: ARG002
        return None  # probed under the file lock, then saved

    def existing(self, ids: Collection[UUID]) -> set[UUID]:
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        statement = (
            f"SELECT DISTINCT originator_id FROM {self._recorder.events_table_name} "  # noqa: S608
            f"WHERE originator_id IN ({marks})"
        )
        with self._recorder.datastore.transaction(commit=False) as curs:
            curs.execute(statement, [i.hex for i in ids])
            return {UUID(row[0]) for row in curs.fetchall()}


class PostgresIdentities:
    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self._recorder = recorder
        # The library's own recorder (a deployment that chose it) has no such insert.
        self._insert = (
            recorder.insert_new if isinstance(recorder, BinaryArrayPostgresRecorder) else None
        )
        self._local_locks: dict[str, threading.Lock] = {}
        self._statement = (
            f"SELECT DISTINCT originator_id FROM {recorder.events_table_name} "  # noqa: S608
            "WHERE originator_id = ANY(%s)"
        )

    @contextmanager
    def serialised(self, business_id: str) -> Iterator[None]:
        # Threads of this process queue here first, so only one of them polls the
        # database lock; that lock is what spans processes.
        with (
            self._local_locks.setdefault(business_id, threading.Lock()),
            self._advisory(business_id),
        ):
            yield

    @contextmanager
    def _advisory(self, business_id: str) -> Iterator[None]:
        # A session advisory lock, released by the server if this process dies. Waiters
        # hold no pooled connection while they wait, so the holder can always get one.
        delay = 0.001
        while True:
            with self._recorder.datastore.get_connection() as conn:
                row = conn.execute(_ADVISORY_TRY_LOCK, (business_id,)).fetchone()
                if row is not None and next(iter(row.values())):
                    try:
                        yield
                    finally:
                        conn.execute(_ADVISORY_UNLOCK, (business_id,))
                    return
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter only
            delay = min(delay * 2, 0.02)

    def insert_new(self, events: Sequence[StoredEvent]) -> set[UUID] | None:
        return None if self._insert is None else self._insert(events)

    def existing(self, ids: Collection[UUID]) -> set[UUID]:
        if not ids:
            return set()
        with self._recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._statement, (list(ids),))
            return {row["originator_id"] for row in curs.fetchall()}


class PerIdIdentities:
    """Any recorder, one look-up per id: for the library's in-memory store."""

    def __init__(self, recorder: Recorder) -> None:
        assert isinstance(recorder, AggregateRecorder)
        self._recorder = recorder
        self._lock = threading.Lock()  # the in-memory store lives in one process

    @contextmanager
    def serialised(self, business_id: str) -> Iterator[None]:  # noqa: ARG002
        with self._lock:
            yield

    def insert_new(self, events: Sequence[StoredEvent]) -> None:  # noqa: ARG002
        return None  # probed under the lock, then saved

    def existing(self, ids: Collection[UUID]) -> set[UUID]:
        return {i for i in ids if self._recorder.select_events(i, limit=1)}


def stored_identities(recorder: Recorder) -> StoredIdentities:
    """One query per batch on the SQL stores."""
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresIdentities(recorder)
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteIdentities(recorder)
    return PerIdIdentities(recorder)


_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "unable to open", "disk i/o")


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) means the store cannot be reached right now.

    A connection refused, cut or timed out, a server shutting down or starting
    up, a pool with no connection to give, SQLite busy past its timeout: the
    request may be repeated as it was. Anything else (a constraint, a bad
    statement) is not the environment's doing and stays an error.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        if isinstance(current, sqlite3.OperationalError):
            return any(text in str(current).lower() for text in _SQLITE_TRANSIENT)
        current = current.__cause__ or current.__context__
    return False

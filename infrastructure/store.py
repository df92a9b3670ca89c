"""The event store: eventsourcing's own SQLite and PostgreSQL recorders, configured."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import Recorder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.conninfo import conninfo_to_dict

from application.ports import StoredIdentities
from infrastructure.settings import Settings


def eventsourcing_env(settings: Settings) -> dict[str, str]:
    """The environment eventsourcing's infrastructure factory reads."""
    if settings.is_postgres:
        params = conninfo_to_dict(settings.database_url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(params.get("dbname", "")),
            "POSTGRES_HOST": str(params.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(params.get("port", "5432")),
            "POSTGRES_USER": str(params.get("user", "postgres")),
            "POSTGRES_PASSWORD": str(params.get("password", "")),
            "POSTGRES_POOL_SIZE": "8",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_PRE_PING": "y",
            "POSTGRES_LOCK_TIMEOUT": "30",
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
            "CREATE_TABLE": "y",
        }
    path = settings.sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": "30",
        "CREATE_TABLE": "y",
    }


def projection_sqlite_path(settings: Settings, projection: str) -> Path:
    """On SQLite each projection has its own file (the library's tracking table is fixed)."""
    path = settings.sqlite_path
    return path.with_name(f"{path.stem}.{projection}{path.suffix or '.sqlite'}")


class SQLiteIdentities:
    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self._recorder = recorder

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
        self._statement = (
            f"SELECT DISTINCT originator_id FROM {recorder.events_table_name} "  # noqa: S608
            "WHERE originator_id = ANY(%s)"
        )

    def existing(self, ids: Collection[UUID]) -> set[UUID]:
        if not ids:
            return set()
        with self._recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._statement, (list(ids),))
            return {row["originator_id"] for row in curs.fetchall()}


def stored_identities(recorder: Recorder) -> StoredIdentities:
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresIdentities(recorder)
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteIdentities(recorder)
    raise TypeError(f"no identity probe for {type(recorder).__name__}")

"""The seal read model on SQLite and PostgreSQL (``application.seal``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.ports import PositionMovedError
from application.views import SealView
from domain.seal import GENESIS, chain
from infrastructure.sql import Table, TrackedSQL, tuples

TABLES = (
    "CREATE TABLE IF NOT EXISTS seal ("
    "position BIGINT NOT NULL PRIMARY KEY, originator_id TEXT NOT NULL, "
    "version BIGINT NOT NULL, digest TEXT NOT NULL, chain TEXT NOT NULL)",
)
NAMES = ("seal",)
DROP = ("DROP TABLE IF EXISTS seal",)
SEAL: Table = (
    "seal",
    (
        ("position", "bigint"),
        ("originator_id", "text"),
        ("version", "bigint"),
        ("digest", "text"),
        ("chain", "text"),
    ),
)
LAST_CHAIN = "SELECT chain FROM seal WHERE position <= ? ORDER BY position DESC LIMIT 1"


class SealSQL(TrackedSQL):
    drop_statements: tuple[str, ...] = DROP

    def record(self, seals: Sequence[SealView], tracking: Tracking, after: int) -> None:
        """Seal rows chained from the last sealed before them, only where the batch was
        read: two processes, or one and a rebuild, never chain from nowhere."""
        with self._batch(tracking, after) as curs:
            if seals:
                self._append_rows(curs, SEAL, self._chained(curs, seals, after))

    def _chained(
        self, curs: Any, seals: Sequence[SealView], after: int
    ) -> list[tuple[object, ...]]:
        curs.execute(self._q(LAST_CHAIN), (seals[0].position - 1,))
        found = tuples(curs)
        if not found and after:
            raise PositionMovedError(f"no seal before position {seals[0].position}")
        previous = found[0][0] if found else GENESIS
        rows: list[tuple[object, ...]] = []
        for seal in seals:
            previous = chain(previous, seal.digest)
            rows.append((seal.position, seal.originator_id, seal.version, seal.digest, previous))
        return rows

    def chain_at(self, position: int) -> str:
        rows = self._fetch(LAST_CHAIN, [position])
        return str(rows[0][0]) if rows else GENESIS

    def seals(self, after: int, limit: int) -> list[tuple[SealView, str]]:
        rows = self._fetch(
            "SELECT position, originator_id, version, digest, chain "
            "FROM seal WHERE position > ? ORDER BY position LIMIT ?",
            [after, limit],
        )
        return [(SealView(*row[:4]), str(row[4])) for row in rows]


class SQLiteSeal(SealSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *TABLES]


class PostgresSeal(SealSQL, PostgresTrackingRecorder):
    mark = "%s"

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="seal_tracking")
        self.sql_create_statements.extend(SQL(t).format() for t in TABLES)

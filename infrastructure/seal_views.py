"""The seal read model on SQLite and PostgreSQL (``application.seal``).

A row is a segment: the events one batch sealed, each column of theirs packed
into one binary value (positions and versions as little-endian 64-bit integers,
originator ids as 16 bytes each, digests as their 32 bytes), beside the chain
value before the first event and at the last. One row a batch, not a row an
event: a tenth of the writes, and the chain at an event between is folded from
the segment's start when asked (``chain_at``). A table of the older layout (a
row an event) is dropped and sealed again from the log; the chain values, and
so every invoice's ``log_digest``, are the same.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.ports import PositionMovedError
from application.views import SealDigests, SealSegment, SealView
from domain.seal import GENESIS, chain
from infrastructure.sql import TrackedSQL, reset_tables, tuples
from infrastructure.view_schema import lacking_columns, report_outdated

PACKED = ("positions", "originator_ids", "versions", "digests")
COLUMNS = ("first_position", "last_position", "chain_before", "chain", *PACKED)


def tables(blob: str) -> tuple[str, ...]:
    return (
        "CREATE TABLE IF NOT EXISTS seal ("
        "first_position BIGINT NOT NULL PRIMARY KEY, last_position BIGINT NOT NULL, "
        "chain_before TEXT NOT NULL, chain TEXT NOT NULL, "
        + ", ".join(f"{column} {blob} NOT NULL" for column in PACKED)
        + ")",
    )


# Stored as they are: digests do not compress, and the rest is not worth the time.
UNCOMPRESSED = tuple(f"ALTER TABLE seal ALTER COLUMN {c} SET STORAGE EXTERNAL" for c in PACKED)
NAMES = ("seal",)
DROP = ("DROP TABLE IF EXISTS seal",)
INSERT = (
    "INSERT INTO seal (first_position, last_position, chain_before, chain, positions, "
    "originator_ids, versions, digests) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
LAST_CHAIN = "SELECT chain FROM seal WHERE first_position <= ? ORDER BY first_position DESC LIMIT 1"
SEGMENT_AT = (
    "SELECT last_position, chain_before, chain, positions, digests FROM seal "
    "WHERE first_position <= ? ORDER BY first_position DESC LIMIT 1"
)
SEGMENTS = (
    "SELECT chain_before, chain, positions, originator_ids, versions, digests FROM seal "
    "WHERE first_position > ? ORDER BY first_position LIMIT ?"
)
DIGEST_BYTES = 32
ID_BYTES = 16
_SWAP = sys.byteorder != "little"


class SealSQL(TrackedSQL):
    drop_statements: tuple[str, ...] = DROP

    def create_table(self) -> None:
        lacking = lacking_columns(self, {"seal": COLUMNS})
        if lacking:  # a row an event, as an older version sealed: sealed again
            report_outdated("seal", lacking)
            reset_tables(self)  # which creates the table anew
            return
        super().create_table()

    def record(self, digests: SealDigests, tracking: Tracking, after: int) -> None:
        """One segment chained from the last sealed before it, only where the batch was
        read: two processes, or one and a rebuild, never chain from nowhere."""
        with self._batch(tracking, after) as curs:
            if digests.positions:
                curs.execute(self._q(INSERT), self._segment(curs, digests, after))

    def _segment(self, curs: Any, digests: SealDigests, after: int) -> tuple[object, ...]:
        first = digests.positions[0]
        curs.execute(self._q(LAST_CHAIN), (first - 1,))
        found = tuples(curs)
        if not found and after:
            raise PositionMovedError(f"no seal before position {first}")
        before = previous = str(found[0][0]) if found else GENESIS
        for digest in digests.digests:
            previous = chain(previous, digest)
        return (
            first,
            digests.positions[-1],
            before,
            previous,
            _packed(digests.positions),
            bytes.fromhex("".join(digests.originator_ids).replace("-", "")),
            _packed(digests.versions),
            bytes.fromhex("".join(digests.digests)),
        )

    def chain_at(self, position: int) -> str:
        rows = self._fetch(SEGMENT_AT, [position])
        if not rows:
            return GENESIS
        last, previous, at_last, positions, digests = rows[0]
        if position >= last:
            return str(at_last)
        raw = bytes(digests)
        for index, sealed in enumerate(_unpacked(positions)):
            if sealed > position:
                break
            previous = chain(previous, raw[index * DIGEST_BYTES : (index + 1) * DIGEST_BYTES].hex())
        return str(previous)

    def segments(self, after: int, limit: int) -> list[SealSegment]:
        return [_segment_of(row) for row in self._fetch(SEGMENTS, [after, limit])]


def _segment_of(row: Sequence[Any]) -> SealSegment:
    before, at_last, positions, originator_ids, versions, digests = row
    ids, raw = bytes(originator_ids), bytes(digests)
    seals = tuple(
        SealView(
            position,
            str(UUID(bytes=ids[index * ID_BYTES : (index + 1) * ID_BYTES])),
            version,
            raw[index * DIGEST_BYTES : (index + 1) * DIGEST_BYTES].hex(),
        )
        for index, (position, version) in enumerate(
            zip(_unpacked(positions), _unpacked(versions), strict=True)
        )
    )
    return SealSegment(str(before), seals, str(at_last))


def compared(table: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:  # noqa: ARG001
    """The audit's rows of the seal: each event's digest and chain value, whichever
    batches sealed it (a rebuild seals in other segments than the live projection)."""
    found: list[tuple[Any, ...]] = []
    for row in rows:
        segment = _segment_of(row[2:])
        previous = segment.chain_before
        for seal in segment.seals:
            previous = chain(previous, seal.digest)
            found.append((seal.position, seal.originator_id, seal.version, seal.digest, previous))
    return sorted(found)


def _packed(values: list[int]) -> bytes:
    packed = array("q", values)
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def _unpacked(raw: bytes) -> list[int]:
    values = array("q")
    values.frombytes(bytes(raw))
    if _SWAP:
        values.byteswap()
    return values.tolist()


class SQLiteSeal(SealSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *tables("BLOB")]


class PostgresSeal(SealSQL, PostgresTrackingRecorder):
    mark = "%s"

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="seal_tracking")
        self.sql_create_statements.extend(
            SQL(t).format() for t in (*tables("BYTEA"), *UNCOMPRESSED)
        )

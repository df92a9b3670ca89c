"""The usage read model on SQLite and PostgreSQL: hourly tallies per meter and customer.

Decimals are stored as canonical text and merged in Python, never by SQL
arithmetic (SQLite would turn them into floats). Rows and the log position are
written in one transaction through eventsourcing's tracking recorders.

After a void, the projection recounts the hours it touched from the event
index (``counted_in_hours``): on PostgreSQL its tables are in the same
database; on SQLite it is the projection file beside this one.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.event_index import EventIndexProjection
from application.ports import PositionMovedError, UsageEventView
from application.usage import (
    BucketKey,
    HourKey,
    IndexBehindError,
    MeterDefinition,
    UsageChanges,
    UsageProjection,
)
from domain.meter import Last, Tally
from infrastructure.codec import from_micros, to_micros
from infrastructure.views import (
    EventIndexSQL,
    PostgresEventIndex,
    SQLiteEventIndex,
    reset_tables,
)

INDEX_WAIT_SECONDS = 10.0  # how long a recount waits for the event index to reach its batch

TABLES = (
    "CREATE TABLE IF NOT EXISTS usage_meters ("
    "aggregate_id TEXT PRIMARY KEY, business_id TEXT NOT NULL, meter_id TEXT NOT NULL, "
    "definition TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS usage_buckets ("
    "business_id TEXT NOT NULL, meter_id TEXT NOT NULL, customer_id TEXT NOT NULL, "
    "hour BIGINT NOT NULL, count BIGINT NOT NULL, total TEXT NOT NULL, "
    "maximum TEXT, minimum TEXT, last_ts BIGINT, last_event_id TEXT, last_value TEXT, "
    "distinct_values TEXT, PRIMARY KEY (business_id, meter_id, customer_id, hour))",
    "CREATE INDEX IF NOT EXISTS usage_buckets_by_hour "
    "ON usage_buckets (business_id, meter_id, hour)",
)
DROP = ("DROP TABLE IF EXISTS usage_buckets", "DROP TABLE IF EXISTS usage_meters")
_COLUMNS = (
    "business_id, meter_id, customer_id, hour, count, total, maximum, minimum, "
    "last_ts, last_event_id, last_value, distinct_values"
)
UPSERT_BUCKET = (
    f"INSERT INTO usage_buckets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
    "ON CONFLICT (business_id, meter_id, customer_id, hour) DO UPDATE SET "
    "count = excluded.count, total = excluded.total, maximum = excluded.maximum, "
    "minimum = excluded.minimum, last_ts = excluded.last_ts, "
    "last_event_id = excluded.last_event_id, last_value = excluded.last_value, "
    "distinct_values = excluded.distinct_values"
)
DELETE_BUCKET = (
    "DELETE FROM usage_buckets "
    "WHERE business_id = ? AND meter_id = ? AND customer_id = ? AND hour = ?"
)
UPSERT_METER = (
    "INSERT INTO usage_meters (aggregate_id, business_id, meter_id, definition) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (aggregate_id) DO UPDATE SET "
    "definition = excluded.definition"
)
_encoder = msgspec.json.Encoder(decimal_format="number")
_decoder = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
_values = msgspec.json.Decoder(list[str])


def bucket_row(key: BucketKey, tally: Tally) -> tuple[Any, ...]:
    business_id, meter_id, customer_id, hour = key
    last = tally.last
    return (
        business_id,
        meter_id,
        customer_id,
        to_micros(hour),
        tally.count,
        str(tally.total),
        None if tally.maximum is None else str(tally.maximum),
        None if tally.minimum is None else str(tally.minimum),
        None if last is None else to_micros(last.timestamp),
        None if last is None else last.event_id,
        None if last is None else str(last.value),
        _encoder.encode(sorted(tally.distinct)).decode() if tally.distinct else None,
    )


def tally_of(row: Sequence[Any]) -> Tally:
    """The tally of a row's columns from ``count`` on."""
    count, total, maximum, minimum, last_ts, last_event_id, last_value, distinct = row
    return Tally(
        count=int(count),
        total=Decimal(total),
        maximum=None if maximum is None else Decimal(maximum),
        minimum=None if minimum is None else Decimal(minimum),
        last=None
        if last_ts is None
        else Last(from_micros(int(last_ts)), last_event_id, Decimal(last_value)),
        distinct=frozenset(_values.decode(distinct)) if distinct else frozenset(),
    )


class UsageSQL:
    """Shared statements; ``mark`` is the store's placeholder."""

    mark = "?"
    datastore: Any
    drop_statements: tuple[str, ...] = DROP
    _index: EventIndexSQL | None = None

    if TYPE_CHECKING:  # provided by the library's tracking recorder

        def _insert_tracking(self, curs: Any, tracking: Tracking) -> None: ...

    def _q(self, statement: str) -> Any:
        return statement if self.mark == "?" else statement.replace("?", self.mark)

    def reset(self) -> None:
        """Drop the rows and the tracking position, and create empty tables again."""
        reset_tables(self)

    @property
    def _position_statement(self) -> str:
        table = getattr(self, "tracking_table_name", "tracking")
        return f"SELECT MAX(notification_id) FROM {table} WHERE application_name = ?"  # noqa: S608

    def _serialise(self, curs: Any) -> None:
        """Hold writers of this view apart until the transaction ends.

        SQLite needs nothing: the read above opens the transaction's snapshot, and
        a write after another process committed fails (WAL: busy snapshot).
        """

    def _rows(self, curs: Any) -> list[tuple[Any, ...]]:
        return [
            tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in curs.fetchall()
        ]

    def definitions(self) -> list[MeterDefinition]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT aggregate_id, business_id, meter_id, definition FROM usage_meters "
                "ORDER BY aggregate_id"
            )
            return [
                MeterDefinition(UUID(str(a)), b, m, _decoder.decode(d))
                for a, b, m, d in self._rows(curs)
            ]

    def apply(self, changes: UsageChanges, tracking: Tracking, after: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            # First, under the lock, check nobody moved the view since the batch was
            # read: the buckets are read, merged and written back below.
            self._serialise(curs)
            curs.execute(self._q(self._position_statement), (tracking.application_name,))
            row = self._rows(curs)
            position = (row[0][0] if row else None) or 0
            if position != after:
                raise PositionMovedError(
                    f"usage projection is at {position}, this batch follows {after}"
                )
            if changes.added:
                merged = self._merge_existing(curs, changes.added)
                curs.executemany(
                    self._q(UPSERT_BUCKET), [bucket_row(k, t) for k, t in merged.items()]
                )
            if changes.definitions:
                curs.executemany(
                    self._q(UPSERT_METER),
                    [
                        (
                            str(d.aggregate_id),
                            d.business_id,
                            d.meter_id,
                            _encoder.encode(d.definition).decode(),
                        )
                        for d in changes.definitions
                    ],
                )
            for (business_id, meter_id), buckets in changes.replaced.items():
                curs.execute(
                    self._q("DELETE FROM usage_buckets WHERE business_id = ? AND meter_id = ?"),
                    (business_id, meter_id),
                )
                rows = (
                    bucket_row((business_id, meter_id, customer, hour), tally)
                    for (customer, hour), tally in buckets.items()
                )
                self._insert_new(curs, rows)
            if changes.recounted:
                self._write_recounted(curs, changes.recounted)
            self._insert_tracking(curs, tracking)

    def _write_recounted(self, curs: Any, recounted: dict[BucketKey, Tally]) -> None:
        kept = [bucket_row(k, t) for k, t in recounted.items() if t.count]
        gone = [(b, m, c, to_micros(h)) for (b, m, c, h), t in recounted.items() if not t.count]
        if kept:
            curs.executemany(self._q(UPSERT_BUCKET), kept)
        if gone:
            curs.executemany(self._q(DELETE_BUCKET), gone)

    def _event_index(self) -> EventIndexSQL:
        raise NotImplementedError

    def counted_in_hours(
        self, hours: Collection[HourKey], up_to: int, application_name: str
    ) -> dict[HourKey, list[UsageEventView]]:
        index = self._event_index()
        deadline = time.monotonic() + INDEX_WAIT_SECONDS
        while (found := index.counted_in_hours(hours, up_to, application_name)) is None:
            if time.monotonic() > deadline:
                raise IndexBehindError(
                    f"the event index has not reached position {up_to} in "
                    f"{INDEX_WAIT_SECONDS:g} s; the usage projection waits for it to recount "
                    "the hours a void touched (is the event index projection running?)"
                )
            time.sleep(0.02)
        return found

    def _insert_new(self, curs: Any, rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert buckets known not to exist (their meter's rows were just deleted)."""
        curs.executemany(self._q(UPSERT_BUCKET), list(rows))

    def _merge_existing(self, curs: Any, added: dict[BucketKey, Tally]) -> dict[BucketKey, Tally]:
        """``added`` merged with what the buckets already hold (read in the same transaction)."""
        spans: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        for business_id, meter_id, _, hour in added:
            low, high = spans.get((business_id, meter_id), (hour, hour))
            spans[business_id, meter_id] = (min(low, hour), max(high, hour))
        merged = dict(added)
        for (business_id, meter_id), (low, high) in spans.items():
            curs.execute(
                self._q(
                    "SELECT customer_id, hour, count, total, maximum, minimum, last_ts, "
                    "last_event_id, last_value, distinct_values FROM usage_buckets "
                    "WHERE business_id = ? AND meter_id = ? AND hour >= ? AND hour <= ?"
                ),
                (business_id, meter_id, to_micros(low), to_micros(high)),
            )
            for row in self._rows(curs):
                key = (business_id, meter_id, row[0], from_micros(int(row[1])))
                if key in merged:
                    merged[key] = tally_of(row[2:]).merge(merged[key])
        return merged

    def buckets(
        self,
        business_id: str,
        meter_id: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
    ) -> list[tuple[str, datetime, Tally]]:
        statement = (
            "SELECT customer_id, hour, count, total, maximum, minimum, last_ts, "
            "last_event_id, last_value, distinct_values FROM usage_buckets "
            "WHERE business_id = ? AND meter_id = ? AND hour >= ? AND hour < ?"
        )
        params: list[Any] = [business_id, meter_id, to_micros(start), to_micros(end)]
        if customer_id is not None:
            statement += " AND customer_id = ?"
            params.append(customer_id)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._q(statement + " ORDER BY hour, customer_id"), params)
            return [
                (row[0], from_micros(int(row[1])), tally_of(row[2:])) for row in self._rows(curs)
            ]

    def all_buckets(self) -> Iterator[tuple[BucketKey, Tally]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT business_id, meter_id, customer_id, hour, count, total, maximum, "
                "minimum, last_ts, last_event_id, last_value, distinct_values "
                "FROM usage_buckets ORDER BY business_id, meter_id, customer_id, hour"
            )
            rows = self._rows(curs)
        for row in rows:
            yield (row[0], row[1], row[2], from_micros(int(row[3]))), tally_of(row[4:])


class SQLiteUsageStore(UsageSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore, index: SQLiteEventIndex | None = None) -> None:
        super().__init__(datastore)
        self._index = index

    def _event_index(self) -> EventIndexSQL:
        if self._index is None:
            self._index = SQLiteEventIndex(
                SQLiteDatastore(index_path_beside(self.datastore.pool.db_name), lock_timeout=30)
            )
        return self._index

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *TABLES]


class PostgresUsageStore(UsageSQL, PostgresTrackingRecorder):
    mark = "%s"

    def _serialise(self, curs: Any) -> None:
        curs.execute(
            "SELECT pg_advisory_xact_lock(hashtext('ledger-projection'), hashtext('usage'))"
        )

    def _insert_new(self, curs: Any, rows: Iterable[tuple[Any, ...]]) -> None:
        # COPY: a rebuild writes tens of thousands of buckets at once.
        with curs.copy(f"COPY usage_buckets ({_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def __init__(
        self, datastore: PostgresDatastore, index: PostgresEventIndex | None = None
    ) -> None:
        super().__init__(datastore, tracking_table_name="usage_tracking")
        self.sql_create_statements.extend(SQL(t).format() for t in TABLES)
        self._index = index

    def _event_index(self) -> EventIndexSQL:
        if self._index is None:
            self._index = PostgresEventIndex(self.datastore)  # same database
        return self._index


def index_path_beside(usage_path: str) -> str:
    """The event index's SQLite file next to the usage projection's.

    Each projection's file is the store's name with the projection's inserted
    before the suffix (``infrastructure.store.projection_sqlite_path``).
    """
    path = Path(usage_path)
    stem = path.stem.removesuffix(f".{UsageProjection.name}")
    return str(path.with_name(f"{stem}.{EventIndexProjection.name}{path.suffix}"))

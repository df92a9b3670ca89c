"""The usage read model on SQLite and PostgreSQL: hourly buckets per meter and customer.

Decimals are stored as canonical text and merged in Python, never by SQL
arithmetic (SQLite would turn them into floats). Rows and the log position are
written in one transaction through eventsourcing's tracking recorders; a fold
reads its buckets and that position in one snapshot.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.tally import Bucket, BucketKey, MeterDefinition
from application.usage import HourBucket, TallySnapshot, UsageChanges
from domain.meter import Last, Tally
from infrastructure.codec import from_micros, to_micros
from infrastructure.sql import Table, TrackedSQL, tuples

TABLES = (
    "CREATE TABLE IF NOT EXISTS usage_meters ("
    "aggregate_id TEXT PRIMARY KEY, business_id TEXT NOT NULL, meter_id TEXT NOT NULL, "
    "definition TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS usage_buckets ("
    "business_id TEXT NOT NULL, meter_id TEXT NOT NULL, customer_id TEXT NOT NULL, "
    "hour BIGINT NOT NULL, count BIGINT NOT NULL, total TEXT NOT NULL, "
    "maximum TEXT, minimum TEXT, last_ts BIGINT, last_event_id TEXT, last_value TEXT, "
    "distinct_values TEXT, changed_at BIGINT NOT NULL, "
    "PRIMARY KEY (business_id, meter_id, customer_id, hour))",
    "CREATE INDEX IF NOT EXISTS usage_buckets_by_hour "
    "ON usage_buckets (business_id, meter_id, hour)",
    "CREATE INDEX IF NOT EXISTS usage_buckets_by_change "
    "ON usage_buckets (business_id, customer_id, changed_at)",
    "CREATE INDEX IF NOT EXISTS usage_meters_by_meter ON usage_meters (business_id, meter_id)",
)
NAMES = ("usage_meters", "usage_buckets")
DROP = ("DROP TABLE IF EXISTS usage_buckets", "DROP TABLE IF EXISTS usage_meters")
TALLY = (
    "count, total, maximum, minimum, last_ts, last_event_id, last_value, distinct_values, "
    "changed_at"
)
TALLY_OF_U = ", ".join(f"u.{column.strip()}" for column in TALLY.split(","))
KEYS_PER_READ = 500  # bucket keys looked up per statement
BUCKETS: Table = (
    "usage_buckets",
    (
        ("business_id", "text"),
        ("meter_id", "text"),
        ("customer_id", "text"),
        ("hour", "bigint"),
        ("count", "bigint"),
        ("total", "text"),
        ("maximum", "text"),
        ("minimum", "text"),
        ("last_ts", "bigint"),
        ("last_event_id", "text"),
        ("last_value", "text"),
        ("distinct_values", "text"),
        ("changed_at", "bigint"),
    ),
)
# A bucket written again replaces its tally (merged in Python before).
REPLACE_BUCKET = (
    "ON CONFLICT (business_id, meter_id, customer_id, hour) DO UPDATE SET "
    "count = excluded.count, total = excluded.total, maximum = excluded.maximum, "
    "minimum = excluded.minimum, last_ts = excluded.last_ts, "
    "last_event_id = excluded.last_event_id, last_value = excluded.last_value, "
    "distinct_values = excluded.distinct_values, "
    "changed_at = {greatest}(usage_buckets.changed_at, excluded.changed_at)"
)
UPSERT_METER = (
    "INSERT INTO usage_meters (aggregate_id, business_id, meter_id, definition) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (aggregate_id) DO UPDATE SET "
    "definition = excluded.definition"
)
_encoder = msgspec.json.Encoder(decimal_format="number")
_decoder = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
_values = msgspec.json.Decoder(list[str])


def bucket_row(key: BucketKey, bucket: Bucket) -> tuple[Any, ...]:
    business_id, meter_id, customer_id, hour = key
    tally = bucket.tally
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
        bucket.changed_at,
    )


def bucket_of(row: Sequence[Any]) -> Bucket:
    """The bucket of a row's columns from ``count`` on."""
    count, total, maximum, minimum, last_ts, last_event_id, last_value, distinct, changed = row
    tally = Tally(
        count=int(count),
        total=Decimal(total),
        maximum=None if maximum is None else Decimal(maximum),
        minimum=None if minimum is None else Decimal(minimum),
        last=None
        if last_ts is None
        else Last(from_micros(int(last_ts)), last_event_id, Decimal(last_value)),
        distinct=frozenset(_values.decode(distinct)) if distinct else frozenset(),
    )
    return Bucket(tally, int(changed))


class UsageSQL(TrackedSQL):
    drop_statements: tuple[str, ...] = DROP
    greatest = "max"  # SQLite's scalar max; PostgreSQL calls it greatest

    def definitions(self) -> list[MeterDefinition]:
        rows = self._fetch(
            "SELECT aggregate_id, business_id, meter_id, definition FROM usage_meters "
            "ORDER BY aggregate_id",
            [],
        )
        return [MeterDefinition(UUID(str(a)), b, m, _decoder.decode(d)) for a, b, m, d in rows]

    def apply(self, changes: UsageChanges, tracking: Tracking, after: int) -> None:
        with self._batch(tracking, after) as curs:
            if changes.added:  # merged with what the buckets hold, read under the lock
                merged = self._merge_existing(curs, changes.added)
                self._write_buckets(curs, [bucket_row(k, b) for k, b in merged.items()])
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
                    bucket_row((business_id, meter_id, customer, hour), bucket)
                    for (customer, hour), bucket in buckets.items()
                )
                self._append_rows(curs, BUCKETS, rows)  # that meter's rows were just deleted
            if changes.recounted:
                self._write_buckets(curs, [bucket_row(k, b) for k, b in changes.recounted.items()])

    def _write_buckets(self, curs: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write these buckets (each key once), replacing the ones stored: on PostgreSQL
        in one statement, not one a bucket (a batch of events spread over many hours
        and customers touches about as many buckets as it holds events)."""
        self._insert_rows(
            curs, BUCKETS, rows, conflict=REPLACE_BUCKET.format(greatest=self.greatest)
        )

    def _merge_existing(self, curs: Any, added: dict[BucketKey, Bucket]) -> dict[BucketKey, Bucket]:
        """``added`` merged with what the buckets already hold (read in the same
        transaction), each looked up by its key: the cost follows the buckets a batch
        touches, not the hours between its earliest and latest event."""
        merged = dict(added)
        keys = [(b, m, c, to_micros(h)) for b, m, c, h in added]
        for first in range(0, len(keys), KEYS_PER_READ):
            part = keys[first : first + KEYS_PER_READ]
            for row in self._stored(curs, part):
                key = (row[0], row[1], row[2], from_micros(int(row[3])))
                merged[key] = bucket_of(row[4:]).merge(merged[key])
        return merged

    def _stored(self, curs: Any, keys: Sequence[tuple[str, str, str, int]]) -> list[Any]:
        """The stored rows of these bucket keys (SQLite: a VALUES list joined on the key)."""
        values = ", ".join("(?, ?, ?, ?)" for _ in keys)
        curs.execute(
            f"WITH k (b, m, c, h) AS (VALUES {values}) "  # noqa: S608
            f"SELECT u.business_id, u.meter_id, u.customer_id, u.hour, {TALLY_OF_U} "
            "FROM k JOIN usage_buckets u ON u.business_id = k.b AND u.meter_id = k.m "
            "AND u.customer_id = k.c AND u.hour = k.h",
            [v for key in keys for v in key],
        )
        return tuples(curs)

    def snapshot(
        self,
        business_id: str,
        meter_ids: Collection[str],
        customer_id: str | None,
        start: datetime,
        end: datetime,
        application_name: str = "ledger",
    ) -> TallySnapshot:
        wanted = list(meter_ids)
        marks = ", ".join("?" for _ in wanted)
        statement = (
            f"SELECT meter_id, customer_id, hour, {TALLY} FROM usage_buckets "  # noqa: S608
            f"WHERE business_id = ? AND meter_id IN ({marks}) AND hour >= ? AND hour < ?"
        )
        params: list[Any] = [business_id, *wanted, to_micros(start), to_micros(end)]
        if customer_id is not None:
            statement += " AND customer_id = ?"
            params.append(customer_id)
        with self.datastore.transaction(commit=False) as curs:
            self._snapshot(curs)
            position = self._position(curs, application_name)
            if not wanted:
                return TallySnapshot(position, {}, {})
            curs.execute(
                self._q(
                    "SELECT meter_id, definition FROM usage_meters "  # noqa: S608
                    f"WHERE business_id = ? AND meter_id IN ({marks})"
                ),
                [business_id, *wanted],
            )
            definitions = {m: _decoder.decode(d) for m, d in tuples(curs)}
            buckets: dict[str, list[HourBucket]] = {m: [] for m in wanted}
            if start < end:
                curs.execute(self._q(statement + " ORDER BY hour, customer_id"), params)
                for row in tuples(curs):
                    hour = from_micros(int(row[2]))
                    buckets[row[0]].append(HourBucket(row[1], hour, bucket_of(row[3:])))
        return TallySnapshot(position, definitions, buckets)

    def changed_since(
        self, business_id: str, customer_id: str, after: int, before: datetime
    ) -> list[tuple[str, datetime]]:
        rows = self._fetch(
            "SELECT meter_id, hour FROM usage_buckets WHERE business_id = ? AND customer_id = ? "
            "AND changed_at > ? AND hour < ?",
            [business_id, customer_id, after, to_micros(before)],
        )
        return [(str(m), from_micros(int(h))) for m, h in rows]

    def all_buckets(self) -> Iterator[tuple[BucketKey, Bucket]]:
        rows = self._fetch(
            f"SELECT business_id, meter_id, customer_id, hour, {TALLY} FROM usage_buckets "  # noqa: S608
            "ORDER BY business_id, meter_id, customer_id, hour",
            [],
        )
        for row in rows:
            yield (row[0], row[1], row[2], from_micros(int(row[3]))), bucket_of(row[4:])


class SQLiteUsageStore(UsageSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *TABLES]


class PostgresUsageStore(UsageSQL, PostgresTrackingRecorder):
    mark = "%s"
    greatest = "greatest"

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="usage_tracking")
        self.sql_create_statements.extend(SQL(t).format() for t in TABLES)

    def _stored(self, curs: Any, keys: Sequence[tuple[str, str, str, int]]) -> list[Any]:
        """The stored rows of these bucket keys, the keys sent as four binary arrays."""
        curs.execute(
            f"SELECT u.business_id, u.meter_id, u.customer_id, u.hour, {TALLY_OF_U} "  # noqa: S608
            "FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[]) AS k (b, m, c, h) "
            "JOIN usage_buckets u ON u.business_id = k.b AND u.meter_id = k.m "
            "AND u.customer_id = k.c AND u.hour = k.h",
            [list(column) for column in zip(*keys, strict=True)],
        )
        return tuples(curs)

"""Rebuild benchmark: the usage projection from the whole log, against a raw psycopg read.

Run: ``.venv/bin/python benchmarks/rebuild.py [--events N] [--step S]``

On a scratch PostgreSQL database it defines three meters, appends usage events
to the log in steps (``--step`` events each, through the application's event
store, for 20 customers over the same 30 days), and after each step rebuilds the usage
projection in a separate process (``ledger projections rebuild usage``), so
the child's peak RSS is the rebuild's own. In the same run it reads the same
rows raw with psycopg (a server-side cursor) as the baseline. Peak memory at
each size shows whether memory stays flat as the log grows.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventsourcing.utils import get_topic  # noqa: E402

from domain.usage import UsageEvent, usage_event_id  # noqa: E402
from infrastructure.bootstrap import Container, build  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402

ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"
TARGET = 100_000
CUSTOMERS = 20
NOW = datetime(2026, 11, 25, tzinfo=UTC)
START = NOW - timedelta(days=30)
TOPIC = get_topic(UsageEvent)


def define_meters(container: Container) -> None:
    meters = [
        ("calls", {"type": "count"}, None),
        (
            "pro tokens",
            {"type": "sum", "key": "tokens"},
            {
                "conjunction": "and",
                "clauses": [
                    {"key": "tier", "operator": "equals", "value": "pro"},
                    {"key": "tokens", "operator": "greater_than", "value": 0},
                ],
            },
        ),
        ("latest cost", {"type": "last", "key": "cost"}, None),
    ]
    for name, aggregation, filter_ in meters:
        container.ledger.create_meter(
            "default",
            name=name,
            description=None,
            measurement_unit="units",
            event_name="api.call",
            aggregation=aggregation,
            filter_=filter_,
            now=NOW,
        )


def append_events(container: Container, first: int, count: int) -> None:
    """Another month of usage (``count`` events) straight into the event store.

    In log order as ingest sees them, each event up to an hour late (the default
    backdate window). Every step covers the same 30 days, so the number of
    buckets stays the same while the log grows: memory should stay flat.
    """
    batch = []
    pace = 30 * 86_400 / count
    for i in range(first, first + count):
        at = START + timedelta(
            seconds=(i - first) * pace - (i * 7919) % 3600, microseconds=i % 1000
        )
        batch.append(
            UsageEvent.Recorded(  # type: ignore[call-arg]
                originator_id=usage_event_id("default", f"evt_{i}"),
                originator_version=1,
                originator_topic=TOPIC,
                business_id="default",
                event_id=f"evt_{i}",
                customer_id=f"cus_{i % CUSTOMERS}",
                event_name="api.call",
                timestamp=at,
                metadata={
                    "tokens": i % 5000,
                    "tier": "pro" if i % 3 else "free",
                    "cost": Decimal(i % 997) / 1000,
                },
                received_at=at,
            )
        )
        if len(batch) == 5000:
            container.ledger.events.put(batch)
            batch = []
    if batch:
        container.ledger.events.put(batch)


def raw_read(dburl: str) -> tuple[int, float]:
    """The baseline: every stored event, streamed with a server-side cursor."""
    started = time.perf_counter()
    rows = 0
    with psycopg.connect(dburl) as db, db.cursor(name="raw") as cursor:
        cursor.itersize = 5000
        cursor.execute(
            "SELECT notification_id, originator_id, topic, state FROM ledger_events "
            "ORDER BY notification_id"
        )
        for _ in cursor:
            rows += 1
    return rows, time.perf_counter() - started


def rebuild(dburl: str) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of `ledger projections rebuild usage`, as it reports them."""
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": dburl,
        "LEDGER_LOG_LEVEL": "info",
        "LEDGER_LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "projections", "rebuild", "usage"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    for line in (done.stdout + done.stderr).splitlines():
        if '"projection_rebuilt"' in line:
            report = json.loads(line)
            return float(report["seconds"]), float(report["peak_rss_mib"])
    raise RuntimeError(f"no projection_rebuilt line in: {done.stdout[-2000:]}{done.stderr[-2000:]}")


def bucket_count(dburl: str) -> int:
    with psycopg.connect(dburl) as db:
        row = db.execute("SELECT count(*) FROM usage_buckets").fetchone()
        return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--step", type=int, default=250_000)
    args = parser.parse_args()
    if args.events < 1 or args.step < 1:
        parser.error("--events and --step must be positive")
    dbname = f"ledger_bench_{secrets.token_hex(4)}"
    dburl = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        container = build(Settings(database_url=dburl))
        try:
            define_meters(container)
            print(
                f"rebuild benchmark: usage projection, 3 meters, {CUSTOMERS} customers, "
                f"30 days; PostgreSQL, {os.cpu_count()} cores"
            )
            print(
                f"{'log events':>12} {'rebuild':>14} {'ev/s':>10} {'peak RSS':>10} "
                f"{'raw read':>12} {'rows/s':>10} {'ratio':>6} {'buckets':>8}"
            )
            loaded = 0
            while loaded < args.events:
                count = min(args.step, args.events - loaded)
                append_events(container, loaded, count)
                loaded += count
                seconds, rss = rebuild(dburl)
                rows, raw_seconds = raw_read(dburl)
                rate, raw_rate = rows / seconds, rows / raw_seconds
                print(
                    f"{rows:>12,} {seconds:>12.1f} s {rate:>10,.0f} {rss:>7,.0f} MiB "
                    f"{raw_seconds:>10.2f} s {raw_rate:>10,.0f} {rate / raw_rate:>6.3f} "
                    f"{bucket_count(dburl):>8,}",
                    flush=True,
                )
            print(f"target >= {TARGET:,} events/s: {'met' if rate >= TARGET else 'NOT met'}")
        finally:
            container.close()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

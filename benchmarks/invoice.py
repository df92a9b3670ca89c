"""Invoice benchmark: one customer's monthly cycle of 1,000,000 usage events, folded flat.

This is the audit's fold (``application.measure.FlatMeasure``): every event of the
cycle streamed from the usage log. Routine work (previews, finalization) folds the
hourly tallies instead: ``benchmarks/scale.py`` measures both side by side.

Run: ``.venv/bin/python benchmarks/invoice.py [--sizes 250000,500000,1000000] [--list]
[--models]``

On a scratch PostgreSQL database it defines two meters on ``api.call`` (a count,
and a sum of ``tokens`` over events whose ``tier`` is ``pro``) and appends
usage events straight into the event store, in steps, until the customer has
each of ``--sizes`` events in the October 2026 cycle. Each step also appends
what the usage log's query must skip: other customers' events in the cycle, the
customer's events just before and after it, and another event name. The
projections then catch up and the table is vacuumed (both timed and
printed; neither is the measured figure).

At each size a fresh process (so its peak RSS is the fold's own) streams the
cycle's events of the customer as the service does when it finalizes an
invoice flat (``UsageLogStore.stream_records``: a server-side cursor, events decoded,
voids excluded, up to the cut), folds them with ``domain.invoice.fold_invoice``
and reports the best of two folds' seconds, events/s, memory (the tracemalloc
peak of a third, traced fold; ru_maxrss before and after) and the invoice.
Another process reads the same rows with a plain psycopg server-side cursor,
undecoded, best of two: the same-run baseline. ``--list`` also folds the same
events gathered in a list first, to show what streaming saves; ``--models`` folds
them once more with the calls line priced per value of ``tier`` and the tokens line
in graduated tiers (what a grouped line's preview reads from the usage log).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventsourcing.utils import get_topic  # noqa: E402

from domain.cycles import Cycle, Interval, cycle  # noqa: E402
from domain.invoice import Invoice, fold_invoice  # noqa: E402
from domain.meter import MeterSpec, UsageRecord  # noqa: E402
from domain.price_model import PriceModel, PricingModel, Tier  # noqa: E402
from domain.pricing import GroupPrice, MeterPrice, UsagePrice  # noqa: E402
from domain.usage import UsageEvent, usage_event_id  # noqa: E402
from infrastructure.bootstrap import Container, build  # noqa: E402
from infrastructure.codec import to_micros  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402

ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"
TARGET_SECONDS = 5.0
BUSINESS, CUSTOMER, EVENT = "default", "cus_big", "api.call"
CYCLE = cycle(datetime(2026, 10, 1, tzinfo=UTC), Interval.MONTH, 1, 0)
TOPIC = get_topic(UsageEvent)
PRO = {"conjunction": "and", "clauses": [{"key": "tier", "operator": "equals", "value": "pro"}]}
METERS = {
    "calls": ({"type": "count"}, None, "2", 1000),
    "pro_tokens": ({"type": "sum", "key": "tokens"}, PRO, "0.0004", 1000),
}
SCAN = (
    "SELECT ts, event_id, event_name, metadata FROM usage_events "
    "WHERE business_id = %s AND event_name = %s AND ts >= %s AND ts < %s AND customer_id = %s"
)
ITERSIZE = 10_000


def define_meters(container: Container) -> dict[str, str]:
    """Each meter's name -> its generated id."""
    ids = {}
    for name, (aggregation, filter_, _, _) in METERS.items():
        view = container.ledger.create_meter(
            BUSINESS,
            name=name,
            description=None,
            measurement_unit="units",
            event_name=EVENT,
            aggregation=aggregation,
            filter_=filter_,
            now=CYCLE.start,
        )
        ids[name] = view.meter_id
    return ids


def price_of(*, models: bool = False) -> UsagePrice:
    """Lines keyed by meter name, not the generated id, so runs give the same bytes.

    ``models``: the price models of ``domain.price_model`` instead, so their cost shows
    beside the plain fold: calls priced per value of ``tier`` (pro at 3), pro tokens in
    graduated tiers."""
    lines = [
        MeterPrice(name, Decimal(per_unit), free) for name, (_, _, per_unit, free) in METERS.items()
    ]
    if models:
        tiers = (Tier(Decimal(10**6), Decimal("0.0004")), Tier(None, Decimal("0.0002")))
        lines = [
            replace(
                lines[0],
                group_by="tier",
                groups=(GroupPrice("pro", PriceModel.per_unit(Decimal(3))),),
            ),
            replace(lines[1], model=PriceModel(PricingModel.GRADUATED, tiers=tiers)),
        ]
    return UsagePrice.of("USD", 2000, Interval.MONTH, 1, lines)


def recorded(event_id: str, i: int, customer: str, name: str, at: datetime) -> UsageEvent.Recorded:
    return UsageEvent.Recorded(  # type: ignore[call-arg]
        originator_id=usage_event_id(BUSINESS, event_id),
        originator_version=1,
        originator_topic=TOPIC,
        business_id=BUSINESS,
        event_id=event_id,
        customer_id=customer,
        event_name=name,
        timestamp=at,
        metadata={"tokens": i % 5000, "tier": "pro" if i % 3 else "free", "region": "eu"},
        received_at=at,
    )


def step_events(first: int, count: int) -> Iterator[UsageEvent.Recorded]:
    """``count`` events of the customer in the cycle, and 20% more the index must skip.

    The customer's own events cover the whole cycle, its first microsecond
    included. The skipped ones: other customers' events in the cycle (10%), the
    customer's in the month either side of it, ``end`` itself included (5%),
    and the customer's events of another name in the cycle (5%).
    """
    span = (CYCLE.end - CYCLE.start) / count
    for k in range(count):
        i, at = first + k, CYCLE.start + span * k
        yield recorded(f"evt_{i}", i, CUSTOMER, EVENT, at)
        if k % 10 == 0:
            yield recorded(f"other_{i}", i, f"cus_{i % 97}", EVENT, at)
        if k % 40 == 1:
            yield recorded(f"after_{i}", i, CUSTOMER, EVENT, CYCLE.end + span * (k - 1))
        if k % 40 == 21:
            yield recorded(f"before_{i}", i, CUSTOMER, EVENT, CYCLE.start - span * k)
        if k % 20 == 2:
            yield recorded(f"name_{i}", i, CUSTOMER, "api.other", at)


def append(container: Container, first: int, count: int) -> int:
    """Put a step's events into the log in batches; how many were put."""
    batch, written = [], 0
    for item in step_events(first, count):
        batch.append(item)
        if len(batch) == 5000:
            container.ledger.events.put(batch)
            written, batch = written + len(batch), []
    if batch:
        container.ledger.events.put(batch)
    return written + len(batch)


def expected(customer_events: int) -> tuple[int, int]:
    """What the two meters must measure: the customer's calls and pro tokens."""
    tokens = sum(i % 5000 for i in range(customer_events) if i % 3)
    return customer_events, tokens


def stream_records(container: Container, cycle_: Cycle, cut: int) -> Iterator[UsageRecord]:
    """The cycle's events of the customer as the service folds them (``stream_records``,
    what the audit's ``FlatMeasure`` reads), never all in memory."""
    return container.reads.usage_log.stream_records(
        BUSINESS, EVENT, CUSTOMER, cycle_.start, cycle_.end, cut
    )


def listed_records(container: Container, cycle_: Cycle, cut: int) -> Iterator[UsageRecord]:
    """The same events gathered in a list first."""
    return iter(list(stream_records(container, cycle_, cut)))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_fold(dburl: str, ids: dict[str, str], cut: int, via: str) -> dict[str, Any]:
    """In this (child) process: the best of two timed folds, then one under tracemalloc."""
    container = build(Settings(database_url=dburl))
    specs: dict[str, MeterSpec] = {
        name: container.ledger.meter_spec(BUSINESS, ids[name]) for name in METERS
    }
    price = price_of(models=via == "models")

    def fold() -> Invoice:
        events = (
            listed_records(container, CYCLE, cut)
            if via == "list"
            else stream_records(container, CYCLE, cut)
        )
        return fold_invoice(CYCLE, price, specs, events, cut=cut)

    before, timings = rss_mib(), []
    for _ in range(2):
        started = time.perf_counter()
        invoice = fold()
        timings.append(time.perf_counter() - started)
    after = rss_mib()
    tracemalloc.start()
    again = fold()
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    container.close()
    assert again.canonical_bytes() == invoice.canonical_bytes()
    return {
        "seconds": min(timings),
        "rss_before": before,
        "rss_after": after,
        "traced_peak": traced_peak,
        "consumed": [str(invoice.line(name).consumed) for name in METERS],
        "total": invoice.total_minor,
        "sha256": invoice.sha256,
    }


def measure_raw(dburl: str) -> dict[str, Any]:
    """In this (child) process: the same rows, query and cursor, not decoded; best of two."""
    params = (BUSINESS, EVENT, to_micros(CYCLE.start), to_micros(CYCLE.end), CUSTOMER)
    before = rss_mib()
    timings = []
    with psycopg.connect(dburl) as conn:
        for _ in range(2):
            started, rows = time.perf_counter(), 0
            with conn.cursor(name="raw", binary=True) as cursor:
                cursor.itersize = ITERSIZE
                cursor.execute(SCAN, params)
                for _row in cursor:
                    rows += 1
            timings.append(time.perf_counter() - started)
    return {"seconds": min(timings), "rows": rows, "rss_before": before, "rss_after": rss_mib()}


def child(mode: str, dburl: str, ids: dict[str, str], cut: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return what it printed."""
    command = [sys.executable, __file__, "--child", mode, "--dburl", dburl, "--cut", str(cut)]
    done = subprocess.run(
        [*command, "--ids", json.dumps(ids)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def report(
    size: int, ids: dict[str, str], cut: int, dburl: str, *, listed: bool, models: bool
) -> float:
    """Print one size's figures; the streamed fold's seconds."""
    raw = child("raw", dburl, ids, cut)
    folds = {"stream": child("stream", dburl, ids, cut)}
    if listed:
        folds["list"] = child("list", dburl, ids, cut)
    if models:
        folds["models"] = child("models", dburl, ids, cut)
    if raw["rows"] != size:
        raise RuntimeError(f"the usage log selected {raw['rows']:,} rows, not {size:,}")
    want = [str(n) for n in expected(size)]
    for via, fold in folds.items():
        verdict = "ok" if fold["consumed"] == want else f"WRONG, want {want}"
        print(
            f"{size:>10,} {via:>6} {fold['seconds']:>7.2f} s {size / fold['seconds']:>9,.0f} "
            f"{fold['traced_peak']:>8.1f} MiB {fold['rss_before']:>5.0f} -> "
            f"{fold['rss_after']:>4.0f} MiB {raw['seconds']:>7.2f} s "
            f"{size / raw['seconds']:>10,.0f} {fold['seconds'] / raw['seconds']:>6.1f}x",
            flush=True,
        )
        print(
            f"{'':>10} invoice: total {fold['total']:,} minor, consumed "
            f"{' / '.join(fold['consumed'])} ({verdict}), sha256 {fold['sha256']}",
            flush=True,
        )
    return float(folds["stream"]["seconds"])


def vacuum(dburl: str) -> float:
    """Settle the freshly written index (statistics, hint bits) as autovacuum would."""
    started = time.perf_counter()
    with psycopg.connect(dburl, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE usage_events")
    return time.perf_counter() - started


def run(sizes: list[int], dburl: str, *, listed: bool, models: bool) -> None:
    container = build(Settings(database_url=dburl))
    try:
        ids = define_meters(container)
        print(
            f"invoice benchmark: 1 customer, cycle {CYCLE.start:%Y-%m-%d} to {CYCLE.end:%Y-%m-%d}, "
            f"2 meters; PostgreSQL, {os.cpu_count()} cores"
        )
        print(
            f"{'events':>10} {'via':>6} {'fold':>9} {'ev/s':>9} {'traced pk':>12} "
            f"{'RSS before->peak':>18} {'raw read':>9} {'rows/s':>10} {'ratio':>7}"
        )
        loaded = written = 0
        seconds = 0.0
        for size in sizes:
            written += append(container, loaded, size - loaded)
            loaded = size
            started = time.perf_counter()
            container.projector.catch_up()
            caught = time.perf_counter() - started
            cut = container.projector.position("usage_log")
            vacuumed = vacuum(dburl)
            print(
                f"{'':>10} log {written:,} events; projections caught up in {caught:.1f} s, "
                f"vacuum analyze {vacuumed:.1f} s"
            )
            seconds = report(size, ids, cut, dburl, listed=listed, models=models)
        verdict = "met" if seconds < TARGET_SECONDS else "NOT met"
        print(f"target < {TARGET_SECONDS:.0f} s at {sizes[-1]:,} events: {verdict}")
    finally:
        container.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="250000,500000,1000000")
    parser.add_argument("--list", action="store_true", help="also fold a list of the events")
    parser.add_argument(
        "--models",
        action="store_true",
        help="also fold with a line priced per value and one in graduated tiers",
    )
    parser.add_argument(
        "--child", choices=["stream", "list", "models", "raw"], help=argparse.SUPPRESS
    )
    parser.add_argument("--dburl", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    parser.add_argument("--cut", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "raw":
            result = measure_raw(args.dburl)
        else:
            result = measure_fold(args.dburl, json.loads(args.ids), args.cut, args.child)
        print(json.dumps(result))
        return 0
    sizes = [int(size) for size in args.sizes.split(",")]
    if not sizes or sizes != sorted(set(sizes)) or sizes[0] < 1:
        parser.error("--sizes must be increasing positive counts")
    dbname = f"ledger_bench_{secrets.token_hex(4)}"
    dburl = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        run(sizes, dburl, listed=args.list, models=args.models)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

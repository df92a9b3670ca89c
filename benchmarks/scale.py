"""Scale benchmark: what routine operations cost as the log grows from 1M to 10M events.

Run: ``.venv/bin/python benchmarks/scale.py [--sizes 1000000,3000000,10000000]
[--big 1000000]``

On a scratch PostgreSQL database it writes, through the application (``Ledger.ingest``,
batches of 1,000, a clock of its own), 1,000 customers, three meters on ``api.call``
(a count, a sum of ``tokens`` over ``tier = pro`` events, a ``unique_count`` of
``model``), a product pricing them with 1,000 credits a cycle (overage billed, 50%
rollover), and 101 monthly subscriptions: 100 customers sending 100 events a cycle
and one big customer sending ``--big`` events a cycle. The cycles begin 17 minutes
into an hour, so every fold has partial first and last hours.

Each size is one more cycle: the subscribers' events of that cycle, some voided, and
history of the 899 other customers (bursts in the six months before the first cycle)
up to the size. Once the projections have caught up, a fresh container measures,
each the median of five runs: the invoice preview of the big customer's open cycle
(``--big`` events) and of a small one, a month of usage of one meter for either, the
first page of ``GET /events`` with each filter, and a billing tick with nothing due.
Then the cycle ends: finalizing the big customer's cycle is timed, and beside it the
flat fold of that cycle (every event, as ``ledger audit verify`` folds it), and a
billing tick that finalizes the 100 other cycles (and renews every subscription).
Last, a ``ledger serve`` process on the store answers those reads over HTTP and its
peak RSS is read.

It prints a table with each figure at each size and the growth from the first size
to the last, beside the targets: every routine figure within 1.3x, finalizing a
cycle of 1,000,000 events under 200 ms and at least 15x faster than its flat fold,
the flat fold under 5 s.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from application import listings  # noqa: E402
from application.billing import (  # noqa: E402
    finalize_cycle,
    invoice_preview,
    plan_cycle,
    recompute,
)
from application.invoicing import priced  # noqa: E402
from application.ledger import EventInput  # noqa: E402
from application.subscriptions import create_subscription, load  # noqa: E402
from application.usage_report import Window  # noqa: E402
from application.views import EventQuery  # noqa: E402
from domain.cycles import Cycle  # noqa: E402
from infrastructure.bootstrap import Container, build  # noqa: E402
from infrastructure.runtime import tick  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402

ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"
BUSINESS = "default"
ANCHOR = datetime(2026, 5, 1, 0, 17, tzinfo=UTC)  # cycles start 17 minutes into an hour
HISTORY_FROM = ANCHOR - timedelta(days=180)
CUSTOMERS, SMALL, SMALL_EVENTS = 1000, 100, 100
BATCH, BURST = 1000, 250  # events a request; a history customer's events in one hour
RUNS = 5
PRO = {"conjunction": "and", "clauses": [{"key": "tier", "operator": "equals", "value": "pro"}]}
MODELS = [f"model-{i}" for i in range(40)]
GROWTH_TARGET, FINALIZE_TARGET, SPEEDUP_TARGET, FLAT_TARGET = 1.3, 0.200, 15.0, 5.0


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    clock: Clock
    customers: list[str]
    meters: dict[str, str]  # name -> id
    big: str  # the big customer's subscription
    small: str  # one small customer's subscription
    small_customer: str
    big_customer: str
    cycle: int = -1  # the subscribers' current cycle
    figures: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def settings(dburl: str) -> Settings:
    return Settings(database_url=dburl, backdate_window=timedelta(days=400))


def setup(container: Container, clock: Clock) -> World:
    ledger = container.ledger
    clock.now = HISTORY_FROM - timedelta(days=1)
    customers = [
        ledger.register_customer(
            BUSINESS,
            email=f"c{i}@example.com",
            name=f"Customer {i}",
            phone_number=None,
            metadata=None,
            now=clock.now,
        ).customer_id
        for i in range(CUSTOMERS)
    ]
    definitions = {
        "calls": ({"type": "count"}, None),
        "pro_tokens": ({"type": "sum", "key": "tokens"}, PRO),
        "models": ({"type": "unique_count", "key": "model"}, None),
    }
    meters = {
        name: ledger.create_meter(
            BUSINESS,
            name=name,
            description=None,
            measurement_unit="units",
            event_name="api.call",
            aggregation=aggregation,
            filter_=filter_,
            now=clock.now,
        ).meter_id
        for name, (aggregation, filter_) in definitions.items()
    }
    from application.credits import create_entitlement  # noqa: PLC0415

    entitlement = create_entitlement(
        ledger,
        BUSINESS,
        {
            "name": "API credits",
            "unit": "calls",
            "precision": 0,
            "overage_enabled": True,
            "overage_behavior": "invoice_at_billing",
            "rollover_enabled": True,
            "rollover_percentage": 50,
        },
        clock.now,
    ).entitlement_id
    product = ledger.create_product(
        BUSINESS,
        name="API plan",
        description=None,
        tax_category="saas",
        metadata=None,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 2000,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Month",
            "meters": [
                {
                    "meter_id": meters["calls"],
                    "price_per_unit": "2",
                    "free_threshold": 1000,
                    "credit_entitlement_id": entitlement,
                    "meter_units_per_credit": "1",
                },
                {"meter_id": meters["pro_tokens"], "price_per_unit": "0.0004", "free_threshold": 0},
                {"meter_id": meters["models"], "price_per_unit": "100", "free_threshold": 5},
            ],
        },
        credit_entitlements=[{"credit_entitlement_id": entitlement, "credits_amount": "1000"}],
        now=clock.now,
    ).product_id
    clock.now = ANCHOR
    subscriptions = [
        create_subscription(
            ledger,
            BUSINESS,
            customer_id=customer,
            product_id=product,
            quantity=1,
            billing={"country": "US"},
            metadata=None,
            payment={},
            start_date=None,
            now=clock.now,
        ).subscription_id
        for customer in customers[: SMALL + 1]
    ]
    return World(
        clock,
        customers,
        meters,
        big=subscriptions[0],
        small=subscriptions[1],
        small_customer=customers[1],
        big_customer=customers[0],
    )


def event(customer: str, i: int, at: datetime, prefix: str) -> EventInput:
    metadata = {
        "tokens": i % 5000,
        "tier": "pro" if i % 3 else "free",
        "model": MODELS[i % len(MODELS)],
        "region": "eu" if i % 2 else "us",
    }
    return EventInput(f"{prefix}-{i}", customer, "api.call", at.isoformat(), metadata)


def ingest(container: Container, events: Iterator[EventInput], now: datetime) -> int:
    written, batch = 0, []
    for item in events:
        batch.append(item)
        if len(batch) == BATCH:
            written += container.ledger.ingest(BUSINESS, batch, now).ingested_count
            batch = []
    if batch:
        written += container.ledger.ingest(BUSINESS, batch, now).ingested_count
    return written


def cycle_events(world: World, current: Cycle, count: int) -> Iterator[EventInput]:
    """The subscribers' events of the current cycle, up to a day before its end."""
    span = current.end - current.start - timedelta(days=1)
    for i in range(count):
        at = current.start + span * i / count
        yield event(world.big_customer, i, at, f"big{world.cycle}")
        if i < SMALL * SMALL_EVENTS:  # 100 small customers, 100 events each
            customer = world.customers[1 + i % SMALL]
            yield event(
                customer,
                i,
                current.start + span * (i % SMALL_EVENTS) / SMALL_EVENTS,
                f"small{world.cycle}",
            )


def history_events(world: World, count: int, step: int) -> Iterator[EventInput]:
    """Bursts of the other customers, in the six months before the first cycle."""
    others = world.customers[SMALL + 1 :]
    hours = int((ANCHOR - HISTORY_FROM).total_seconds() // 3600) - 1
    for i in range(count):
        burst = (i // BURST) * 7919 + step * 104729
        customer = others[burst % len(others)]
        at = HISTORY_FROM + timedelta(hours=burst % hours, seconds=i % BURST)
        yield event(customer, i, at, f"h{step}")


def timed(world: World, name: str, run: Callable[[], Any], runs: int = RUNS) -> Any:
    seconds, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    world.figures.setdefault(name, []).append(statistics.median(seconds))
    return result


def measure_reads(world: World, container: Container) -> None:
    ledger, reads, now = container.ledger, container.reads, world.clock.now
    timed(
        world,
        "invoice preview, big customer",
        lambda: invoice_preview(ledger, reads, BUSINESS, world.big, now=now),
    )
    timed(
        world,
        "invoice preview, small customer",
        lambda: invoice_preview(ledger, reads, BUSINESS, world.small, now=now),
    )
    current = load(ledger, BUSINESS, world.big).cycle(world.cycle)
    for who, customer in (("small", world.small_customer), ("big", world.big_customer)):
        timed(
            world,
            f"a month of usage, {who} customer",
            lambda customer=customer: listings.meter_usage(
                ledger,
                reads,
                business_id=BUSINESS,
                meter_id=world.meters["pro_tokens"],
                customer_id=customer,
                start=current.start,
                end=current.end,
                window=Window.DAY,
            ),
        )
    week = (current.start + timedelta(days=7), current.start + timedelta(days=14))
    pages = {
        "no filter": (EventQuery(BUSINESS), None),
        "customer_id": (EventQuery(BUSINESS, customer_id=world.small_customer), None),
        "event_name": (EventQuery(BUSINESS, event_name="api.call"), None),
        "customer_id + event_name": (
            EventQuery(BUSINESS, customer_id=world.small_customer, event_name="api.call"),
            None,
        ),
        "start + end": (EventQuery(BUSINESS, start=week[0], end=week[1]), None),
        "voided": (EventQuery(BUSINESS, voided=True), None),
        "meter_id": (EventQuery(BUSINESS), world.meters["pro_tokens"]),
    }
    for label, (query, meter_id) in pages.items():
        timed(
            world,
            f"first events page, {label}",
            lambda query=query, meter_id=meter_id: listings.events(ledger, reads, query, meter_id),
        )
    idle = timed(world, "billing tick, nothing due", lambda: tick(container))
    if idle.finalized or idle.renewed or idle.expired:
        raise RuntimeError(f"a tick with nothing due did something: {idle}")


def finalize(world: World, container: Container) -> None:
    ledger, reads = container.ledger, container.reads
    subscription = load(ledger, BUSINESS, world.big)
    current = subscription.cycle(world.cycle)
    world.clock.now = current.end + timedelta(hours=2)
    # What finalizing decides (the fold at the cut, the adjustments, the grants), not
    # saved, five times; then the finalization itself, which can be done only once.
    timed(
        world,
        "finalize the big customer's cycle, the plan",
        lambda: plan_cycle(ledger, reads, BUSINESS, world.big, world.cycle, world.clock.now),
    )
    started = time.perf_counter()
    record = finalize_cycle(ledger, reads, BUSINESS, world.big, world.cycle, now=world.clock.now)
    world.figures.setdefault("finalize the big customer's cycle, saved", []).append(
        time.perf_counter() - started
    )
    specs = priced(ledger, subscription, current).specs
    flat = timed(
        world,
        "flat fold of that cycle (the audit's)",
        lambda: reads.flat.measure(
            BUSINESS, specs, world.big_customer, current.start, current.end, at=record.cut
        ),
        runs=1,
    )
    counted = flat[1][world.meters["calls"]].count
    world.notes.append(f"cycle {world.cycle}: the big customer's cycle holds {counted:,} events")
    done = timed(
        world, "billing tick, finalizing the other cycles", lambda: tick(container), runs=1
    )
    world.notes.append(
        f"cycle {world.cycle}: that tick finalized {len(done.finalized)}, renewed {done.renewed}, "
        f"ended {done.expired} grants"
    )
    container.projector.catch_up()


def serve(dburl: str, world: World) -> float:
    """Peak RSS (MiB) of a `ledger serve` process answering the reads over HTTP."""
    key, port = secrets.token_urlsafe(24), _free_port()
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": dburl,
        "LEDGER_BOOTSTRAP_API_KEY": key,
        "LEDGER_LOG_LEVEL": "warning",
        "LEDGER_BACKDATE_WINDOW": "P400D",
    }
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=60,
            ) as http:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        health = http.get("/health").json()
                        if health.get("projection_position") == health.get("log_position"):
                            break
                    except (httpx.TransportError, ValueError):
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the server did not catch up")
                    time.sleep(0.5)
                for _ in range(3):
                    for sub in (world.big, world.small):
                        assert http.get(f"/subscriptions/{sub}/invoice-preview").status_code == 200
                    for params in (
                        {},
                        {"customer_id": world.small_customer},
                        {"event_name": "api.call"},
                    ):
                        assert http.get("/events", params=params).status_code == 200
            status = Path(f"/proc/{server.pid}/status").read_text().splitlines()
            peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return peak / 1024


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def analyze(dburl: str) -> float:
    """Settle what was just bulk-written (statistics, visibility) as autovacuum would."""
    started = time.perf_counter()
    with psycopg.connect(dburl, autocommit=True) as db:
        db.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def log_size(dburl: str) -> int:
    with psycopg.connect(dburl) as db:
        row = db.execute(
            "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", ("%UsageEvent%",)
        ).fetchone()
    return int(row[0]) if row else 0


def run(sizes: list[int], big: int, dburl: str) -> None:
    clock = Clock(HISTORY_FROM)
    container = build(settings(dburl), clock)
    world = setup(container, clock)
    print(
        f"scale benchmark: PostgreSQL, {os.cpu_count()} cores, {CUSTOMERS:,} customers, "
        f"101 subscriptions, 3 meters; the big customer sends {big:,} events a cycle",
        flush=True,
    )
    rss: list[float] = []
    written = 0
    for step, size in enumerate(sizes):
        world.cycle += 1
        current = load(container.ledger, BUSINESS, world.big).cycle(world.cycle)
        clock.now = current.end - timedelta(days=1)
        started = time.perf_counter()
        written += ingest(container, cycle_events(world, current, big), clock.now)
        for event_id in [f"big{world.cycle}-{i}" for i in range(0, 20 * 97, 97)]:
            container.ledger.void_usage_event(BUSINESS, event_id, reason="bench", now=clock.now)
        history = max(size - written, 0)
        written += ingest(container, history_events(world, history, step), clock.now)
        wrote = time.perf_counter() - started
        started = time.perf_counter()
        container.projector.catch_up(batch_size=5000)
        caught = time.perf_counter() - started
        analyzed = analyze(dburl)
        print(
            f"log {log_size(dburl):,} usage events: written in {wrote:.0f} s, "
            f"projections caught up in {caught:.0f} s, vacuum analyze {analyzed:.0f} s",
            flush=True,
        )
        fresh = build(settings(dburl), clock)  # as a server: its projector follows the log
        fresh.projector.start()
        try:
            measure_reads(world, fresh)
            finalize(world, fresh)
        finally:
            fresh.close()
        container.projector.catch_up()
        rss.append(serve(dburl, world))
    check(container, world)
    container.close()
    world.figures["server peak RSS (MiB)"] = rss
    table(sizes, world)


def check(container: Container, world: World) -> None:
    """The last finalized invoice of the big customer, folded again flat, is the same bytes."""
    from application.billing import invoice_record  # noqa: PLC0415
    from domain.invoice_record import invoice_id_of  # noqa: PLC0415

    record = invoice_record(
        container.ledger, BUSINESS, invoice_id_of(BUSINESS, world.big, world.cycle)
    )
    again = recompute(container.ledger, container.reads, record)
    same = "same bytes" if again.canonical_bytes().decode() == record.document else "DIFFERENT"
    world.notes.append(f"audit: the big customer's last invoice folded again flat: {same}")


def table(sizes: list[int], world: World) -> None:
    labels = [f"{s / 1e6:g}M" for s in sizes]
    print()
    print(f"{'operation':<46}" + "".join(f"{x:>11}" for x in labels) + f"{'growth':>9}  target")
    for name, values in world.figures.items():
        unit = "" if "RSS" in name else " ms"
        shown = "".join(f"{(v if 'RSS' in name else v * 1000):>8.1f}{unit:<3}" for v in values)
        growth = values[-1] / values[0] if values[0] else float("inf")
        target = verdict(name, values, growth)
        print(f"{name:<46}{shown}{growth:>8.2f}x  {target}")
    finalized = world.figures["finalize the big customer's cycle, saved"][-1]
    flat = world.figures["flat fold of that cycle (the audit's)"][-1]
    speedup = flat / finalized
    verdict_text = "met" if speedup >= SPEEDUP_TARGET else "NOT met"
    print(
        f"finalizing is {speedup:.1f}x faster than the flat fold "
        f"(>= {SPEEDUP_TARGET:g}x: {verdict_text})"
    )
    for note in world.notes:
        print(f"  {note}")


def verdict(name: str, values: list[float], growth: float) -> str:
    if name.startswith("finalize"):
        met = "met" if values[-1] < FINALIZE_TARGET else "NOT met"
        return f"< {FINALIZE_TARGET * 1000:.0f} ms: {met}"
    if name.startswith("flat fold"):
        return f"< {FLAT_TARGET:.0f} s: {'met' if values[-1] < FLAT_TARGET else 'NOT met'}"
    if "RSS" in name or "finalizing the other" in name:
        return ""
    return f"<= {GROWTH_TARGET}x: {'met' if growth <= GROWTH_TARGET else 'NOT met'}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,3000000,10000000")
    parser.add_argument(
        "--big", type=int, default=1_000_000, help="the big customer's events a cycle"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database, print its URL")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    dbname = f"ledger_scale_{secrets.token_hex(4)}"
    dburl = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        run(sizes, args.big, dburl)
    finally:
        if args.keep:
            print(f"kept: {dburl}")
        else:
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

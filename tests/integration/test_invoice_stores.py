"""The same events make byte-identical finalized invoices on SQLite and on PostgreSQL.

Both stores get the same catalogue (a meter of every aggregation, with and
without filters, priced in a random currency), the same usage events and the
same late events, through the application layer; in the same order, or in a
different shuffled order and batching on each store. Each cycle is finalized on
both, and the two invoices must have the same bytes and SHA-256, and be the
pure fold (``domain.invoice.fold_invoice``) of those events.

Ids the commands draw at random (customers, meters, products, subscriptions)
come from a counter restarted for each store, so both name everything alike:
meter ids are in an invoice's bytes.
"""

from __future__ import annotations

import itertools
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from application.ledger import EventInput
from application.subscriptions import create_subscription
from domain.cycles import Interval, cycle
from domain.invoice import Invoice, adjustment, fold_invoice
from domain.invoice_record import InvoiceRecord
from domain.meter import MeterSpec, UsageRecord
from domain.product import parse_usage_price
from infrastructure.bootstrap import Container, build
from infrastructure.runtime import close_cycles
from infrastructure.settings import Settings
from tests.conftest import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    FakeClock,
    _create_pg_database,
    _drop_pg_database,
)

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=35)  # cycle 0: Oct 21 to Nov 21, cycle 1: to Dec 21
BUSINESS = "default"
AGGREGATIONS: list[dict[str, Any]] = [
    {"type": "count"},
    {"type": "sum", "key": "tokens"},
    {"type": "max", "key": "tokens"},
    {"type": "min", "key": "tokens"},
    {"type": "last", "key": "tokens"},
    {"type": "unique_count", "key": "model"},
]
FILTERS: list[dict[str, Any] | None] = [
    None,
    {"conjunction": "and", "clauses": [{"key": "tier", "operator": "equals", "value": "pro"}]},
    {
        "conjunction": "or",
        "clauses": [
            {"key": "tokens", "operator": "greater_than", "value": 100},
            {"key": "model", "operator": "contains", "value": "hd"},
        ],
    },
]
PRICES = ["0", "1", "2", "0.37", "0.000000500000", "12345.123456789012"]


class CountingIds:
    """A stand-in for ``secrets.token_hex``: the same ids, in the same order, per store."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._next = itertools.count(1)

    def __call__(self, nbytes: int | None = None) -> str:
        return format(next(self._next), f"0{2 * (nbytes or 32)}x")


@dataclass
class Stores:
    sqlite: Container
    postgres: Container
    clock: FakeClock
    ids: CountingIds

    def __iter__(self) -> Iterator[Container]:
        return iter((self.sqlite, self.postgres))


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stores]:
    ids = CountingIds()
    monkeypatch.setattr(secrets, "token_hex", ids)
    clock = FakeClock(NOW)
    database = _create_pg_database()
    urls = (
        f"sqlite:///{tmp_path}/ledger.sqlite",
        f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}",
    )
    built = [
        build(Settings(database_url=url, backdate_window=timedelta(days=40)), clock) for url in urls
    ]
    try:
        yield Stores(built[0], built[1], clock, ids)
    finally:
        for container in built:
            container.close()
        _drop_pg_database(database)


@dataclass(frozen=True)
class Catalogue:
    customers: tuple[str, str]  # the subscriber's events count, the other's do not
    subscription_id: str
    meters: dict[str, MeterSpec]
    price: dict[str, Any]


def set_up(container: Container, ids: CountingIds, rng: random.Random) -> Catalogue:
    """Two customers, a meter of each aggregation, a product pricing them, a subscription."""
    ids.restart()
    ledger = container.ledger
    subscriber, other = (
        ledger.register_customer(
            BUSINESS, email=f"c{i}@example.com", name=f"C{i}", phone_number=None, metadata=None,
            now=START,
        ).customer_id
        for i in range(2)
    )  # fmt: skip
    meters = {}
    for i, aggregation in enumerate(AGGREGATIONS):
        filter_ = rng.choice(FILTERS)
        view = ledger.create_meter(
            BUSINESS, name=f"m{i}", description=None, measurement_unit="units",
            event_name="api.call", aggregation=aggregation, filter_=filter_, now=START,
        )  # fmt: skip
        meters[view.meter_id] = MeterSpec.parse("api.call", aggregation, filter_)
    price = {
        "type": "usage_based_price",
        "currency": rng.choice(["USD", "JPY", "KWD"]),
        "fixed_price": rng.randint(0, 5000),
        "payment_frequency_count": 1,
        "payment_frequency_interval": "Month",
        "meters": [
            {
                "meter_id": meter_id,
                "price_per_unit": rng.choice(PRICES),
                "free_threshold": rng.choice([0, 0, 3, 1000]),
            }
            for meter_id in meters
        ],
    }
    product = ledger.create_product(
        BUSINESS, name="Plan", description=None, tax_category="saas", metadata=None,
        price=price, now=START,
    )  # fmt: skip
    subscription = create_subscription(
        ledger, BUSINESS, customer_id=subscriber, product_id=product.product_id, quantity=1,
        billing={"country": "US"}, metadata=None, payment={}, start_date=START, now=NOW,
    )  # fmt: skip
    return Catalogue((subscriber, other), subscription.subscription_id, meters, price)


def usage_events(
    rng: random.Random, customers: tuple[str, ...], prefix: str, start: datetime, end: datetime
) -> list[EventInput]:
    """80 to 160 events in ``[start, end)``, of both customers, some of another name."""
    minutes = int((end - start).total_seconds()) // 60
    events = []
    for i in range(rng.randint(80, 160)):
        metadata: dict[str, object] = {
            "tier": rng.choice(["pro", "free"]),
            "model": rng.choice(["sd", "hd", "hd-xl", 7, True]),
        }
        if rng.random() < 0.85:
            metadata["tokens"] = rng.choice(
                [rng.randint(-50, 500), Decimal(rng.randint(-5000, 5000)) / 100, "12"]
            )
        # Whole minutes: many events share a timestamp, so ``last`` turns on the event id.
        at = start + timedelta(minutes=rng.randrange(minutes))
        name = rng.choice(["api.call", "api.call", "api.call", "other"])
        events.append(
            EventInput(f"{prefix}-{i}", rng.choice(customers), name, at.isoformat(), metadata)
        )
    return events


def ingest(container: Container, events: list[EventInput], rng: random.Random | None) -> None:
    """All ``events``: in batches of 100, or shuffled in batches of random sizes with ``rng``."""
    order = list(events)
    if rng is not None:
        rng.shuffle(order)
    written = position = 0
    while position < len(order):
        size = 100 if rng is None else rng.randint(1, 250)
        batch = order[position : position + size]
        written += container.ledger.ingest(BUSINESS, batch, NOW).ingested_count
        position += size
    assert written == len(events)


def ingest_on_both(stores: Stores, events: list[EventInput], seed: int, shuffled: bool) -> None:
    for index, container in enumerate(stores):
        ingest(container, events, random.Random(f"{seed}-{index}") if shuffled else None)


def finalize_on_both(stores: Stores) -> InvoiceRecord:
    """Close the due cycle on each store; the two invoices are the same bytes."""
    [on_sqlite] = close_cycles(stores.sqlite, catch_up=True)
    [on_postgres] = close_cycles(stores.postgres, catch_up=True)
    assert on_sqlite.cycle_index == on_postgres.cycle_index
    assert on_sqlite.cut == on_postgres.cut
    assert on_sqlite.document == on_postgres.document
    assert on_sqlite.sha256 == on_postgres.sha256
    assert on_sqlite.total_minor == on_postgres.total_minor
    return on_sqlite


def pure_fold(
    catalogue: Catalogue, index: int, events: list[EventInput], cut: int, **extra: Any
) -> Invoice:
    """The cycle's invoice from the events themselves, without any store."""
    price, _ = parse_usage_price(catalogue.price)
    records: list[UsageRecord] = [
        (datetime.fromisoformat(e.timestamp or "").astimezone(UTC), e.event_id, e.event_name,
         dict(e.metadata or {}))
        for e in events
        if e.customer_id == catalogue.customers[0]
    ]  # fmt: skip
    period = cycle(START, Interval.MONTH, 1, index)
    return fold_invoice(period, price, catalogue.meters, records, cut=cut, **extra)


@pytest.mark.parametrize(
    ("seed", "shuffled"),
    [(0, False), (1, True), (2, True)],
    ids=["same-order", "shuffled-1", "shuffled-2"],
)
def test_the_same_events_make_byte_identical_invoices_on_sqlite_and_postgres(
    stores: Stores, seed: int, shuffled: bool
) -> None:
    catalogues = [set_up(container, stores.ids, random.Random(seed)) for container in stores]
    assert catalogues[0] == catalogues[1]  # the same ids and definitions on both stores
    catalogue = catalogues[0]
    rng = random.Random(seed)
    first_end = cycle(START, Interval.MONTH, 1, 0).end
    events = usage_events(rng, catalogue.customers, "e", START - timedelta(days=1), NOW)
    ingest_on_both(stores, events, seed, shuffled)

    first = finalize_on_both(stores)
    assert first.cycle_index == 0
    assert first.document.encode() == pure_fold(catalogue, 0, events, first.cut).canonical_bytes()

    # Late usage of the finalized cycle, and more of the open one; then that one closes.
    late = usage_events(rng, catalogue.customers, "late", START, first_end)
    more = usage_events(rng, catalogue.customers, "more", first_end, NOW)
    ingest_on_both(stores, late + more, seed + 100, shuffled)
    stores.clock.advance(timedelta(days=31))
    second = finalize_on_both(stores)
    assert second.cycle_index == 1
    change = adjustment(
        pure_fold(catalogue, 0, events, first.cut),
        pure_fold(catalogue, 0, events + late, second.cut),
    )
    carried = [] if change.is_zero else [change]
    expected = pure_fold(catalogue, 1, events + late + more, second.cut, adjustments=carried)
    assert second.document.encode() == expected.canonical_bytes()
    assert second.sha256 == expected.sha256

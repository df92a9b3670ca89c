"""The tallies' shortcut is the flat fold: whole hours from buckets, edges from the usage log.

For random events (on hour edges and inside hours), voids, events recorded after a
cut (late for it), every aggregation and ranges whose ends lie on hour edges or
inside hours, ``TallyMeasure`` at a cut gives exactly the tallies (so the invoice
bytes) ``FlatMeasure`` folds from every event at that cut.
"""

from __future__ import annotations

import random
import tempfile
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.ledger import EventInput
from domain.meter import MeterSpec
from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings
from tests.conftest import FakeClock
from tests.integration.test_usage_projection import (
    DAYS,
    METERS,
    NOW,
    catch_up,
    make_meter,
    register_with_id,
)

BASE = NOW - timedelta(hours=8)  # events fall in the eight hours before NOW
CUSTOMERS = ("cus_a", "cus_b")


def random_events(rng: random.Random, count: int, prefix: str) -> list[EventInput]:
    events = []
    for i in range(count):
        hour = rng.randint(0, 7)
        minute = rng.choice([0, 0, rng.randint(0, 59)])  # many exactly on an hour edge
        second = 0 if minute == 0 and rng.random() < 0.5 else rng.randint(0, 59)
        at = BASE + timedelta(hours=hour, minutes=minute, seconds=second)
        metadata: dict[str, object] = {
            "tier": rng.choice(["pro", "free"]),
            "model": rng.choice(["sd", "hd", "hd-xl"]),
            "tokens": rng.choice([rng.randint(-20, 300), Decimal(rng.randint(-999, 999)) / 10]),
        }
        name = rng.choice(["api.call", "api.call", "api.other"])
        events.append(
            EventInput(f"{prefix}{i}", rng.choice(CUSTOMERS), name, at.isoformat(), metadata)
        )
    return events


def moment(rng: random.Random) -> Any:
    """A range end: on an hour edge, or inside an hour."""
    hour = rng.randint(0, 8)
    inside = rng.random() < 0.6
    return BASE + timedelta(hours=hour, minutes=rng.randint(1, 59) if inside else 0)


def compare(
    container: Container, specs: dict[str, MeterSpec], cut: int, rng: random.Random
) -> None:
    reads = container.reads
    for _ in range(4):
        start, end = sorted((moment(rng), moment(rng)))
        if start == end:
            end += timedelta(minutes=rng.randint(1, 90))
        for customer in (*CUSTOMERS, None):
            _, flat = reads.flat.measure("default", specs, customer, start, end, at=cut)
            tally_cut, tallied = reads.measure.measure(
                "default", specs, customer, start, end, at=cut
            )
            assert tally_cut == cut
            assert tallied == flat, (start, end, customer, cut)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 100_000), early=st.integers(1, 60), late=st.integers(0, 40))
def test_tallies_at_any_cut_equal_the_flat_fold(seed: int, early: int, late: int) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        container = build(
            Settings(database_url=f"sqlite:///{tmp}/l.sqlite", backdate_window=DAYS), FakeClock()
        )
        try:
            for cid in CUSTOMERS:
                register_with_id(container, cid)
            ids = {name: make_meter(container, name, *METERS[name]) for name in METERS}
            first = random_events(rng, early, "e")
            container.ledger.ingest("default", first, NOW)
            catch_up(container)
            cut = container.ledger.head()  # a finalized invoice's cut, say
            second = random_events(rng, late, "late")  # late for that cut
            if second:
                container.ledger.ingest("default", second, NOW)
            for e in rng.sample(first + second, k=min(5, len(first + second))):
                container.ledger.void_usage_event("default", e.event_id, reason=None, now=NOW)
            middle = container.ledger.head()
            if rng.random() < 0.5:  # a meter defined after all of it
                ids["late-sum"] = make_meter(container, "late-sum", *METERS["pro-sum"])
            container.ledger.ingest("default", random_events(rng, 10, "after"), NOW)
            catch_up(container)
            specs = {name: container.ledger.meter_spec("default", i) for name, i in ids.items()}
            specs = {ids[name]: spec for name, spec in specs.items()}
            for at in (cut, middle, container.ledger.head()):
                compare(container, specs, at, rng)
        finally:
            container.close()


def test_an_old_cut_reads_only_the_hours_changed_since(make_container: Any) -> None:
    """Buckets changed after the cut are read from the usage log; the rest are taken."""
    container = make_container(backdate_window=DAYS)
    for cid in CUSTOMERS:
        register_with_id(container, cid)
    meter_id = make_meter(container, "max", *METERS["max"])
    at = (BASE + timedelta(hours=2, minutes=30)).isoformat()
    events = [EventInput(f"e{i}", "cus_a", "api.call", at, {"tokens": i}) for i in range(5)]
    container.ledger.ingest("default", events, NOW)
    catch_up(container)
    cut = container.ledger.head()
    container.ledger.void_usage_event("default", "e4", reason="late void", now=NOW)
    later = (BASE + timedelta(hours=5, minutes=10)).isoformat()
    container.ledger.ingest(
        "default", [EventInput("l1", "cus_a", "api.call", later, {"tokens": 99})], NOW
    )
    catch_up(container)
    spec = {meter_id: container.ledger.meter_spec("default", meter_id)}
    window = ("default", spec, "cus_a", BASE, BASE + timedelta(hours=8))
    _, then = container.reads.measure.measure(*window, at=cut)
    _, now = container.reads.measure.measure(*window)
    assert then[meter_id].maximum == 4  # the void came after the cut
    assert now[meter_id].maximum == 99
    assert then == container.reads.flat.measure(*window, at=cut)[1]

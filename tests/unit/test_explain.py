"""Explaining a meter: which events count, what they measure, and which one decided."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.explain import Decisive, explain_meter, explain_meters, has_decisive_event
from domain.invoice import CHUNK
from domain.metadata import MetadataValue
from domain.meter import AggregationKind, MeterSpec, UsageRecord, fold

T0 = datetime(2026, 11, 1, tzinfo=UTC)
START, END = T0, T0 + timedelta(days=30)


def spec(kind: str, key: str | None = "n", filter_: Any = None, name: str = "api") -> MeterSpec:
    return MeterSpec.parse(name, {"type": kind, "key": None if kind == "count" else key}, filter_)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record(
    event_id: str, seconds: float, name: str = "api", **metadata: MetadataValue
) -> UsageRecord:
    return (at(seconds), event_id, name, metadata)


TIER_PRO = {
    "conjunction": "and",
    "clauses": [{"key": "tier", "operator": "equals", "value": "pro"}],
}
MIXED = [
    record("a", 1, n=3, tier="pro"),
    record("b", 2, n=Decimal("7.50"), tier="free"),  # filtered out
    record("c", 3, n="9", tier="pro"),  # a string is not a number: not measured
    record("d", 4, tier="pro"),  # no key: not measured
    record("e", 5, n=Decimal("-1.5"), tier="pro"),
    record("f", 6, name="other", n=100, tier="pro"),  # another event name
    record("g", -1, n=1000, tier="pro"),  # before the cycle
    record("h", 30 * 86400, n=1000, tier="pro"),  # at the cycle's end: outside
    record("i", 7, n=2, tier="pro"),
]


@pytest.mark.parametrize(
    ("kind", "counted", "consumed"),
    [
        ("count", 5, "5"),  # a, c, d, e, i: count needs no value
        ("sum", 3, "3.5"),
        ("max", 3, "3"),
        ("min", 3, "-1.5"),
        ("last", 3, "2"),
        ("unique_count", 4, "4"),
    ],
)
def test_counts_only_in_cycle_events_of_the_name_that_pass_the_filter_and_measure(
    kind, counted, consumed
) -> None:
    explained = explain_meter(spec(kind, filter_=TIER_PRO), MIXED, START, END)
    assert explained.events_counted == counted
    assert explained.consumed == Decimal(consumed)
    in_cycle = [r for r in MIXED if START <= r[0] < END]
    assert explained.consumed == fold(spec(kind, filter_=TIER_PRO), in_cycle)


def test_without_a_filter_every_event_of_the_name_counts() -> None:
    explained = explain_meter(spec("count"), MIXED, START, END)
    assert explained.events_counted == 6  # a b c d e i
    assert explained.decisive is None


@pytest.mark.parametrize("kind", ["count", "sum", "unique_count"])
def test_aggregations_of_every_event_have_no_decisive_event(kind) -> None:
    assert not has_decisive_event(AggregationKind(kind))
    assert explain_meter(spec(kind), MIXED, START, END).decisive is None


@pytest.mark.parametrize("kind", ["max", "min", "last"])
def test_nothing_counted_measures_zero_with_no_decisive_event(kind) -> None:
    explained = explain_meter(spec(kind, filter_=TIER_PRO), [record("x", 1, n=5)], START, END)
    assert (explained.events_counted, explained.consumed, explained.decisive) == (0, 0, None)


def test_max_names_the_event_with_the_greatest_value() -> None:
    explained = explain_meter(spec("max", filter_=TIER_PRO), MIXED, START, END)
    assert explained.decisive == Decisive(at(1), "a", Decimal(3))


def test_min_names_the_event_with_the_least_value() -> None:
    explained = explain_meter(spec("min", filter_=TIER_PRO), MIXED, START, END)
    assert explained.decisive == Decisive(at(5), "e", Decimal("-1.5"))


def test_last_names_the_event_with_the_greatest_timestamp() -> None:
    explained = explain_meter(spec("last", filter_=TIER_PRO), MIXED, START, END)
    assert explained.decisive == Decisive(at(7), "i", Decimal(2))


TIES = [
    record("z", 10, n=5),
    record("b", 20, n=Decimal("5.0")),
    record("a", 20, n=5),
    record("m", 5, n=1),
    record("y", 30, n=1),
    record("c", 20, n=2),
]


def test_max_ties_go_to_the_earliest_timestamp_then_smallest_event_id() -> None:
    assert explain_meter(spec("max"), TIES, START, END).decisive == Decisive(at(10), "z", 5)
    later = [r for r in TIES if r[1] != "z"]  # a and b tie at the same moment: smaller id
    assert explain_meter(spec("max"), later, START, END).decisive == Decisive(at(20), "a", 5)


def test_min_ties_go_to_the_earliest_timestamp() -> None:
    assert explain_meter(spec("min"), TIES, START, END).decisive == Decisive(at(5), "m", 1)


def test_last_ties_on_timestamp_go_to_the_greatest_event_id() -> None:
    same_moment = [r for r in TIES if r[0] == at(20)]
    assert explain_meter(spec("last"), same_moment, START, END).decisive == Decisive(at(20), "c", 2)
    assert explain_meter(spec("last"), TIES, START, END).decisive == Decisive(at(30), "y", 1)


@pytest.mark.parametrize("kind", ["max", "min", "last"])
def test_the_decisive_event_does_not_depend_on_arrival_order(kind) -> None:
    expected = explain_meter(spec(kind), TIES, START, END)
    for seed in range(20):
        shuffled = TIES[:]
        random.Random(seed).shuffle(shuffled)
        assert explain_meter(spec(kind), shuffled, START, END) == expected


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 20), st.integers(-5, 5)),
        max_size=40,
        unique_by=lambda t: t[1],
    ),
    st.sampled_from(["max", "min", "last"]),
)
def test_the_decisive_value_is_what_the_meter_measures(rows, kind) -> None:
    records = [record(f"e{i:02}", s, n=v) for s, i, v in rows]
    explained = explain_meter(spec(kind), records, START, END)
    assert explained.consumed == fold(spec(kind), records)
    assert explained.events_counted == len(records)
    if records:
        assert explained.decisive is not None
        assert explained.decisive.value == explained.consumed
        decided = (explained.decisive.timestamp, explained.decisive.event_id)
        assert decided in {(r[0], r[1]) for r in records}


def test_one_stream_explains_every_meter_and_is_read_once_across_chunks() -> None:
    total = CHUNK * 2 + 7
    reads = 0

    def stream() -> Iterator[UsageRecord]:
        nonlocal reads
        reads += 1
        for i in range(total):
            yield record(f"e{i:06}", i, n=i % 1000, tier="pro" if i % 2 else "free")

    specs = {
        "mtr_count": spec("count", filter_=TIER_PRO),
        "mtr_max": spec("max"),
        "mtr_last": spec("last"),
    }
    found = explain_meters(specs, stream(), START, END)
    assert reads == 1
    counted = found["mtr_count"]
    assert (counted.events_counted, counted.consumed) == (total // 2, total // 2)
    assert found["mtr_max"].decisive == Decisive(at(999), "e000999", Decimal(999))
    last = total - 1
    assert found["mtr_last"].decisive == Decisive(at(last), f"e{last:06}", Decimal(last % 1000))

"""Meter aggregations: every kind, the awkward values, empty results and partial tallies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

import pytest

from domain.errors import InvalidMeterError
from domain.metadata import MetadataValue
from domain.meter import (
    Aggregation,
    AggregationKind,
    Last,
    MeterSpec,
    Tally,
    UsageRecord,
    canonical_number,
    canonical_value,
    fold,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def spec(kind: str, key: str | None = None, filter_: Any = None) -> MeterSpec:
    return MeterSpec.parse("api", {"type": kind, "key": key}, filter_)


def events(*values: MetadataValue | None, key: str = "n") -> list[UsageRecord]:
    """One event a second, carrying ``values`` under ``key`` (None: the key is absent)."""
    return [
        (T0 + timedelta(seconds=i), f"e{i:03}", "api", {} if v is None else {key: v})
        for i, v in enumerate(values)
    ]


MIXED = events(3, Decimal("-1.5"), "7", True, None, Decimal("2.50"), 0)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("count", "7"),
        ("sum", "4"),
        ("max", "3"),
        ("min", "-1.5"),
        ("last", "0"),
        ("unique_count", "6"),
    ],
)
def test_each_aggregation_over_mixed_values(kind: str, expected: str) -> None:
    key = None if kind == "count" else "n"
    assert str(fold(spec(kind, key), MIXED)) == expected


@pytest.mark.parametrize("kind", ["sum", "max", "min", "last"])
def test_strings_that_look_like_numbers_and_booleans_are_not_measured(kind: str) -> None:
    assert fold(spec(kind, "n"), events("5", True, False, "1e3", None)) == 0
    assert spec(kind, "n").measure("api", {"n": "5"}) is None
    assert spec(kind, "n").measure("api", {"n": True}) is None


def test_count_counts_matching_events_whatever_their_metadata() -> None:
    only_eu = {"conjunction": "and", "clauses": [{"key": "r", "operator": "equals", "value": "eu"}]}
    records = events("eu", "us", "eu", None, key="r")
    assert fold(spec("count"), records) == 4
    assert fold(spec("count", None, only_eu), records) == 2


def test_other_event_names_are_not_measured() -> None:
    counted = spec("count")
    assert counted.measure("api", {}) == 1
    assert counted.measure("API", {}) is None
    assert fold(counted, [(T0, "e1", "other", {})]) == 0


def test_measure_returns_the_number_or_the_canonical_distinct_value() -> None:
    assert spec("sum", "n").measure("api", {"n": Decimal("2.50")}) == Decimal("2.5")
    assert spec("unique_count", "n").measure("api", {"n": Decimal("2.50")}) == "n:2.5"
    assert spec("unique_count", "n").measure("api", {"n": True}) == "b:true"
    assert spec("unique_count", "n").measure("api", {"m": 1}) is None


@pytest.mark.parametrize("kind", list(AggregationKind))
def test_no_events_measure_zero(kind: AggregationKind) -> None:
    meter = spec(kind.value, None if kind is AggregationKind.COUNT else "n")
    assert fold(meter, []) == 0
    assert Tally().result(meter.aggregation) == 0


def test_max_and_min_of_negative_values_stay_negative() -> None:
    records = events(-5, Decimal("-0.001"), -(10**40))
    assert fold(spec("max", "n"), records) == Decimal("-0.001")
    assert fold(spec("min", "n"), records) == -(10**40)


def test_last_takes_the_latest_timestamp_not_the_latest_arrival() -> None:
    records = [
        (T0 + timedelta(minutes=2), "a", "api", {"n": 2}),
        (T0 + timedelta(minutes=3), "b", "api", {"n": 3}),
        (T0 + timedelta(minutes=1), "c", "api", {"n": 1}),
    ]
    assert fold(spec("last", "n"), records) == 3
    assert fold(spec("last", "n"), reversed(records)) == 3


def test_last_on_a_tied_timestamp_takes_the_greatest_event_id() -> None:
    records = [
        (T0, "evt_b", "api", {"n": 20}),
        (T0, "evt_c", "api", {"n": 30}),
        (T0, "evt_a", "api", {"n": 10}),
    ]
    assert fold(spec("last", "n"), records) == 30
    assert fold(spec("last", "n"), records[::-1]) == 30


def test_last_of_a_repeated_event_id_takes_the_greater_value_in_any_order() -> None:
    # Ingest forbids a repeated id; should one slip through, the result is still order-free.
    records: list[UsageRecord] = [(T0, "e1", "api", {"n": 5}), (T0, "e1", "api", {"n": 7})]
    meter = spec("last", "n")
    assert fold(meter, records) == fold(meter, records[::-1]) == 7
    assert meter.tally(records[:1]).merge(meter.tally(records[1:])) == meter.tally(records[::-1])


def test_last_skips_a_later_event_without_a_number() -> None:
    assert fold(spec("last", "n"), events(1, 2, "3", None)) == 2


def test_forty_digit_values_and_extreme_exponents_sum_exactly() -> None:
    big = Decimal("9" * 40)
    records = events(big, big, Decimal("1E+40"), Decimal("1E-40"), Decimal("-1E+40"), 1)
    result = fold(spec("sum", "n"), records)
    assert result == Decimal(f"{2 * (10**40 - 1) + 1}.{'0' * 39}1")


def test_many_tiny_and_huge_values_sum_exactly() -> None:
    records = events(*([Decimal("1.234567890123456789012345678901234567890E-40")] * 1000), 10**40)
    expected_fraction = Decimal("1234.567890123456789012345678901234567890E-40")
    with localcontext(prec=200):
        assert fold(spec("sum", "n"), records) - 10**40 == expected_fraction


def test_results_are_canonical_whatever_the_spelling_of_inputs() -> None:
    assert str(fold(spec("sum", "n"), events(Decimal("1.50"), 2))) == "3.5"
    assert str(fold(spec("sum", "n"), events(Decimal("1E+3")))) == "1000"
    assert str(fold(spec("max", "n"), events(Decimal("7.000"), 7))) == "7"
    assert str(fold(spec("sum", "n"), events(Decimal("-0.0")))) == "0"
    assert str(fold(spec("sum", "n"), events(Decimal("0.1"), Decimal("-0.1")))) == "0"


def test_unique_count_compares_by_kind_and_value() -> None:
    same_number = events(1, Decimal("1.0"), Decimal("1E0"), Decimal("0.1E1"))
    assert fold(spec("unique_count", "n"), same_number) == 1
    kinds_apart = events(1, "1", True, "true", Decimal("1.5"), "1.5", False, 0)
    assert fold(spec("unique_count", "n"), kinds_apart) == 8
    assert fold(spec("unique_count", "n"), events("a", "A", "a", None)) == 2


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "n:1"),
        (Decimal("1.0"), "n:1"),
        (Decimal("1E0"), "n:1"),
        (Decimal("1E+3"), "n:1000"),
        (Decimal("-0.0"), "n:0"),
        (Decimal("-2.500"), "n:-2.5"),
        (Decimal("1.5E-5"), "n:0.000015"),
        ("abc", "s:abc"),
        ("1", "s:1"),
        ("", "s:"),
        (True, "b:true"),
        (False, "b:false"),
    ],
)
def test_canonical_values_are_json_safe_text(value: MetadataValue, text: str) -> None:
    assert canonical_value(value) == text


def test_canonical_numbers_spell_whole_numbers_with_exponent_zero() -> None:
    assert canonical_number(Decimal("1E+40")).as_tuple().exponent == 0
    assert canonical_number(Decimal("2.50")).as_tuple() == Decimal("2.5").as_tuple()
    assert canonical_number(7) == Decimal(7)


def test_a_tally_of_one_event_holds_every_statistic() -> None:
    tally = Tally.of(Decimal("2.50"), T0, "e1")
    value = Decimal("2.5")
    assert tally == Tally(1, value, value, value, Last(T0, "e1", value))
    assert Tally.of("s:x", T0, "e1") == Tally(1, distinct=frozenset({"s:x"}))


def test_adding_and_merging_tallies_agree_with_a_batch_tally() -> None:
    meter = spec("sum", "n")
    one_by_one = Tally()
    for at, event_id, name, metadata in MIXED:
        measured = meter.measure(name, metadata)
        if measured is not None:
            one_by_one = one_by_one.add(measured, at, event_id)
    assert one_by_one == meter.tally(MIXED)
    assert meter.tally(MIXED[:3]).merge(meter.tally(MIXED[3:])) == meter.tally(MIXED)


def test_the_empty_tally_is_the_identity_of_merge() -> None:
    tally = spec("max", "n").tally(MIXED)
    assert tally.merge(Tally()) is tally
    assert Tally().merge(tally) is tally


def test_specs_are_hashable_values_and_round_trip_their_wire_form() -> None:
    wire: dict[str, Any] = {
        "event_name": "api",
        "aggregation": {"type": "sum", "key": "n"},
        "filter": {
            "conjunction": "and",
            "clauses": [{"key": "n", "operator": "greater_than", "value": 0}],
        },
    }
    parsed = MeterSpec.parse(wire["event_name"], wire["aggregation"], wire["filter"])
    assert parsed.to_wire() == wire
    assert parsed == MeterSpec.parse("api", {"type": "sum", "key": "n"}, wire["filter"])
    assert len({parsed, spec("sum", "n"), spec("sum", "n")}) == 2
    assert spec("count").to_wire()["aggregation"] == {"type": "count", "key": None}


def test_aggregation_kinds_say_what_they_are() -> None:
    assert not AggregationKind.COUNT.needs_key()
    assert all(kind.needs_key() for kind in AggregationKind if kind is not AggregationKind.COUNT)
    assert AggregationKind.UNIQUE_COUNT.counts_distinct()
    assert not AggregationKind.LAST.is_order_free()
    assert AggregationKind.MAX.is_order_free()


def refusal(event_name: str, aggregation: object, filter_: object = None) -> str:
    with pytest.raises(InvalidMeterError) as caught:
        MeterSpec.parse(event_name, aggregation, filter_)
    assert caught.value.code == "invalid_meter"
    return caught.value.message


@pytest.mark.parametrize(
    ("event_name", "aggregation", "expected"),
    [
        (
            "api",
            {"type": "avg", "key": "n"},
            "aggregation.type: 'avg' is not one of: count, sum, max, min, last, unique_count",
        ),
        ("api", {"key": "n"}, "aggregation.type: null is not one of"),
        ("api", {"type": "sum"}, "aggregation.key: sum needs the metadata key it aggregates"),
        ("api", {"type": "last", "key": None}, "aggregation.key: last needs the metadata key"),
        (
            "api",
            {"type": "unique_count", "key": ""},
            "aggregation.key: a metadata key (a non-empty string) is required",
        ),
        (
            "api",
            {"type": "max", "key": "k" * 101},
            "aggregation.key: is longer than 100 characters",
        ),
        (
            "api",
            {"type": "count", "key": "n"},
            "aggregation.key: count counts events and takes no key; remove it",
        ),
        (
            "api",
            {"type": "count", "key": ""},
            "aggregation.key: count counts events and takes no key",
        ),
        ("api", {"type": "count", "unit": "n"}, "aggregation: unknown field 'unit'"),
        ("api", "count", "aggregation: must be an object, not 'count'"),
        ("", {"type": "count"}, "event_name: must be 1 to 255 characters, not blank"),
        ("  ", {"type": "count"}, "event_name: must be 1 to 255 characters"),
        ("e" * 256, {"type": "count"}, "event_name: must be 1 to 255 characters"),
    ],
)
def test_bad_definitions_are_refused_naming_the_path(
    event_name: str, aggregation: object, expected: str
) -> None:
    assert refusal(event_name, aggregation).startswith(expected)


def test_a_bad_filter_is_refused_with_its_path_through_the_spec() -> None:
    bad = {"conjunction": "and", "clauses": [{"key": "n", "operator": "gt", "value": 1}]}
    assert refusal("api", {"type": "count"}, bad).startswith("filter.clauses[0].operator:")


def test_aggregations_built_directly_are_checked_too() -> None:
    with pytest.raises(InvalidMeterError, match="sum needs"):
        Aggregation(AggregationKind.SUM)
    with pytest.raises(InvalidMeterError, match="takes no key"):
        Aggregation(AggregationKind.COUNT, "n")

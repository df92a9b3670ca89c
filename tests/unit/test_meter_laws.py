"""Laws of meters, with hypothesis: order-free folds, mergeable tallies, a naive reference.

The reference below is written from the rules in ``domain.filters`` and
``domain.meter`` docstrings, over the wire dicts, without using their code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from functools import reduce
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.metadata import MetadataValue
from domain.meter import AggregationKind, MeterSpec, Tally, UsageRecord, fold

T0 = datetime(2026, 11, 1, tzinfo=UTC)
KEYS = ["a", "b", "c"]
LAWS = settings(max_examples=200, deadline=None)

decimals = st.builds(
    lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
    st.integers(min_value=-(10**40) + 1, max_value=10**40 - 1),
    st.integers(min_value=-40, max_value=0),
).filter(lambda d: abs(d.adjusted()) <= 40)
numbers = st.one_of(
    st.sampled_from(
        [0, 1, -1, 2, Decimal("1.0"), Decimal("1E0"), Decimal("-2.50"), Decimal("0.1")]
    ),
    st.integers(min_value=-(10**40) + 1, max_value=10**40 - 1),
    decimals,
)
strings = st.sampled_from(["", "a", "ab", "B", "1", "true", "eu-west", "/v1/x"])
values: st.SearchStrategy[MetadataValue] = st.one_of(numbers, strings, st.booleans())
metadata = st.dictionaries(st.sampled_from(KEYS), values, max_size=3)


@st.composite
def records(draw: st.DrawFn) -> list[UsageRecord]:
    drawn = draw(
        st.lists(
            st.tuples(st.integers(0, 4), st.sampled_from(["api", "other"]), metadata), max_size=25
        )
    )
    # Few distinct timestamps, so that ``last`` is often decided by the event id.
    return [
        (T0 + timedelta(seconds=s), f"e{i:02}", name, md) for i, (s, name, md) in enumerate(drawn)
    ]


def condition(draw: st.DrawFn) -> dict[str, Any]:
    operator = draw(
        st.sampled_from(
            [
                "equals",
                "not_equals",
                "greater_than",
                "greater_than_or_equals",
                "less_than",
                "less_than_or_equals",
                "contains",
                "does_not_contain",
            ]
        )
    )
    if operator.startswith(("greater", "less")):
        value: Any = draw(numbers)
    elif "contain" in operator:
        value = draw(st.sampled_from(["", "a", "b", "1", "/v1/"]))
    else:
        value = draw(values)
    return {"key": draw(st.sampled_from(KEYS)), "operator": operator, "value": value}


@st.composite
def filters(draw: st.DrawFn, level: int = 1) -> dict[str, Any]:
    nested = level < 3 and draw(st.booleans())
    size = draw(st.integers(1, 3))
    return {
        "conjunction": draw(st.sampled_from(["and", "or"])),
        "clauses": [draw(filters(level + 1)) if nested else condition(draw) for _ in range(size)],
    }


@st.composite
def specs(draw: st.DrawFn) -> MeterSpec:
    kind = draw(st.sampled_from([kind.value for kind in AggregationKind]))
    key = None if kind == "count" else draw(st.sampled_from(KEYS))
    filter_ = draw(st.one_of(st.none(), filters()))
    return MeterSpec.parse("api", {"type": kind, "key": key}, filter_)


# The reference: plain, slow, independent.


def kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | Decimal) else "string"


REFERENCE_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": lambda x, v: x == v,
    "not_equals": lambda x, v: x != v,
    "greater_than": lambda x, v: x > v,
    "greater_than_or_equals": lambda x, v: x >= v,
    "less_than": lambda x, v: x < v,
    "less_than_or_equals": lambda x, v: x <= v,
    "contains": lambda x, v: v in x,
    "does_not_contain": lambda x, v: v not in x,
}


def reference_condition(clause: dict[str, Any], md: dict[str, MetadataValue]) -> bool:
    if clause["key"] not in md or kind_of(md[clause["key"]]) != kind_of(clause["value"]):
        return False
    stored: Any = md[clause["key"]]
    return REFERENCE_OPERATORS[clause["operator"]](stored, clause["value"])


def reference_filter(raw: dict[str, Any], md: dict[str, MetadataValue]) -> bool:
    outcomes = [
        reference_filter(c, md) if "conjunction" in c else reference_condition(c, md)
        for c in raw["clauses"]
    ]
    return all(outcomes) if raw["conjunction"] == "and" else any(outcomes)


def reference_fold(wire: dict[str, Any], events: list[UsageRecord]) -> Decimal:
    kind, key = wire["aggregation"]["type"], wire["aggregation"]["key"]
    chosen = [
        (at, event_id, dict(md))
        for at, event_id, name, md in events
        if name == wire["event_name"]
        and (wire["filter"] is None or reference_filter(wire["filter"], dict(md)))
    ]
    if kind == "count":
        return Decimal(len(chosen))
    if kind == "unique_count":
        present = [md[key] for _, _, md in chosen if key in md]
        return Decimal(
            len({(kind_of(v), v if isinstance(v, str) else Decimal(v)) for v in present})
        )
    measured = [
        (at, eid, Decimal(md[key]))
        for at, eid, md in chosen
        if kind_of(md.get(key, "")) == "number"
    ]
    if not measured:
        return Decimal(0)
    with localcontext(prec=500):
        return {
            "sum": lambda: sum((v for _, _, v in measured), Decimal(0)),
            "max": lambda: max(v for _, _, v in measured),
            "min": lambda: min(v for _, _, v in measured),
            "last": lambda: max(measured)[2],
        }[kind]()


@LAWS
@given(specs(), records())
def test_a_meter_measures_what_the_naive_reference_measures(
    spec: MeterSpec, events: list[UsageRecord]
) -> None:
    assert fold(spec, events) == reference_fold(spec.to_wire(), events)


@LAWS
@given(specs(), records(), st.randoms(use_true_random=False))
def test_the_fold_does_not_depend_on_the_order_of_events(
    spec: MeterSpec, events: list[UsageRecord], rnd: Any
) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert spec.tally(shuffled) == spec.tally(events)
    assert str(fold(spec, shuffled)) == str(fold(spec, events))


@LAWS
@given(specs(), records(), st.data())
def test_tallies_of_buckets_merge_into_the_tally_of_all(
    spec: MeterSpec, events: list[UsageRecord], data: st.DataObject
) -> None:
    buckets: list[list[UsageRecord]] = [[] for _ in range(4)]
    for event in events:
        buckets[data.draw(st.integers(0, 3))].append(event)
    order = data.draw(st.permutations(range(4)))
    merged = reduce(Tally.merge, (spec.tally(buckets[i]) for i in order), Tally())
    whole = spec.tally(events)
    assert merged == whole
    assert merged.result(spec.aggregation) == fold(spec, events)


@LAWS
@given(specs(), records())
def test_adding_one_event_at_a_time_equals_the_batch_tally(
    spec: MeterSpec, events: list[UsageRecord]
) -> None:
    tally = Tally()
    for at, event_id, name, md in events:
        measured = spec.measure(name, md)
        if measured is not None:
            tally = tally.add(measured, at, event_id)
    assert tally == spec.tally(events)


@settings(max_examples=100, deadline=None)
@given(specs(), records(), records(), records())
def test_merge_is_associative_commutative_with_an_identity(
    spec: MeterSpec, one: list[UsageRecord], two: list[UsageRecord], three: list[UsageRecord]
) -> None:
    a, b, c = spec.tally(one), spec.tally(two), spec.tally(three)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(b) == b.merge(a)
    assert a.merge(Tally()) == a == Tally().merge(a)


@LAWS
@given(specs())
def test_a_spec_round_trips_through_its_wire_form(spec: MeterSpec) -> None:
    wire = spec.to_wire()
    again = MeterSpec.parse(wire["event_name"], wire["aggregation"], wire["filter"])
    assert again == spec
    assert again.to_wire() == wire
    assert hash(again) == hash(spec)

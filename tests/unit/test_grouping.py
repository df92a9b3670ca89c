"""Grouping a meter's events by a metadata key: group values, per-group tallies, ranking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.grouping import (
    GroupBoundError,
    group_chunk,
    group_tallies,
    group_value,
    merge_all,
    rank_groups,
    tally_by_group,
)
from domain.metadata import MetadataValue
from domain.meter import Aggregation, AggregationKind, MeterSpec, Tally, UsageRecord
from tests.unit.test_meter_laws import KEYS, LAWS, records, specs

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SUM = MeterSpec.parse("api", {"type": "sum", "key": "tokens"}, None)
COUNT = MeterSpec.parse("api", {"type": "count"}, None)


def event(i: int, **metadata: MetadataValue) -> UsageRecord:
    return (T0 + timedelta(seconds=i), f"e{i:02}", "api", metadata)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("eu-west", "eu-west"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (7, "7"),
        (-3, "-3"),
        (Decimal("1.50"), "1.5"),
        (Decimal("1E+3"), "1000"),
        (Decimal("0.000001"), "0.000001"),
    ],
)
def test_a_group_is_named_by_the_canonical_text_of_the_value(
    value: MetadataValue, text: str
) -> None:
    assert group_value(value) == text


def test_one_and_one_point_zero_are_one_group() -> None:
    groups = group_tallies(
        COUNT, "model", [event(0, model=1), event(1, model=Decimal("1.0")), event(2, model=2)]
    )

    assert {g: t.count for g, t in groups.items()} == {"1": 2, "2": 1}


def test_events_lacking_the_key_form_the_group_none() -> None:
    groups = group_tallies(COUNT, "region", [event(0, region="eu"), event(1), event(2, other=1)])

    assert {g: t.count for g, t in groups.items()} == {"eu": 1, None: 2}


def test_events_the_meter_does_not_count_are_in_no_group() -> None:
    not_api: UsageRecord = (T0, "x", "other", {"region": "eu", "tokens": 5})
    no_tokens = event(1, region="us", tokens="many")

    groups = group_tallies(SUM, "region", [not_api, no_tokens, event(2, region="eu", tokens=3)])

    assert groups == {"eu": Tally().add(3, T0 + timedelta(seconds=2), "e02")}


def test_each_group_tallies_only_its_own_events() -> None:
    events = [event(0, region="eu", tokens=3), event(1, region="us", tokens=4)]
    events.append(event(2, region="eu", tokens=Decimal("0.5")))

    groups = group_tallies(SUM, "region", events)

    assert {g: t.result(SUM.aggregation) for g, t in groups.items()} == {
        "eu": Decimal("3.5"),
        "us": Decimal(4),
    }


@LAWS
@given(spec=specs(), events=records(), key=st.sampled_from(KEYS))
def test_merging_every_group_gives_the_ungrouped_tally(
    spec: MeterSpec, events: list[UsageRecord], key: str
) -> None:
    groups = group_tallies(spec, key, events)

    assert merge_all(groups.values()) == spec.tally(events)
    assert all(tally.count for tally in groups.values())


@LAWS
@given(spec=specs(), events=records(), key=st.sampled_from(KEYS))
def test_grouping_does_not_depend_on_the_order_of_events(
    spec: MeterSpec, events: list[UsageRecord], key: str
) -> None:
    assert group_tallies(spec, key, reversed(events)) == group_tallies(spec, key, events)


@LAWS
@given(spec=specs(), events=records(), key=st.sampled_from(KEYS))
def test_a_chunk_parted_first_groups_as_event_by_event(
    spec: MeterSpec, events: list[UsageRecord], key: str
) -> None:
    assert group_chunk(spec, key, events) == group_tallies(spec, key, events)


def tallies(**counts: int) -> dict[str | None, Tally]:
    return {g: Tally(count=n) for g, n in counts.items()}


COUNTING = Aggregation(AggregationKind.COUNT)


def test_groups_rank_by_result_then_by_value_text() -> None:
    ranking = rank_groups(tallies(b=2, a=2, c=5, d=1), COUNTING, limit=3)

    assert ranking.top == ("c", "a", "b")
    assert ranking.rest == frozenset({"d"})


def test_the_group_none_ranks_after_texts_of_equal_result() -> None:
    totals = {None: Tally(count=2), "": Tally(count=2), "z": Tally(count=2)}

    assert rank_groups(totals, COUNTING, limit=3).top == ("", "z", None)


def test_within_the_limit_there_is_no_rest() -> None:
    ranking = rank_groups(tallies(a=1, b=2), COUNTING, limit=2)

    assert ranking.top == ("b", "a")
    assert not ranking.has_rest


@LAWS
@given(spec=specs(), events=records(), key=st.sampled_from(KEYS), limit=st.integers(1, 4))
def test_top_groups_and_the_rest_merge_into_the_ungrouped_tally(
    spec: MeterSpec, events: list[UsageRecord], key: str, limit: int
) -> None:
    groups = group_tallies(spec, key, events)
    ranking = rank_groups(groups, spec.aggregation, limit)
    rest = merge_all(groups[g] for g in ranking.rest)

    assert merge_all([*(groups[g] for g in ranking.top), rest]) == spec.tally(events)
    assert len(ranking.top) == min(limit, len(groups))
    results = [groups[g].result(spec.aggregation) for g in ranking.top]
    assert results == sorted(results, reverse=True)
    assert all(groups[g].result(spec.aggregation) <= results[-1] for g in ranking.rest)


def test_more_groups_than_the_bound_is_refused_not_approximated() -> None:
    events = [event(i, region=f"r{i}") for i in range(4)]

    assert len(group_tallies(COUNT, "region", events[:3], max_groups=3)) == 3
    with pytest.raises(GroupBoundError, match="more than 3 groups"):
        group_tallies(COUNT, "region", events, max_groups=3)


def test_events_of_a_group_already_seen_do_not_count_against_the_bound() -> None:
    events = [event(i, region="eu") for i in range(5)]

    assert group_tallies(COUNT, "region", events, max_groups=1)["eu"].count == 5


def test_any_grouping_can_be_tallied_given_each_events_group() -> None:
    keyed = [("cus_a", event(0, tokens=2)), ("cus_b", event(1, tokens=3))]
    keyed.append(("cus_a", event(2, tokens=5)))

    groups = tally_by_group(SUM, keyed)

    assert {g: t.result(SUM.aggregation) for g, t in groups.items()} == {"cus_a": 7, "cus_b": 3}

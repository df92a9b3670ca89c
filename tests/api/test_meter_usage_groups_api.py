"""GET /meters/{id}/usage?group_by=...: a meter's value per window and group, the top ones.

Groups by a metadata key come from the usage log; groups by customer from the
hourly buckets and the log's partial hours. Both paths are used on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import TestClient

from application import usage_groups
from tests.api.helpers import assert_error, make_customer
from tests.api.test_meter_usage_api import DAY, SUM, define, ev, record, usage
from tests.api.test_meters_api import START, Store, module_store
from tests.conftest import STORES

HOURS = ("2026-11-25T09:30:00Z", "2026-11-25T11:15:00Z")  # cuts its first and last hour


@pytest.fixture(scope="module", params=STORES)
def store(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Store]:
    folder = tmp_path_factory.mktemp("usage-groups")
    with module_store(request.param, folder, backdate_window=timedelta(days=1200)) as shared:
        yield shared


@pytest.fixture
def api(store: Store) -> TestClient:
    """The module's client, acting for a new business: it sees no other test's events."""
    store.clock.now = START
    store.business, headers = store.new_business()
    store.client.headers.update(headers)
    return store.client


@pytest.fixture
def cid(api) -> str:
    return make_customer(api)


def grouped(client: TestClient, meter_id: str, group_by: str, *range_: str, **params: Any) -> Any:
    return usage(client, meter_id, *range_, group_by=group_by, **params)


def totals(answer: dict[str, Any]) -> dict[str | None, Any]:
    return {g["group"]: g["total"] for g in answer["groups"]}


def per_window(answer: dict[str, Any], group: str | None) -> list[Any]:
    return [
        next(g["value"] for g in item["groups"] if g["group"] == group) for item in answer["items"]
    ]


def regions(api: TestClient, cid: str, **counts: int) -> None:
    """``counts[region]`` events of ``n=1`` in that region, at 10:00 on the day."""
    events = [
        ev(cid, f"{region}-{i}", f"10:{i:02}", region=region, n=1)
        for region, count in counts.items()
        for i in range(count)
    ]
    record(api, *events)


# The answer


def test_the_grouped_answer_names_the_key_and_limit_and_splits_every_window(api, cid) -> None:
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "10:00", n=4, region="eu"), ev(cid, "e2", "11:00", n=1))
    answer = grouped(api, meter_id, "region", window="day", limit=5)
    assert answer == {
        "meter_id": meter_id,
        "customer_id": None,
        "start": "2026-11-25T00:00:00Z",
        "end": "2026-11-26T00:00:00Z",
        "window": "day",
        "aggregation": SUM,
        "group_by": "region",
        "limit": 5,
        "groups": [
            {"group": "eu", "total": 4, "event_count": 1},
            {"group": None, "total": 1, "event_count": 1},
        ],
        "other": None,
        "items": [
            {
                "start": "2026-11-25T00:00:00Z",
                "end": "2026-11-26T00:00:00Z",
                "value": 5,
                "event_count": 2,
                "groups": [
                    {"group": "eu", "value": 4, "event_count": 1},
                    {"group": None, "value": 1, "event_count": 1},
                ],
                "other": None,
            }
        ],
        "total": 5,
        "event_count": 2,
    }


def test_without_group_by_the_answer_has_no_group_fields(api, cid) -> None:
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "10:00", n=4, region="eu"))
    assert set(usage(api, meter_id)) == {
        "meter_id",
        "customer_id",
        "start",
        "end",
        "window",
        "aggregation",
        "items",
        "total",
        "event_count",
    }


def test_every_top_group_is_in_every_window_with_0_where_it_had_no_event(api, cid) -> None:
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "09:10", n=2, region="eu"), ev(cid, "e2", "11:10", n=3, region="us"))
    answer = grouped(
        api, meter_id, "region", "2026-11-25T09:00:00Z", "2026-11-25T12:00:00Z", window="hour"
    )
    assert per_window(answer, "us") == [0, 0, 3]
    assert per_window(answer, "eu") == [2, 0, 0]
    assert [item["value"] for item in answer["items"]] == [2, 0, 3]


def test_the_grouped_windows_add_up_to_the_ungrouped_answer(api, cid) -> None:
    meter_id = define(api, {"type": "max", "key": "n"})
    record(
        api,
        ev(cid, "e1", "09:20", n=9, region="eu"),
        ev(cid, "e2", "09:40", n=2, region="eu"),
        ev(cid, "e3", "10:30", n=5, region="us"),
        ev(cid, "e4", "10:50", n=7),
        ev(cid, "e5", "11:10", n=1, region="ap"),
    )
    plain = usage(api, meter_id, *HOURS, window="hour")
    for group_by in ("region", "customer_id"):
        answer = grouped(api, meter_id, group_by, *HOURS, window="hour", limit=1)
        windows = [(i["start"], i["end"], i["value"], i["event_count"]) for i in answer["items"]]
        assert windows == [
            (i["start"], i["end"], i["value"], i["event_count"]) for i in plain["items"]
        ]
        assert (answer["total"], answer["event_count"]) == (plain["total"], plain["event_count"])


# Group values


def test_events_lacking_the_key_form_the_group_null(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    record(api, ev(cid, "e1", "10:00", region="eu"), ev(cid, "e2", "10:01"), ev(cid, "e3", "10:02"))
    assert totals(grouped(api, meter_id, "region")) == {None: 2, "eu": 1}


def test_numbers_are_grouped_by_value_and_spelled_canonically(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    record(
        api,
        ev(cid, "e1", "10:00", tier=1),
        ev(cid, "e2", "10:01", tier=Decimal("1.0")),
        ev(cid, "e3", "10:02", tier=Decimal("2.50")),
        ev(cid, "e4", "10:03", tier=True),
    )
    assert totals(grouped(api, meter_id, "tier")) == {"1": 2, "2.5": 1, "true": 1}


def test_only_events_the_meter_counts_are_grouped(api, cid) -> None:
    meter_id = define(api, SUM)
    record(
        api,
        ev(cid, "e1", "10:00", n=3, region="eu"),
        ev(cid, "e2", "10:01", n="3", region="us"),
        ev(cid, "e3", "10:02", "api.other", n=3, region="ap"),
    )
    assert totals(grouped(api, meter_id, "region")) == {"eu": 3}


def test_a_range_that_cuts_hours_groups_only_the_events_inside_it(api, cid) -> None:
    meter_id = define(api, SUM)
    record(
        api,
        ev(cid, "e1", "09:29:59", n=100, region="eu"),
        ev(cid, "e2", "09:30", n=1, region="eu"),
        ev(cid, "e3", "10:30", n=2, region="eu"),
        ev(cid, "e4", "11:14:59", n=4, region="us"),
        ev(cid, "e5", "11:15", n=100, region="us"),
    )
    answer = grouped(api, meter_id, "region", *HOURS, window="hour")
    assert totals(answer) == {"eu": 3, "us": 4}
    assert per_window(answer, "eu") == [1, 2, 0]
    assert per_window(answer, "us") == [0, 0, 4]


def test_a_voided_event_leaves_its_group(api, cid) -> None:
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "10:00", n=5, region="eu"), ev(cid, "e2", "10:01", n=2, region="us"))
    assert api.post("/events/e1/void", json={"reason": "test"}).status_code == 200
    for group_by in ("region", "customer_id"):
        answer = grouped(api, meter_id, group_by)
        assert (answer["total"], answer["event_count"]) == (2, 1)
    assert totals(grouped(api, meter_id, "region")) == {"us": 2}


# Ranking, limit and other


def test_groups_rank_by_their_value_over_the_range_then_by_text(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    regions(api, cid, b=2, a=2, c=3, d=1)
    answer = grouped(api, meter_id, "region")
    assert [g["group"] for g in answer["groups"]] == ["c", "a", "b", "d"]


def test_the_groups_beyond_the_limit_are_merged_into_other(api, cid) -> None:
    meter_id = define(api, SUM)
    regions(api, cid, a=4, b=3, c=2, d=1)
    answer = grouped(api, meter_id, "region", limit=2)
    assert totals(answer) == {"a": 4, "b": 3}
    assert answer["other"] == {"group_count": 2, "total": 3, "event_count": 3}
    [item] = answer["items"]
    assert item["other"] == {"value": 3, "event_count": 3}
    assert item["value"] == 10


@pytest.mark.parametrize(
    ("aggregation", "other"),
    [
        ({"type": "max", "key": "n"}, 5),
        ({"type": "min", "key": "n"}, 2),
        ({"type": "last", "key": "n"}, 2),
        ({"type": "unique_count", "key": "n"}, 2),
        ({"type": "count"}, 3),
    ],
    ids=["max", "min", "last", "unique_count", "count"],
)
def test_other_is_the_aggregation_of_the_rest_not_a_sum_of_their_values(
    api, cid, aggregation, other
) -> None:
    meter_id = define(api, aggregation)
    record(
        api,
        ev(cid, "e1", "09:00", n=100, region="top"),
        ev(cid, "e2", "09:00", n=101, region="top"),
        ev(cid, "e3", "09:00", n=102, region="top"),
        ev(cid, "e4", "09:00", n=103, region="top"),
        ev(cid, "e5", "10:00", n=5, region="x"),
        ev(cid, "e6", "10:30", n=5, region="y"),
        ev(cid, "e7", "11:00", n=2, region="y"),
    )
    answer = grouped(api, meter_id, "region", limit=1)
    assert [g["group"] for g in answer["groups"]] == ["top"]
    assert answer["other"]["total"] == other
    assert answer["other"]["group_count"] == 2


def test_ten_groups_are_kept_by_default(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    regions(api, cid, **{f"r{i:02}": 1 for i in range(12)})
    answer = grouped(api, meter_id, "region")
    assert answer["limit"] == 10
    assert [g["group"] for g in answer["groups"]] == [f"r{i:02}" for i in range(10)]
    assert answer["other"]["group_count"] == 2


def test_a_limit_of_100_is_allowed(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    record(api, *(ev(cid, f"e{i}", f"10:{i % 60:02}", region=f"r{i:03}") for i in range(101)))
    answer = grouped(api, meter_id, "region", limit=100)
    assert len(answer["groups"]) == 100
    assert answer["other"] == {"group_count": 1, "total": 1, "event_count": 1}


# Grouping by customer


def test_group_by_customer_id_gives_the_top_customers_of_the_range(api, cid) -> None:
    bob, eve = make_customer(api, "bob@example.com"), make_customer(api, "eve@example.com")
    meter_id = define(api, SUM)
    shadowed = ev(cid, "e1", "09:40", n=1)
    shadowed["metadata"]["customer_id"] = "a metadata value, not the customer"
    record(
        api,
        shadowed,
        ev(bob, "e2", "10:10", n=5),
        ev(bob, "e3", "11:05", n=5),
        ev(eve, "e4", "11:10", n=20),
        ev(eve, "e5", "11:20", n=1000),
    )
    # The range cuts 09:xx and 11:xx: those hours come from the usage log, 10:xx from buckets.
    answer = grouped(api, meter_id, "customer_id", *HOURS, window="hour", limit=2)
    assert totals(answer) == {eve: 20, bob: 10}
    assert per_window(answer, bob) == [0, 5, 5]
    assert per_window(answer, eve) == [0, 0, 20]
    assert answer["other"] == {"group_count": 1, "total": 1, "event_count": 1}
    assert answer["group_by"] == "customer_id"


def test_group_by_a_key_with_a_customer_id_groups_that_customers_events(api, cid) -> None:
    bob = make_customer(api, "bob@example.com")
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "10:00", n=1, region="eu"), ev(bob, "e2", "10:00", n=7, region="eu"))
    answer = grouped(api, meter_id, "region", customer_id=bob)
    assert (totals(answer), answer["customer_id"]) == ({"eu": 7}, bob)


def test_another_business_events_are_in_no_group(api, store, cid) -> None:
    acme = store.new_business()[1]
    theirs = make_customer(api, headers=acme)
    meter_id = define(api, SUM)
    record(api, ev(theirs, "e1", "10:00", n=100, region="eu"), headers=acme)
    record(api, ev(cid, "e1", "10:00", n=1, region="eu"))
    for group_by, group in (("region", "eu"), ("customer_id", cid)):
        assert totals(grouped(api, meter_id, group_by)) == {group: 1}
        edge = grouped(api, meter_id, group_by, "2026-11-25T09:59:00Z", "2026-11-25T10:01:00Z")
        assert totals(edge) == {group: 1}


def test_another_business_meter_is_404_when_grouped(api, store) -> None:
    meter_id = define(api, SUM)
    acme = store.new_business()[1]
    response = api.get(
        f"/meters/{meter_id}/usage",
        params={"start": DAY[0], "end": DAY[1], "group_by": "region"},
        headers=acme,
    )
    assert_error(response, 404, "not_found")


# Bounds and bad parameters


def test_more_distinct_values_than_the_cap_is_refused(api, cid, monkeypatch) -> None:
    monkeypatch.setattr(usage_groups, "MAX_GROUPS", 3)
    meter_id = define(api, {"type": "count"})
    regions(api, cid, a=1, b=1, c=1)
    assert len(grouped(api, meter_id, "region")["groups"]) == 3
    regions(api, cid, d=1)
    response = api.get(
        f"/meters/{meter_id}/usage", params={"start": DAY[0], "end": DAY[1], "group_by": "region"}
    )
    body = assert_error(response, 422, "too_many_groups")
    assert body["detail"] == {"parameter": "group_by", "max_groups": 3}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": ""}, "group_by"),
        ({"group_by": "k" * 101}, "group_by"),
        ({"group_by": "region", "limit": 0}, "limit"),
        ({"group_by": "region", "limit": 101}, "limit"),
        ({"group_by": "region", "limit": "ten"}, "limit"),
        ({"limit": 5}, "limit"),
    ],
    ids=["key-empty", "key-too-long", "limit-0", "limit-101", "limit-not-a-number", "no-key"],
)
def test_bad_group_parameters_are_400_naming_the_field(api, params, field) -> None:
    meter_id = define(api, {"type": "count"})
    response = api.get(
        f"/meters/{meter_id}/usage", params={"start": DAY[0], "end": DAY[1], **params}
    )
    body = assert_error(response, 400, "invalid_parameter")
    named = body["detail"].get("parameter") or body["detail"]["errors"][0]["key"]
    assert named == field


def test_a_key_of_100_characters_is_allowed(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    key = "k" * 100
    record(api, ev(cid, "e1", "10:00", **{key: "v"}))
    assert totals(grouped(api, meter_id, key)) == {"v": 1}


def test_a_grouped_answer_holds_at_most_1000_windows(api) -> None:
    meter_id = define(api, {"type": "count"})
    params = {"start": "2026-01-01T00:00:00Z", "window": "hour", "group_by": "region"}
    ok = api.get(f"/meters/{meter_id}/usage", params={**params, "end": "2026-02-11T16:00:00Z"})
    assert len(json.loads(ok.text)["items"]) == 1000
    response = api.get(
        f"/meters/{meter_id}/usage", params={**params, "end": "2026-02-11T17:00:00Z"}
    )
    assert_error(response, 400, "invalid_parameter")


def test_grouped_usage_of_an_unknown_meter_is_404(api) -> None:
    response = api.get(
        "/meters/mtr_nope/usage", params={"start": DAY[0], "end": DAY[1], "group_by": "region"}
    )
    assert_error(response, 404, "not_found")

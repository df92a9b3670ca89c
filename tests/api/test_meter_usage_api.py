"""GET /meters/{id}/usage: every aggregation, filters, windows, re-measuring, bad parameters.

Answers are parsed with ``parse_float=Decimal`` so that exactness is checked on
the JSON text itself. The store's backdate window is wide, so events may lie days or months
before the fake clock's 12:00Z.

A range of whole hours is answered from the projection's hourly buckets; the
parts of a range that start or end inside an hour are folded from the event
index. Tests use both paths on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal, localcontext
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from tests.api.helpers import assert_error, make_customer
from tests.api.test_meters_api import START, Store, module_store
from tests.conftest import BOOTSTRAP_KEY, STORES

EXACT = msgspec.json.Encoder(decimal_format="number")
DAY = ("2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z")
SUM = {"type": "sum", "key": "n"}


@pytest.fixture(scope="module", params=STORES)
def store(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Store]:
    """A store that accepts events up to 1,200 days old, shared by the module's tests."""
    folder = tmp_path_factory.mktemp("usage")
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


def ev(customer_id: str, event_id: str, timestamp: str, name: str = "api.call", **metadata: Any):
    """An event; ``timestamp`` is a full ISO time or ``HH:MM[:SS]`` on 2026-11-25 (UTC)."""
    if "T" not in timestamp:
        timestamp = f"2026-11-25T{timestamp}Z"
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "event_name": name,
        "timestamp": timestamp,
        "metadata": metadata,
    }


def record(client: TestClient, *events: dict[str, Any], **kwargs: Any) -> None:
    """Ingest ``events`` (numbers sent exactly as written) and check all were taken."""
    response = client.post(
        "/events/ingest",
        content=EXACT.encode({"events": list(events)}),
        headers={"content-type": "application/json", **kwargs.pop("headers", {})},
    )
    assert response.status_code == 200, response.text
    assert response.json()["ingested_count"] == len(events), response.text


def define(client: TestClient, aggregation: dict[str, Any], **fields: Any) -> str:
    """Create a meter of ``api.call`` events and return its id."""
    payload = {
        "name": "m",
        "event_name": "api.call",
        "measurement_unit": "u",
        "aggregation": aggregation,
        **fields,
    }
    response = client.post(
        "/meters", content=EXACT.encode(payload), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    meter_id: str = response.json()["id"]
    return meter_id


def usage(
    client: TestClient,
    meter_id: str,
    start: str = DAY[0],
    end: str = DAY[1],
    window: str | None = None,
    **params: Any,
) -> dict[str, Any]:
    query = {"start": start, "end": end, **params}
    if window is not None:
        query["window"] = window
    response = client.get(f"/meters/{meter_id}/usage", params=query)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return answer


def total(client: TestClient, meter_id: str, *range_: str, **params: Any) -> Any:
    return usage(client, meter_id, *range_, **params)["total"]


def values(answer: dict[str, Any]) -> list[Any]:
    return [item["value"] for item in answer["items"]]


def where(*clauses: Any, conjunction: str = "and") -> dict[str, Any]:
    return {"conjunction": conjunction, "clauses": list(clauses)}


def clause(key: str, operator: str, value: Any) -> dict[str, Any]:
    return {"key": key, "operator": operator, "value": value}


# The answer


def test_the_answer_names_the_meter_range_window_and_aggregation(api, cid) -> None:
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "10:00", n=4))
    answer = usage(api, meter_id, window="day", customer_id=cid)
    assert answer == {
        "meter_id": meter_id,
        "customer_id": cid,
        "start": "2026-11-25T00:00:00Z",
        "end": "2026-11-26T00:00:00Z",
        "window": "day",
        "aggregation": SUM,
        "items": [
            {
                "start": "2026-11-25T00:00:00Z",
                "end": "2026-11-26T00:00:00Z",
                "value": 4,
                "event_count": 1,
            }
        ],
        "total": 4,
        "event_count": 1,
    }


def test_the_window_is_a_day_by_default(api) -> None:
    meter_id = define(api, {"type": "count"})
    answer = usage(api, meter_id, "2026-11-20T00:00:00Z", "2026-11-23T00:00:00Z")
    assert answer["window"] == "day"
    assert len(answer["items"]) == 3


def test_a_meter_with_no_events_measures_0_in_every_window(api) -> None:
    meter_id = define(api, {"type": "max", "key": "n"})
    answer = usage(api, meter_id, window="hour")
    assert len(answer["items"]) == 24
    assert set(values(answer)) == {0}
    assert (answer["total"], answer["event_count"]) == (0, 0)


# Every aggregation


def test_count_counts_the_events_of_the_meters_name(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    record(
        api,
        ev(cid, "e1", "09:00"),
        ev(cid, "e2", "10:30", n="x"),
        ev(cid, "e3", "11:59:59"),
        ev(cid, "e4", "10:00", name="api.other"),
    )
    answer = usage(api, meter_id)
    assert (answer["total"], answer["event_count"]) == (3, 3)


def test_sum_adds_the_key(api, cid) -> None:
    meter_id = define(api, SUM)
    record(
        api, ev(cid, "e1", "09:00", n=1), ev(cid, "e2", "10:00", n=2), ev(cid, "e3", "11:00", n=3)
    )
    assert total(api, meter_id) == 6


def test_a_decimal_sum_is_exact_in_the_json_answer(api, cid) -> None:
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "09:10", n=Decimal("0.1")), ev(cid, "e2", "10:20", n=Decimal("0.2")))
    response = api.get(f"/meters/{meter_id}/usage", params={"start": DAY[0], "end": DAY[1]})
    assert json.loads(response.text, parse_float=Decimal)["total"] == Decimal("0.3")
    assert '"total":0.3,' in response.text


def test_negative_and_big_decimals_stay_exact_across_hours_and_edges(api, cid) -> None:
    amounts = [
        Decimal("12345678901234567890.123456789012345678"),
        Decimal("-0.000000000000000000000000000001"),
        Decimal("-5"),
        Decimal("99999999999999999999999999999999999999"),
        Decimal("-12345678901234567890.123456789012345678"),
    ]
    meter_id = define(api, SUM)
    times = ["09:40", "10:05", "10:55", "11:30", "12:01"]
    record(
        api,
        *(ev(cid, f"e{i}", t, n=a) for i, (t, a) in enumerate(zip(times, amounts, strict=True))),
    )
    with localcontext(prec=200):
        expected = sum(amounts, Decimal(0))
    # 09:30 and 12:02 cut hours: the edges come from the usage log, the rest from buckets.
    answer = usage(api, meter_id, "2026-11-25T09:30:00Z", "2026-11-25T12:02:00Z", window="hour")
    assert answer["total"] == expected
    assert values(answer) == [
        Decimal("12345678901234567890.123456789012345678"),
        Decimal("-5.000000000000000000000000000001"),
        Decimal("99999999999999999999999999999999999999"),
        Decimal("-12345678901234567890.123456789012345678"),
    ]


def test_a_sum_is_spelled_canonically(api, cid) -> None:
    meter_id = define(api, SUM)
    record(
        api,
        ev(cid, "e1", "10:00", n=Decimal("1.50")),
        ev(cid, "e2", "10:01", n=Decimal("1E+3")),
        ev(cid, "e3", "10:02", n=2),
    )
    response = api.get(f"/meters/{meter_id}/usage", params={"start": DAY[0], "end": DAY[1]})
    assert '"total":1003.5,' in response.text


def test_max_and_min_handle_negative_numbers(api, cid) -> None:
    events = [
        ev(cid, "e1", "09:15", n=-3),
        ev(cid, "e2", "10:15", n=Decimal("-7.25")),
        ev(cid, "e3", "11:15", n=Decimal("2.5")),
    ]
    record(api, *events)
    assert total(api, define(api, {"type": "max", "key": "n"})) == Decimal("2.5")
    assert total(api, define(api, {"type": "min", "key": "n"})) == Decimal("-7.25")


def test_the_max_of_negative_numbers_is_negative_not_0(api, cid) -> None:
    record(api, ev(cid, "e1", "09:15", n=-3), ev(cid, "e2", "10:15", n=-1))
    assert total(api, define(api, {"type": "max", "key": "n"})) == -1


def test_the_min_of_positive_numbers_is_not_0(api, cid) -> None:
    record(api, ev(cid, "e1", "09:15", n=8), ev(cid, "e2", "10:15", n=3))
    assert total(api, define(api, {"type": "min", "key": "n"})) == 3


def test_last_is_the_value_of_the_latest_event_whatever_the_arrival_order(api, cid) -> None:
    meter_id = define(api, {"type": "last", "key": "n"})
    record(api, ev(cid, "late", "11:30", n=7))
    record(api, ev(cid, "early", "10:30", n=9))
    record(api, ev(cid, "middle", "11:00", n=8))
    assert total(api, meter_id) == 7


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [("b", "a", "b"), ("a", "b", "b"), ("e9", "e10", "e9")],
    ids=["later-id-first", "later-id-second", "ids-compare-as-text"],
)
def test_last_decides_a_timestamp_tie_by_the_greater_event_id(
    api, cid, first, second, winner
) -> None:
    meter_id = define(api, {"type": "last", "key": "n"})
    value = {"a": 1, "b": 2, "e9": 3, "e10": 4}
    record(api, ev(cid, first, "10:30", n=value[first]))
    record(api, ev(cid, second, "10:30", n=value[second]))
    assert total(api, meter_id) == value[winner]
    # The same tie folded from the usage log (a range that cuts the hour).
    assert total(api, meter_id, "2026-11-25T10:29:00Z", "2026-11-25T10:31:00Z") == value[winner]


def test_last_skips_events_whose_key_is_not_a_number(api, cid) -> None:
    meter_id = define(api, {"type": "last", "key": "n"})
    record(
        api,
        ev(cid, "e1", "10:00", n=5),
        ev(cid, "e2", "10:10", n="9"),
        ev(cid, "e3", "10:20", n=True),
        ev(cid, "e4", "10:30"),
    )
    answer = usage(api, meter_id)
    assert (answer["total"], answer["event_count"]) == (5, 1)


def test_last_is_the_same_from_buckets_and_from_edges(api, cid) -> None:
    meter_id = define(api, {"type": "last", "key": "n"})
    record(
        api, ev(cid, "e1", "09:50", n=1), ev(cid, "e2", "10:30", n=2), ev(cid, "e3", "11:10", n=3)
    )
    assert total(api, meter_id, "2026-11-25T09:45:00Z", "2026-11-25T11:15:00Z") == 3
    assert total(api, meter_id, "2026-11-25T09:45:00Z", "2026-11-25T11:05:00Z") == 2
    assert total(api, meter_id, "2026-11-25T09:00:00Z", "2026-11-25T10:00:00Z") == 1


def test_unique_count_tells_values_apart_by_kind_and_value(api, cid) -> None:
    meter_id = define(api, {"type": "unique_count", "key": "v"})
    record(
        api,
        ev(cid, "e1", "09:00", v=1),
        ev(cid, "e2", "09:30", v=Decimal("1.0")),
        ev(cid, "e3", "10:00", v="1"),
        ev(cid, "e4", "10:30", v=True),
        ev(cid, "e5", "11:00", v="a"),
        ev(cid, "e6", "11:30", v="a"),
        ev(cid, "e7", "11:45", v=False),
        ev(cid, "e8", "11:50"),
    )
    answer = usage(api, meter_id)
    # 1 and 1.0 are one value; "1", true, "a" and false are four more.
    assert (answer["total"], answer["event_count"]) == (5, 7)


def test_unique_count_counts_a_value_seen_in_several_hours_once(api, cid) -> None:
    meter_id = define(api, {"type": "unique_count", "key": "v"})
    record(
        api,
        ev(cid, "e1", "09:40", v="x"),
        ev(cid, "e2", "10:10", v="x"),
        ev(cid, "e3", "11:10", v="x"),
        ev(cid, "e4", "11:20", v="y"),
    )
    answer = usage(api, meter_id, "2026-11-25T09:30:00Z", "2026-11-25T11:15:00Z", window="hour")
    assert values(answer) == [1, 1, 1]
    assert answer["total"] == 1


def test_strings_that_look_like_numbers_are_not_summed(api, cid) -> None:
    meter_id = define(api, SUM)
    record(
        api,
        ev(cid, "e1", "10:00", n="5"),
        ev(cid, "e2", "10:01", n="5.0"),
        ev(cid, "e3", "10:02", n="1e3"),
        ev(cid, "e4", "10:03", n=2),
    )
    answer = usage(api, meter_id)
    assert (answer["total"], answer["event_count"]) == (2, 1)


@pytest.mark.parametrize("kind", ["sum", "max", "min", "last"])
def test_booleans_are_not_numbers(api, cid, kind) -> None:
    meter_id = define(api, {"type": kind, "key": "n"})
    record(
        api,
        ev(cid, "e1", "10:00", n=True),
        ev(cid, "e2", "10:01", n=True),
        ev(cid, "e3", "09:00", n=False),
    )
    answer = usage(api, meter_id)
    assert (answer["total"], answer["event_count"]) == (0, 0)


def test_an_event_without_the_key_does_not_count_but_count_counts_it(api, cid) -> None:
    record(api, ev(cid, "e1", "10:00", n=4), ev(cid, "e2", "10:01"), ev(cid, "e3", "10:02", m=9))
    summed = usage(api, define(api, SUM))
    assert (summed["total"], summed["event_count"]) == (4, 1)
    assert total(api, define(api, {"type": "count"})) == 3


@pytest.mark.parametrize("kind", ["count", "sum", "max", "min", "last", "unique_count"])
def test_every_aggregation_measures_0_when_no_event_counts(api, cid, kind) -> None:
    aggregation = {"type": kind} if kind == "count" else {"type": kind, "key": "n"}
    meter_id = define(api, aggregation, filter=where(clause("tier", "equals", "pro")))
    record(api, ev(cid, "e1", "10:00", n=5, tier="free"))
    answer = usage(api, meter_id, window="hour")
    assert answer["total"] == 0
    assert set(values(answer)) == {0}


# Filters


def count_with(api: TestClient, filter_: dict[str, Any]) -> Any:
    return total(api, define(api, {"type": "count"}, filter=filter_))


def test_equals_compares_strings_exactly(api, cid) -> None:
    record(
        api,
        ev(cid, "e1", "10:00", tier="pro"),
        ev(cid, "e2", "10:01", tier="Pro"),
        ev(cid, "e3", "10:02", tier="pro "),
    )
    assert count_with(api, where(clause("tier", "equals", "pro"))) == 1


def test_equals_a_number_matches_ints_and_decimals_but_not_text_or_booleans(api, cid) -> None:
    record(
        api,
        ev(cid, "e1", "10:00", n=1),
        ev(cid, "e2", "10:01", n=Decimal("1.00")),
        ev(cid, "e3", "10:02", n="1"),
        ev(cid, "e4", "10:03", n=True),
    )
    assert count_with(api, where(clause("n", "equals", 1))) == 2


def test_equals_true_matches_only_booleans(api, cid) -> None:
    record(
        api,
        ev(cid, "e1", "10:00", b=True),
        ev(cid, "e2", "10:01", b=1),
        ev(cid, "e3", "10:02", b="true"),
    )
    assert count_with(api, where(clause("b", "equals", True))) == 1


def test_not_equals_is_false_for_a_missing_key_or_another_kind(api, cid) -> None:
    record(
        api,
        ev(cid, "e1", "10:00", tier="pro"),
        ev(cid, "e2", "10:01", tier="free"),
        ev(cid, "e3", "10:02"),
        ev(cid, "e4", "10:03", tier=5),
    )
    assert count_with(api, where(clause("tier", "not_equals", "free"))) == 1


@pytest.mark.parametrize(
    ("value", "other", "wrong_kind"),
    [(5, 6, "6"), (True, False, 0)],
    ids=["number", "boolean"],
)
def test_not_equals_a_number_or_boolean_counts_only_the_same_kind(
    api, cid, value, other, wrong_kind
) -> None:
    record(
        api,
        ev(cid, "e1", "10:00", k=value),
        ev(cid, "e2", "10:01", k=other),
        ev(cid, "e3", "10:02", k=wrong_kind),
        ev(cid, "e4", "10:03"),
    )
    assert count_with(api, where(clause("k", "not_equals", value))) == 1


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("greater_than", 1),
        ("greater_than_or_equals", 3),
        ("less_than", 1),
        ("less_than_or_equals", 3),
    ],
)
def test_orderings_compare_numbers_only(api, cid, operator, expected) -> None:
    record(
        api,
        ev(cid, "e1", "10:00", n=1),
        ev(cid, "e2", "10:01", n=Decimal("2.5")),
        ev(cid, "e3", "10:02", n=Decimal("2.50")),
        ev(cid, "e4", "10:03", n=3),
        ev(cid, "e5", "10:04", n="3"),
        ev(cid, "e6", "10:05", n=True),
        ev(cid, "e7", "10:06"),
    )
    assert count_with(api, where(clause("n", operator, Decimal("2.5")))) == expected


@pytest.mark.parametrize(("operator", "expected"), [("contains", 2), ("does_not_contain", 2)])
def test_substring_operators_read_strings_only(api, cid, operator, expected) -> None:
    record(
        api,
        ev(cid, "e1", "10:00", model="gpt-4o"),
        ev(cid, "e2", "10:01", model="gpt-4o-mini"),
        ev(cid, "e3", "10:02", model="claude"),
        ev(cid, "e4", "10:03", model=5),
        ev(cid, "e5", "10:04"),
    )
    needle = "gpt" if operator == "contains" else "mini"
    assert count_with(api, where(clause("model", operator, needle))) == expected


def test_and_and_or_nest(api, cid) -> None:
    record(
        api,
        ev(cid, "e1", "09:10", tier="pro", n=20, region="us"),
        ev(cid, "e2", "09:20", tier="pro", n=5, region="us"),
        ev(cid, "e3", "10:10", tier="free", n=50, region="eu-west"),
        ev(cid, "e4", "10:20", tier="free", n=50, region="us"),
        ev(cid, "e5", "11:10", n=50),
    )
    filter_ = where(
        where(clause("tier", "equals", "pro"), clause("n", "greater_than", 10)),
        where(clause("region", "contains", "eu")),
        conjunction="or",
    )
    answer = usage(api, define(api, SUM, filter=filter_))
    assert (answer["total"], answer["event_count"]) == (70, 2)


def test_a_three_level_filter_is_applied(api, cid) -> None:
    record(
        api,
        ev(cid, "e1", "10:00", a=1, b=1, c=1),
        ev(cid, "e2", "10:01", a=1, b=0, c=1),
        ev(cid, "e3", "10:02", a=0, b=1, c=1),
        ev(cid, "e4", "10:03", a=1, b=0, c=0),
    )
    # a == 1 and (b == 1 or (c == 1 and b == 0))
    inner = where(clause("c", "equals", 1), clause("b", "equals", 0))
    middle = where(where(clause("b", "equals", 1)), inner, conjunction="or")
    filter_ = where(where(clause("a", "equals", 1)), middle)
    assert count_with(api, filter_) == 2


# What a meter measures, and when


def test_a_meter_created_after_its_events_counts_them(api, store, cid) -> None:
    record(api, ev(cid, "e1", "2026-11-20T10:00:00Z", n=3), ev(cid, "e2", "11:00", n=4))
    store.clock.advance(timedelta(hours=1))
    meter_id = define(api, SUM)
    assert total(api, meter_id, "2026-11-20T00:00:00Z", "2026-11-26T00:00:00Z") == 7


def test_an_event_ingested_after_the_meter_counts(api, cid) -> None:
    meter_id = define(api, SUM)
    assert total(api, meter_id) == 0
    record(api, ev(cid, "e1", "10:00", n=3))
    assert total(api, meter_id) == 3
    record(api, ev(cid, "e2", "10:30", n=4), ev(cid, "e3", "11:00", n=5))
    assert total(api, meter_id) == 12


def test_events_before_and_after_the_meter_add_up_in_one_bucket(api, cid) -> None:
    record(api, ev(cid, "e1", "10:05", n=1))
    meter_id = define(api, SUM)
    record(api, ev(cid, "e2", "10:10", n=2))
    answer = usage(api, meter_id, "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z", window="hour")
    assert (answer["total"], answer["event_count"]) == (3, 2)


def test_customer_id_narrows_the_usage_to_one_customer(api, cid) -> None:
    other = make_customer(api, email="bob@example.com", name="Bob")
    meter_id = define(api, SUM)
    record(
        api,
        ev(cid, "e1", "09:40", n=1),
        ev(other, "e2", "09:45", n=10),
        ev(cid, "e3", "10:40", n=2),
        ev(other, "e4", "10:45", n=20),
    )
    assert total(api, meter_id, customer_id=cid) == 3
    assert total(api, meter_id, customer_id=other) == 30
    assert total(api, meter_id) == 33
    # The same through edges: the range cuts both hours.
    assert (
        total(api, meter_id, "2026-11-25T09:42:00Z", "2026-11-25T10:42:00Z", customer_id=cid) == 2
    )
    assert total(api, meter_id, customer_id="cus_nobody") == 0


def test_usage_names_the_customer_it_was_asked_for(api, cid) -> None:
    meter_id = define(api, SUM)
    assert usage(api, meter_id, customer_id=cid)["customer_id"] == cid
    assert usage(api, meter_id)["customer_id"] is None


def test_another_business_events_are_not_measured(api, store, cid) -> None:
    acme = store.new_business()[1]
    theirs = make_customer(api, headers=acme)
    meter_id = define(api, SUM)
    record(api, ev(theirs, "e1", "10:00", n=100), headers=acme)
    record(api, ev(cid, "e1", "10:00", n=1))
    assert total(api, meter_id) == 1
    assert total(api, meter_id, "2026-11-25T09:59:00Z", "2026-11-25T10:01:00Z") == 1


def test_patching_the_aggregation_measures_the_old_events_again(api, cid) -> None:
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "09:00", n=4), ev(cid, "e2", "10:00", n=9))
    assert total(api, meter_id) == 13
    response = api.patch(f"/meters/{meter_id}", json={"aggregation": {"type": "max", "key": "n"}})
    assert response.status_code == 200, response.text
    answer = usage(api, meter_id)
    assert (answer["total"], answer["aggregation"]) == (9, {"type": "max", "key": "n"})
    record(api, ev(cid, "e3", "11:00", n=12))
    assert total(api, meter_id) == 12


def test_patching_the_filter_measures_again_both_ways(api, cid) -> None:
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "09:00", n=4, tier="pro"), ev(cid, "e2", "10:00", n=9, tier="free"))
    pro_only = {"filter": where(clause("tier", "equals", "pro"))}
    assert api.patch(f"/meters/{meter_id}", json=pro_only).status_code == 200
    assert total(api, meter_id) == 4
    assert api.patch(f"/meters/{meter_id}", json={"filter": None}).status_code == 200
    assert total(api, meter_id) == 13


def test_patching_the_event_name_measures_the_other_events(api, cid) -> None:
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "09:00", n=4), ev(cid, "e2", "10:00", "llm.call", n=9))
    assert api.patch(f"/meters/{meter_id}", json={"event_name": "llm.call"}).status_code == 200
    answer = usage(api, meter_id, window="hour")
    assert answer["total"] == 9
    assert answer["items"][9]["value"] == 0
    assert answer["items"][10]["value"] == 9


def test_a_meter_redefined_before_the_projection_saw_it_is_measured_by_the_new_definition(
    make_container,
) -> None:
    container = make_container(backdate_window=timedelta(days=1))
    with TestClient(create_app(container, follow=False)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {BOOTSTRAP_KEY}"
        customer = make_customer(test_client)
        record(test_client, ev(customer, "e1", "10:00", n=4), ev(customer, "e2", "11:00", n=9))
        meter_id = define(test_client, {"type": "count"})
        patched = test_client.patch(f"/meters/{meter_id}", json={"aggregation": SUM})
        assert patched.status_code == 200, patched.text
        # The projections start now, and meet the creation and the change in one batch.
        container.projector.start()
        assert total(test_client, meter_id) == 13
        record(test_client, ev(customer, "e3", "11:30", n=1))
        assert total(test_client, meter_id) == 14


def test_an_archived_meter_keeps_its_usage_readable_and_measured(api, cid) -> None:
    meter_id = define(api, SUM)
    record(api, ev(cid, "e1", "10:00", n=4))
    assert api.delete(f"/meters/{meter_id}").status_code == 204
    assert total(api, meter_id) == 4
    record(api, ev(cid, "e2", "11:00", n=5))
    assert total(api, meter_id) == 9
    assert api.post(f"/meters/{meter_id}/unarchive").status_code == 200
    assert total(api, meter_id) == 9


# Windows


def test_hour_windows_split_the_day(api, cid) -> None:
    meter_id = define(api, SUM)
    record(
        api,
        ev(cid, "e1", "09:00", n=1),
        ev(cid, "e2", "09:59:59.999999", n=2),
        ev(cid, "e3", "10:00", n=4),
        ev(cid, "e4", "11:30", n=8),
    )
    answer = usage(api, meter_id, "2026-11-25T09:00:00Z", "2026-11-25T12:00:00Z", window="hour")
    assert [(i["start"], i["end"]) for i in answer["items"]] == [
        ("2026-11-25T09:00:00Z", "2026-11-25T10:00:00Z"),
        ("2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z"),
        ("2026-11-25T11:00:00Z", "2026-11-25T12:00:00Z"),
    ]
    assert values(answer) == [3, 4, 8]
    assert [i["event_count"] for i in answer["items"]] == [2, 1, 1]


def test_day_windows_cut_at_utc_midnight(api, cid) -> None:
    meter_id = define(api, SUM)
    record(
        api,
        ev(cid, "e1", "2026-11-20T00:00:00Z", n=1),
        ev(cid, "e2", "2026-11-21T23:59:59.999999Z", n=2),
        ev(cid, "e3", "2026-11-22T00:00:00Z", n=4),
        ev(cid, "e4", "2026-11-22T01:00:00+02:00", n=8),
    )
    answer = usage(api, meter_id, "2026-11-20T00:00:00Z", "2026-11-23T00:00:00Z", window="day")
    assert [i["start"] for i in answer["items"]] == [
        "2026-11-20T00:00:00Z",
        "2026-11-21T00:00:00Z",
        "2026-11-22T00:00:00Z",
    ]
    # 01:00+02:00 on the 22nd is 23:00Z on the 21st.
    assert values(answer) == [1, 10, 4]


def test_month_windows_follow_the_calendar(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    record(
        api,
        ev(cid, "e1", "2026-01-31T23:59:59Z"),
        ev(cid, "e2", "2026-02-01T00:00:00Z"),
        ev(cid, "e3", "2026-02-28T23:00:00Z"),
        ev(cid, "e4", "2026-03-01T00:00:00Z"),
        ev(cid, "e5", "2026-04-30T23:59:59Z"),
        ev(cid, "e6", "2026-05-01T00:00:00Z"),
    )
    answer = usage(api, meter_id, "2026-01-01T00:00:00Z", "2026-05-01T00:00:00Z", window="month")
    assert [(i["start"], i["end"]) for i in answer["items"]] == [
        ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
        ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"),
        ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
        ("2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"),
    ]
    assert values(answer) == [1, 2, 1, 1]
    assert answer["total"] == 5


def test_a_leap_february_has_29_days(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    record(api, ev(cid, "e1", "2024-02-29T12:00:00Z"), ev(cid, "e2", "2024-03-01T00:00:00Z"))
    answer = usage(api, meter_id, "2024-02-01T00:00:00Z", "2024-04-01T00:00:00Z", window="month")
    assert [i["end"] for i in answer["items"]] == ["2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z"]
    assert values(answer) == [1, 1]


def test_month_windows_of_a_range_that_starts_and_ends_mid_month(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    record(
        api,
        ev(cid, "e1", "2026-01-15T06:29:59Z"),
        ev(cid, "e2", "2026-01-15T06:30:00Z"),
        ev(cid, "e3", "2026-02-14T00:00:00Z"),
        ev(cid, "e4", "2026-03-09T23:59:59Z"),
        ev(cid, "e5", "2026-03-10T00:00:00Z"),
    )
    answer = usage(api, meter_id, "2026-01-15T06:30:00Z", "2026-03-10T00:00:00Z", window="month")
    assert [(i["start"], i["end"]) for i in answer["items"]] == [
        ("2026-01-15T06:30:00Z", "2026-02-01T00:00:00Z"),
        ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"),
        ("2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z"),
    ]
    assert values(answer) == [1, 1, 1]


def test_a_range_that_starts_and_ends_mid_hour_is_exact(api, cid) -> None:
    meter_id = define(api, SUM)
    record(
        api,
        ev(cid, "e1", "09:29:59.999999", n=1),
        ev(cid, "e2", "09:30:00", n=2),
        ev(cid, "e3", "09:59:59", n=4),
        ev(cid, "e4", "10:30", n=8),
        ev(cid, "e5", "11:14:59.999999", n=16),
        ev(cid, "e6", "11:15:00", n=32),
    )
    # start is inclusive, end exclusive, to the microsecond.
    answer = usage(api, meter_id, "2026-11-25T09:30:00Z", "2026-11-25T11:15:00Z", window="hour")
    assert [(i["start"], i["end"]) for i in answer["items"]] == [
        ("2026-11-25T09:30:00Z", "2026-11-25T10:00:00Z"),
        ("2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z"),
        ("2026-11-25T11:00:00Z", "2026-11-25T11:15:00Z"),
    ]
    assert values(answer) == [6, 8, 16]
    assert (answer["total"], answer["event_count"]) == (30, 4)


def test_a_range_inside_one_hour_is_exact(api, cid) -> None:
    meter_id = define(api, SUM)
    record(
        api, ev(cid, "e1", "10:09", n=1), ev(cid, "e2", "10:10", n=2), ev(cid, "e3", "10:20", n=4)
    )
    answer = usage(api, meter_id, "2026-11-25T10:10:00Z", "2026-11-25T10:20:00Z", window="hour")
    assert [(i["start"], i["end"], i["value"]) for i in answer["items"]] == [
        ("2026-11-25T10:10:00Z", "2026-11-25T10:20:00Z", 2)
    ]


@pytest.mark.parametrize(
    ("start", "end", "window", "moment"),
    [
        ("2026-11-25T10:30:00Z", "2026-11-25T11:15:00Z", "hour", "11:05"),
        ("2026-11-24T23:30:00Z", "2026-11-25T00:30:00Z", "day", "00:10"),
    ],
    ids=["hour", "day"],
)
def test_a_short_range_across_a_window_boundary_puts_events_in_their_windows(
    api, cid, start, end, window, moment
) -> None:
    meter_id = define(api, {"type": "count"})
    record(api, ev(cid, "e1", moment))
    answer = usage(api, meter_id, start, end, window=window)
    assert answer["total"] == 1
    assert values(answer) == [0, 1]


def test_offsets_are_read_in_utc_and_answered_in_utc(api, cid) -> None:
    meter_id = define(api, {"type": "count"})
    record(api, ev(cid, "e1", "2026-11-24T23:00:00Z"), ev(cid, "e2", "2026-11-25T00:00:00Z"))
    answer = usage(api, meter_id, "2026-11-25T05:30:00+05:30", "2026-11-25T19:00:00-05:00")
    assert (answer["start"], answer["end"]) == ("2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z")
    assert answer["total"] == 1


def test_10000_hourly_windows_are_allowed(api) -> None:
    meter_id = define(api, {"type": "count"})
    answer = usage(api, meter_id, "2025-01-01T00:00:00Z", "2026-02-21T16:00:00Z", window="hour")
    assert len(answer["items"]) == 10_000


# Bad parameters


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"start": DAY[0], "end": DAY[0]}, 400, "invalid_parameter"),
        ({"start": DAY[1], "end": DAY[0]}, 400, "invalid_parameter"),
        ({"end": DAY[1]}, 400, "invalid_parameter"),
        ({"start": DAY[0]}, 400, "invalid_parameter"),
        ({"start": "2026-11-25T00:00:00", "end": DAY[1]}, 422, "invalid_timestamp"),
        ({"start": DAY[0], "end": "tomorrow"}, 422, "invalid_timestamp"),
        ({"start": "", "end": DAY[1]}, 422, "invalid_timestamp"),
        (
            {**dict(zip(("start", "end"), DAY, strict=True)), "window": "week"},
            400,
            "invalid_parameter",
        ),
        (
            {**dict(zip(("start", "end"), DAY, strict=True)), "window": "HOUR"},
            400,
            "invalid_parameter",
        ),
        (
            {"start": "2025-01-01T00:00:00Z", "end": "2026-02-21T17:00:00Z", "window": "hour"},
            400,
            "invalid_parameter",
        ),
        (
            {"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T00:00:00Z", "window": "month"},
            400,
            "invalid_parameter",
        ),
    ],
    ids=[
        "end-equals-start",
        "end-before-start",
        "start-missing",
        "end-missing",
        "start-without-zone",
        "end-not-a-time",
        "start-empty",
        "window-week",
        "window-in-capitals",
        "10001-hourly-windows",
        "too-many-months",
    ],
)
def test_bad_usage_parameters_are_4xx_with_a_code(api, params, status, code) -> None:
    meter_id = define(api, {"type": "count"})
    assert_error(api.get(f"/meters/{meter_id}/usage", params=params), status, code)


def test_usage_of_an_unknown_meter_is_404(api) -> None:
    response = api.get("/meters/mtr_nope/usage", params={"start": DAY[0], "end": DAY[1]})
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("start", "end", "window"),
    [
        ("9999-12-31T23:00:00Z", "9999-12-31T23:30:00Z", "hour"),
        ("9999-12-31T00:00:00Z", "9999-12-31T01:00:00Z", "day"),
        ("9999-12-01T00:00:00Z", "9999-12-02T00:00:00Z", "month"),
    ],
    ids=["hour", "day", "month"],
)
def test_a_range_at_the_end_of_the_calendar_is_not_a_500(api, start, end, window) -> None:
    meter_id = define(api, {"type": "count"})
    response = api.get(
        f"/meters/{meter_id}/usage", params={"start": start, "end": end, "window": window}
    )
    assert response.status_code < 500, response.text

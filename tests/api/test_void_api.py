"""POST /events/{event_id}/void: a usage event stops counting; nothing is deleted."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.usage import usage_event_id
from infrastructure.runtime import close_cycles
from tests.api.helpers import (
    assert_error,
    bearer,
    client_for,
    event,
    ingest,
    listed_ids,
    make_customer,
)
from tests.api.test_billing_api import meter, product, subscribe
from tests.api.test_invoices_api import send

NOON = "2026-11-25T12:00:00Z"


@pytest.fixture
def cid(client) -> str:
    return make_customer(client)


def void(client: Any, event_id: str, body: Any = None, **kwargs: Any) -> Any:
    if body is None:
        return client.post(f"/events/{event_id}/void", **kwargs)
    return client.post(f"/events/{event_id}/void", json=body, **kwargs)


def stored_versions(container: Any, event_id: str) -> int:
    return len(container.ledger.recorder.select_events(usage_event_id("default", event_id)))


def test_a_void_flags_the_event_and_keeps_it(client, container, clock, cid) -> None:
    ingest(client, event(cid, "e1", metadata={"n": 1}), event(cid, "e2"))
    clock.advance(timedelta(minutes=5))
    response = void(client, "e1", {"reason": "sent twice"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "business_id": "default",
        "customer_id": cid,
        "event_id": "e1",
        "event_name": "api.call",
        "timestamp": NOON,
        "metadata": {"n": 1},
        "voided": True,
        "voided_at": "2026-11-25T12:05:00Z",
        "void_reason": "sent twice",
    }
    assert client.get("/events/e1").json() == body
    listed = client.get("/events").json()["items"]
    assert [item["event_id"] for item in listed] == ["e2", "e1"]  # still listed, flagged
    assert listed[1] == body
    assert "voided" not in listed[0]  # an event not voided is exactly the SDK's shape
    assert listed_ids(client, voided="false") == ["e2"]
    assert listed_ids(client, voided="true") == ["e1"]
    assert stored_versions(container, "e1") == 2  # recorded, then voided: nothing deleted


def test_voiding_again_answers_the_first_void_and_appends_nothing(
    client, container, clock, cid
) -> None:
    ingest(client, event(cid, "e1"))
    first = void(client, "e1", {"reason": "mistake"})
    clock.advance(timedelta(hours=1))
    again = void(client, "e1", {"reason": "another reason"})
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert void(client, "e1").json() == first.json()
    assert stored_versions(container, "e1") == 2


def test_a_void_without_a_body_or_reason_has_no_reason(client, cid) -> None:
    ingest(client, event(cid, "e1"), event(cid, "e2"), event(cid, "e3"))
    assert "void_reason" not in void(client, "e1").json()
    assert "void_reason" not in void(client, "e2", {}).json()
    blank = void(client, "e3", {"reason": "  "}).json()
    assert blank["voided"] is True
    assert "void_reason" not in blank


def test_an_unknown_event_is_404(client, cid) -> None:
    ingest(client, event(cid, "e1"))
    assert_error(void(client, "nope"), 404, "not_found")
    assert_error(void(client, "e1/x"), 404, "not_found")


def test_another_business_cannot_void_or_see_the_event(client, container, clock, cid) -> None:
    ingest(client, event(cid, "e1"))
    other = bearer(container.keys.create("acme", "admin", clock.now))
    assert_error(void(client, "e1", {"reason": "x"}, headers=other), 404, "not_found")
    assert "voided" not in client.get("/events/e1").json()
    void(client, "e1")
    assert_error(client.get("/events/e1", headers=other), 404, "not_found")
    assert client.get("/events", headers=other).json()["items"] == []


def test_an_ingest_key_may_not_void(client, container, clock, cid) -> None:
    ingest(client, event(cid, "e1"))
    ingest_only = bearer(container.keys.create("default", "ingest", clock.now))
    assert_error(void(client, "e1", headers=ingest_only), 403, "forbidden")
    assert "voided" not in client.get("/events/e1").json()


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{", 400, "invalid_json"),
        (b'{"reason": 3}', 422, "invalid_request"),
        (b'{"why": "x"}', 422, "invalid_request"),
        (b'["x"]', 422, "invalid_request"),
        (b'"x"', 422, "invalid_request"),
        (json.dumps({"reason": "x" * 501}).encode(), 422, "invalid_void_reason"),
        (b'{"reason": "a\\u0000b"}', 422, "invalid_void_reason"),
    ],
)
def test_a_bad_body_is_refused_and_voids_nothing(client, cid, content, status, code) -> None:
    ingest(client, event(cid, "e1"))
    response = client.post(
        "/events/e1/void", content=content, headers={"content-type": "application/json"}
    )
    assert_error(response, status, code)
    assert "voided" not in client.get("/events/e1").json()


def test_a_reason_of_the_longest_length_is_kept(client, cid) -> None:
    ingest(client, event(cid, "e1"))
    assert void(client, "e1", {"reason": "é" * 500}).json()["void_reason"] == "é" * 500


@pytest.mark.parametrize("event_id", ["a/b", "a/void", "ingest", "ingest/void", "void", "x/y/z"])
def test_ids_holding_a_slash_or_a_route_word_are_voided(client, cid, event_id) -> None:
    ingest(client, event(cid, event_id), event(cid, "bystander"))
    response = void(client, event_id)
    assert response.status_code == 200, response.text
    assert response.json()["event_id"] == event_id
    # (GET /events/ingest is the ingest route's: the listing shows that event.)
    flagged = {
        item["event_id"]: item.get("voided") for item in client.get("/events").json()["items"]
    }
    assert flagged == {event_id: True, "bystander": None}


def test_an_id_holding_an_escaped_slash_is_voided(client, cid) -> None:
    ingest(client, event(cid, "a/b"))
    response = client.post("/events/a%2Fb/void")
    assert response.status_code == 200, response.text
    assert response.json()["event_id"] == "a/b"


def test_post_on_an_event_without_void_is_not_allowed(client, cid) -> None:
    ingest(client, event(cid, "e1"))
    assert_error(client.post("/events/e1"), 405, "method_not_allowed")
    assert "voided" not in client.get("/events/e1").json()


# What meters measure

DAY = {"start": "2026-11-25T00:00:00Z", "end": "2026-11-26T00:00:00Z"}
PARTIAL = {"start": "2026-11-25T10:30:00Z", "end": "2026-11-25T11:30:00Z"}


def measured(client: Any, meter_id: str, **range_: str) -> Any:
    response = client.get(f"/meters/{meter_id}/usage", params=range_ or DAY)
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)["total"]


@pytest.fixture
def usage_setup(make_container) -> Any:
    container = make_container(backdate_window=timedelta(days=2))
    with client_for(container) as client:
        cid = make_customer(client)
        timed = [("e1", "10:15", 5), ("e2", "10:45", 9), ("e3", "11:20", 7), ("e4", "11:40", 1)]
        response = ingest(
            client,
            *(
                event(cid, i, timestamp=f"2026-11-25T{at}:00Z", metadata={"n": n})
                for i, at, n in timed
            ),
        )
        assert response.json()["ingested_count"] == 4, response.text
        yield client


@pytest.mark.parametrize(
    ("aggregation", "before", "after"),
    [
        ({"type": "count"}, 4, 3),
        ({"type": "sum", "key": "n"}, 22, 13),
        ({"type": "max", "key": "n"}, 9, 7),
        ({"type": "min", "key": "n"}, 1, 1),
        ({"type": "last", "key": "n"}, 1, 1),
        ({"type": "unique_count", "key": "n"}, 4, 3),
    ],
)
def test_a_voided_event_no_longer_counts_for_a_meter(
    usage_setup, aggregation, before, after
) -> None:
    client = usage_setup
    meter_id = meter(client, "api.call", aggregation)
    assert measured(client, meter_id) == before
    void(client, "e2")  # the greatest value, in the middle of the day
    assert measured(client, meter_id) == after
    assert listed_ids(client, meter_id=meter_id) == ["e4", "e3", "e1"]


@pytest.mark.parametrize(
    ("aggregation", "after_whole_hours", "after_partial_hours"),
    [
        ({"type": "count"}, 3, 1),
        ({"type": "sum", "key": "n"}, 21, 9),
        ({"type": "max", "key": "n"}, 9, 9),
        ({"type": "min", "key": "n"}, 5, 9),
        ({"type": "last", "key": "n"}, 7, 9),
    ],
)
def test_voiding_the_last_event_changes_last_in_buckets_and_in_partial_hours(
    usage_setup, aggregation, after_whole_hours, after_partial_hours
) -> None:
    client = usage_setup
    meter_id = meter(client, "api.call", aggregation)
    void(client, "e4")  # the latest event and the least value
    assert measured(client, meter_id) == after_whole_hours
    void(client, "e3")  # partial range [10:30, 11:30) keeps only e2
    assert measured(client, meter_id, **PARTIAL) == after_partial_hours


def test_a_meter_defined_after_a_void_does_not_count_the_voided_event(usage_setup) -> None:
    client = usage_setup
    void(client, "e2")
    assert measured(client, meter(client, "api.call", {"type": "max", "key": "n"})) == 7
    assert measured(client, meter(client, "api.call", {"type": "count"})) == 3


# Invoices


@pytest.fixture
def billing(make_container, clock) -> Any:
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        product_id = product(client, [(calls, "2", 10)], fixed_price=100)
        start = clock.now - timedelta(days=35)
        response = subscribe(client, cid, product_id, start_date=start.isoformat())
        assert response.status_code == 200, response.text
        yield client, container, cid


def test_a_void_after_finalization_is_a_negative_adjustment_on_the_next_invoice(
    billing, clock
) -> None:
    client, container, cid = billing
    in_first_cycle = clock.now - timedelta(days=20)
    send(client, cid, in_first_cycle, [f"e{i}" for i in range(25)])
    [first] = close_cycles(container, catch_up=True)
    finalized = client.get(f"/invoices/{first.invoice_id}").json()
    assert finalized["total_minor"] == 100 + (25 - 10) * 2
    for event_id in ("e0", "e1", "e2"):
        assert void(client, event_id, {"reason": "test traffic"}).status_code == 200
    clock.advance(timedelta(days=31))
    send(client, cid, clock.now - timedelta(hours=1), ["now-1"])
    [second] = close_cycles(container, catch_up=True)
    # The finalized invoice never changes: same bytes, same hash, same total.
    assert client.get(f"/invoices/{first.invoice_id}").json() == finalized
    body = client.get(f"/invoices/{second.invoice_id}").json()
    [adjustment] = body["invoice"]["adjustments"]
    assert adjustment["lines"][0]["consumed"] == "-3"
    assert adjustment["lines"][0]["amount_minor"] == -6
    assert (adjustment["from_cut"], adjustment["to_cut"]) == (first.cut, second.cut)
    assert body["total_minor"] == 100 - 6  # nothing above 10 free in cycle 1
    # A third cycle carries nothing more: cycle 0 is now folded past the voids.
    clock.advance(timedelta(days=31))
    [third] = close_cycles(container, catch_up=True)
    assert client.get(f"/invoices/{third.invoice_id}").json()["invoice"]["adjustments"] == []


def test_a_void_before_finalization_is_simply_not_billed(billing, clock) -> None:
    client, container, cid = billing
    send(client, cid, clock.now - timedelta(days=20), [f"e{i}" for i in range(25)])
    void(client, "e0")
    [first] = close_cycles(container, catch_up=True)
    body = client.get(f"/invoices/{first.invoice_id}").json()
    assert body["invoice"]["lines"][0]["consumed"] == "24"
    assert body["total_minor"] == 100 + (24 - 10) * 2

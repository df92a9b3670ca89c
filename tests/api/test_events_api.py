"""GET /events/{id} and GET /events: retrieval, filters, time range, paging, bad parameters."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest

from tests.api.helpers import (
    assert_error,
    client_for,
    event,
    ingest,
    iso,
    listed_ids,
    make_customer,
)


@pytest.fixture
def cid(client) -> str:
    return make_customer(client)


def minutes_ago(clock, minutes: int) -> str:
    return iso(clock.now - timedelta(minutes=minutes))


def test_retrieve_returns_the_event_as_ingested(client, clock, cid) -> None:
    sent = event(
        cid,
        "e1",
        "llm.tokens",
        timestamp=minutes_ago(clock, 3),
        metadata={"tokens": 150, "model": "small"},
    )
    ingest(client, sent)
    response = client.get("/events/e1")
    assert response.status_code == 200
    assert response.json() == {
        "business_id": "default",
        "customer_id": cid,
        "event_id": "e1",
        "event_name": "llm.tokens",
        "timestamp": "2026-11-25T11:57:00Z",
        "metadata": {"tokens": 150, "model": "small"},
    }


def test_an_event_without_metadata_has_empty_metadata(client, cid) -> None:
    ingest(client, event(cid, "e1"))
    assert client.get("/events/e1").json()["metadata"] == {}


def test_retrieve_of_an_unknown_event_is_404_not_found(client) -> None:
    assert_error(client.get("/events/nope"), 404, "not_found")


def test_event_ids_with_reserved_url_characters_can_be_retrieved(client, cid) -> None:
    ids = ["a b", "q?x", "h#x", "é", "100%"]
    ingest(client, *[event(cid, i) for i in ids])
    for event_id in ids:
        response = client.get(f"/events/{quote(event_id, safe='')}")
        assert response.json()["event_id"] == event_id


def test_an_event_id_with_a_slash_can_be_retrieved(client, cid) -> None:
    assert ingest(client, event(cid, "a/b")).json()["ingested_count"] == 1
    assert client.get("/events/a%2Fb").json().get("event_id") == "a/b"


def test_list_filters_by_customer(client, cid) -> None:
    other = make_customer(client, "bob@example.com", "Bob")
    ingest(client, event(cid, "a1"), event(other, "b1"), event(cid, "a2"))
    assert sorted(listed_ids(client, customer_id=cid)) == ["a1", "a2"]
    assert listed_ids(client, customer_id=other) == ["b1"]
    assert listed_ids(client, customer_id="cus_nobody") == []


def test_list_filters_by_event_name(client, cid) -> None:
    ingest(
        client,
        event(cid, "c1", "api.call"),
        event(cid, "s1", "storage"),
        event(cid, "c2", "api.call"),
    )
    assert sorted(listed_ids(client, event_name="api.call")) == ["c1", "c2"]
    assert listed_ids(client, event_name="storage") == ["s1"]


def test_list_combines_customer_and_event_name(client, cid) -> None:
    other = make_customer(client, "bob@example.com", "Bob")
    ingest(client, event(cid, "a", "x"), event(cid, "b", "y"), event(other, "c", "x"))
    assert listed_ids(client, customer_id=cid, event_name="x") == ["a"]


def test_start_is_inclusive_and_end_exclusive(client, clock, cid) -> None:
    ingest(client, *[event(cid, f"m{m}", timestamp=minutes_ago(clock, m)) for m in (10, 20, 30)])
    ids = listed_ids(client, start=minutes_ago(clock, 20), end=minutes_ago(clock, 10))
    assert ids == ["m20"]
    assert listed_ids(client, start=minutes_ago(clock, 10)) == ["m10"]
    assert listed_ids(client, end=minutes_ago(clock, 20)) == ["m30"]


def test_start_and_end_with_an_offset_are_compared_in_utc(client, clock, cid) -> None:
    ingest(client, event(cid, "e", timestamp="2026-11-25T11:30:00Z"))
    assert listed_ids(client, start="2026-11-25T13:30:00+02:00") == ["e"]
    assert listed_ids(client, start="2026-11-25T13:30:01+02:00") == []


def test_list_is_newest_first_and_pages_are_0_based(client, clock, cid) -> None:
    ingest(client, *[event(cid, f"m{m}", timestamp=minutes_ago(clock, m)) for m in range(1, 6)])
    pages = [listed_ids(client, page_size=2, page_number=n) for n in range(4)]
    assert pages == [["m1", "m2"], ["m3", "m4"], ["m5"], []]


def test_list_default_page_size_is_10(client, cid) -> None:
    ingest(client, *[event(cid, f"e{i:02}") for i in range(12)])
    response = client.get("/events")
    assert len(response.json()["items"]) == 10


def test_list_items_have_the_event_shape(client, cid) -> None:
    ingest(client, event(cid, "e1", metadata={"k": "v"}))
    [item] = client.get("/events").json()["items"]
    assert item == client.get("/events/e1").json()


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": 0},
        {"page_size": 5000},
        {"page_size": "ten"},
        {"page_number": -1},
        {"start": "2026-11-25T12:00:00"},
        {"start": "yesterday"},
        {"end": "2026-11-25"},
        {"customer_id": "cus_\x00"},
        {"event_name": "api\x00call"},
    ],
    ids=[
        "page_size-0",
        "page_size-5000",
        "page_size-text",
        "page_number-negative",
        "start-without-zone",
        "start-garbage",
        "end-without-time-or-zone",
        "nul-in-customer_id",
        "nul-in-event_name",
    ],
)
def test_bad_list_parameters_are_4xx_with_a_code(client, params) -> None:
    response = client.get("/events", params=params)
    assert 400 <= response.status_code < 500
    assert response.json()["code"] in {"invalid_parameter", "invalid_timestamp"}


def test_a_start_at_the_edge_of_the_calendar_is_4xx(client) -> None:
    response = client.get("/events", params={"start": "0001-01-01T00:00:00+01:00"})
    assert 400 <= response.status_code < 500


def test_listing_keeps_up_after_an_event_with_a_nul_character(
    request, store_url, make_container, clock
) -> None:
    with client_for(make_container(read_wait_seconds=1.0)) as client:
        cid = make_customer(client)
        refused = ingest(client, event(cid, "nul", "api\x00call"))
        assert refused.status_code == 422
        assert [r["code"] for r in refused.json()["rejected"]] == ["invalid_event_name"]
        ingest(client, event(cid, "later", timestamp=minutes_ago(clock, 1)))
        assert "later" in listed_ids(client)

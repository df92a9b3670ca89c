"""POST /events/ingest: counts, idempotency, per-event rejections, whole-request errors."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

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


def test_ingest_reports_the_count_and_empty_lists(client, cid) -> None:
    response = ingest(client, event(cid, "e1"), event(cid, "e2"))
    assert response.status_code == 200
    assert response.json() == {"ingested_count": 2, "duplicates": [], "rejected": []}


def test_the_same_batch_again_is_all_duplicates(client, cid) -> None:
    batch = [event(cid, "e1"), event(cid, "e2"), event(cid, "e3")]
    ingest(client, *batch)
    again = ingest(client, *batch)
    assert again.status_code == 200
    assert again.json() == {
        "ingested_count": 0,
        "duplicates": [{"index": i, "event_id": f"e{i + 1}"} for i in range(3)],
        "rejected": [],
    }


def test_overlapping_batches_store_each_event_once(client, cid) -> None:
    ingest(client, *[event(cid, f"e{i}") for i in range(5)])
    second = ingest(client, *[event(cid, f"e{i}") for i in range(3, 8)]).json()
    assert second["ingested_count"] == 3
    assert second["duplicates"] == [{"index": 0, "event_id": "e3"}, {"index": 1, "event_id": "e4"}]
    assert sorted(listed_ids(client)) == [f"e{i}" for i in range(8)]


def test_a_duplicate_with_a_different_payload_keeps_the_first(client, cid) -> None:
    ingest(client, event(cid, "e1", metadata={"n": 1}))
    again = ingest(client, event(cid, "e1", event_name="other", metadata={"n": 2})).json()
    assert again["duplicates"] == [{"index": 0, "event_id": "e1"}]
    stored = client.get("/events/e1").json()
    assert (stored["event_name"], stored["metadata"]) == ("api.call", {"n": 1})


def test_unknown_customer_is_rejected_and_the_good_event_written(client, cid) -> None:
    body = ingest(client, event("cus_nobody", "bad"), event(cid, "good")).json()
    assert body["ingested_count"] == 1
    assert [(r["index"], r["event_id"], r["code"]) for r in body["rejected"]] == [
        (0, "bad", "unknown_customer")
    ]
    assert listed_ids(client) == ["good"]


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (-timedelta(hours=1, seconds=1), False),
        (-timedelta(hours=1), True),
        (timedelta(minutes=5), True),
        (timedelta(minutes=5, seconds=1), False),
    ],
    ids=["just-over-1h-old", "exactly-1h-old", "exactly-5min-ahead", "over-5min-ahead"],
)
def test_the_time_window_is_one_hour_back_and_five_minutes_ahead(
    client, clock, cid, offset, accepted
) -> None:
    body = ingest(client, event(cid, "t", timestamp=iso(clock.now + offset)), event(cid, "ok"))
    rejected = [(r["index"], r["code"]) for r in body.json()["rejected"]]
    assert rejected == ([] if accepted else [(0, "timestamp_out_of_window")])
    assert sorted(listed_ids(client)) == (["ok", "t"] if accepted else ["ok"])


@pytest.mark.parametrize("raw", ["2026-11-25T12:00:00", "garbage", "", "25/11/2026 12:00"])
def test_a_timestamp_without_zone_or_unparseable_is_invalid(client, cid, raw) -> None:
    body = ingest(client, event(cid, "t", timestamp=raw), event(cid, "ok")).json()
    assert [(r["index"], r["event_id"], r["code"]) for r in body["rejected"]] == [
        (0, "t", "invalid_timestamp")
    ]
    assert body["ingested_count"] == 1


def test_a_timestamp_at_the_edge_of_the_calendar_is_rejected_per_event(client, cid) -> None:
    body = ingest(client, event(cid, "t", timestamp="0001-01-01T00:00:00+01:00"), event(cid, "ok"))
    assert body.status_code == 200
    assert [r["code"] for r in body.json()["rejected"]] == ["invalid_timestamp"]


BAD_METADATA = {  # as JSON text, so a number can be spelled exactly
    "nested-object": '{"a": {"b": 1}}',
    "array": '{"a": [1, 2]}',
    "null-value": '{"a": null}',
    "51-keys": json.dumps({f"k{i}": i for i in range(51)}),
    "key-101-chars": json.dumps({"k" * 101: 1}),
    "empty-key": '{"": 1}',
    "string-501-chars": json.dumps({"a": "x" * 501}),
    "number-with-41-digits": '{"a": 0.' + "1" * 41 + "}",
    "nul-in-value": '{"a": "x\\u0000y"}',
    "integer-of-5000-digits": '{"a": ' + "9" * 5000 + "}",
    "not-an-object": "[1, 2]",
    "a-string": '"tokens=5"',
    "nul-in-key": '{"a\\u0000": 1}',
}


@pytest.mark.parametrize("metadata", BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_bad_metadata_is_rejected_per_event(client, cid, metadata) -> None:
    bad = json.dumps(event(cid, "m", metadata="@"), separators=(",", ":"))
    bad = bad.replace('"@"', metadata)
    text = f'{{"events":[{bad},{json.dumps(event(cid, "ok"))}]}}'
    body = client.post("/events/ingest", content=text.encode()).json()
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(0, "invalid_metadata")]
    assert listed_ids(client) == ["ok"]


def test_metadata_at_the_limits_is_accepted(client, cid) -> None:
    metadata = {f"k{i}": i for i in range(49)} | {"k" * 100: "x" * 500}
    assert ingest(client, event(cid, "m", metadata=metadata)).json()["ingested_count"] == 1


@pytest.mark.parametrize("event_id", ["", "   ", "a\x00b"])
def test_a_blank_event_id_is_rejected_per_event(client, cid, event_id) -> None:
    body = ingest(client, event(cid, event_id), event(cid, "ok")).json()
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(0, "invalid_event_id")]
    assert body["ingested_count"] == 1


def test_a_request_with_only_bad_events_answers_422_with_the_report(client, cid) -> None:
    response = ingest(client, event("cus_nobody", "a"), event(cid, "b", timestamp="nope"))
    assert response.status_code == 422
    body = response.json()
    assert (body["ingested_count"], body["duplicates"]) == (0, [])
    assert [(r["index"], r["event_id"], r["code"]) for r in body["rejected"]] == [
        (0, "a", "unknown_customer"),
        (1, "b", "invalid_timestamp"),
    ]
    assert all(r["message"] for r in body["rejected"])


def test_a_body_that_is_not_json_is_400_invalid_json(client) -> None:
    assert_error(client.post("/events/ingest", content=b"{not json"), 400, "invalid_json")
    assert listed_ids(client) == []


BAD_SHAPES = {
    "event-id-int": ({"event_id": 5, "customer_id": "c", "event_name": "n"}, ".event_id"),
    "customer-missing": ({"event_id": "x", "event_name": "n"}, ""),
    "timestamp-int": (event("c", "x", timestamp=1), ".timestamp"),
    "event-not-an-object": ("x", ""),
}


@pytest.mark.parametrize(("bad", "where"), BAD_SHAPES.values(), ids=BAD_SHAPES.keys())
def test_a_bad_event_shape_is_422_invalid_request_and_nothing_is_written(
    client, cid, bad, where
) -> None:
    response = client.post("/events/ingest", json={"events": [event(cid, "ok"), bad]})
    error = assert_error(response, 422, "invalid_request")
    assert error["detail"]["path"] == f"$.events[1]{where}"
    assert listed_ids(client) == []


@pytest.mark.parametrize(("body", "path"), [({}, "$"), ({"events": "x"}, "$.events"), ([], "$")])
def test_a_bad_body_shape_is_422_invalid_request_with_its_path(client, body, path) -> None:
    error = assert_error(client.post("/events/ingest", json=body), 422, "invalid_request")
    assert error["detail"]["path"] == path


@pytest.mark.parametrize("count", [0, 1001])
def test_a_batch_of_0_or_1001_events_is_refused_whole(client, cid, count) -> None:
    response = ingest(client, *[event(cid, f"e{i}") for i in range(count)])
    assert assert_error(response, 422, "batch_size_out_of_range")["detail"]["count"] == count
    assert listed_ids(client) == []


def test_1000_events_are_accepted(client, cid) -> None:
    body = ingest(client, *[event(cid, f"e{i}") for i in range(1000)]).json()
    assert body["ingested_count"] == 1000


def test_the_same_event_id_twice_in_a_request_is_refused_whole(client, cid) -> None:
    response = ingest(client, event(cid, "a"), event(cid, "b"), event(cid, "a"))
    error = assert_error(response, 422, "duplicate_event_id_in_request")
    assert error["detail"] == {"index": 2, "event_id": "a"}
    assert listed_ids(client) == []


def test_a_body_over_the_limit_is_413_and_nothing_is_written(make_container) -> None:
    with client_for(make_container(max_body_bytes=2000)) as small:
        customer = make_customer(small)
        response = ingest(small, *[event(customer, f"e{i}") for i in range(40)])
        assert_error(response, 413, "request_too_large")
        assert listed_ids(small) == []


def test_metadata_numbers_are_kept_exactly(client, cid) -> None:
    sent = '{"tenth":0.1,"big":12345678901234567890,"pi":3.14159265358979323846,"two":1.10}'
    raw = f'{{"events":[{{"event_id":"n","customer_id":"{cid}","event_name":"x",'
    raw += f'"metadata":{sent}}}]}}'
    assert client.post("/events/ingest", content=raw.encode()).json()["ingested_count"] == 1
    for text in (client.get("/events/n").text, client.get("/events").text):
        assert '"tenth":0.1' in text
        assert "0.1000000000000000055511151231257827" not in text
        body = json.loads(text, parse_float=Decimal)
        metadata = body.get("metadata") or body["items"][0]["metadata"]
        assert metadata["big"] == 12345678901234567890
        assert metadata["pi"] == Decimal("3.14159265358979323846")
        assert str(metadata["two"]) == "1.10"


def test_booleans_stay_booleans_and_numeric_strings_stay_strings(client, cid) -> None:
    metadata = {"flag": True, "off": False, "count": "150", "rate": "0.1", "one": 1}
    ingest(client, event(cid, "b", metadata=metadata))
    stored = client.get("/events/b").json()["metadata"]
    assert stored == metadata
    assert stored["flag"] is True
    assert stored["off"] is False
    assert type(stored["one"]) is int


def test_a_missing_timestamp_is_the_receive_time(client, clock, cid) -> None:
    clock.advance(timedelta(minutes=7, seconds=3, microseconds=250))
    ingest(client, event(cid, "now"))
    assert client.get("/events/now").json()["timestamp"] == "2026-11-25T12:07:03.000250Z"


def test_a_timestamp_with_an_offset_is_stored_in_utc(client, cid) -> None:
    ingest(client, event(cid, "tz", timestamp="2026-11-25T13:30:00+02:00"))
    assert client.get("/events/tz").json()["timestamp"] == "2026-11-25T11:30:00Z"


def test_events_older_than_the_default_window_are_rejected(client, clock, cid) -> None:
    old = iso(clock.now - timedelta(days=300))
    body = ingest(client, event(cid, "old", timestamp=old)).json()
    assert [r["code"] for r in body["rejected"]] == ["timestamp_out_of_window"]


def test_a_wider_backdate_window_accepts_older_events(make_container, clock) -> None:
    with client_for(make_container(backdate_window=timedelta(days=400))) as wide:
        customer = make_customer(wide)
        old = iso(clock.now - timedelta(days=300))
        body = ingest(wide, event(customer, "old", timestamp=old)).json()
        assert (body["ingested_count"], body["rejected"]) == (1, [])
        assert wide.get("/events/old").json()["timestamp"] == "2026-01-29T12:00:00Z"


@pytest.mark.parametrize(
    "metadata",
    ['{"a": 1e99999999999999999999}', '{"a": -1e-99999999999999999999}'],
    ids=["exponent-beyond-decimal", "negative-exponent-beyond-decimal"],
)
def test_metadata_no_decoder_can_hold_rejects_only_its_event(client, cid, metadata) -> None:
    bad = json.dumps(event(cid, "m", metadata="@"), separators=(",", ":")).replace('"@"', metadata)
    text = f'{{"events":[{bad},{json.dumps(event(cid, "ok"))}]}}'
    response = client.post("/events/ingest", content=text.encode())
    assert response.status_code == 200
    assert [(r["index"], r["code"]) for r in response.json()["rejected"]] == [
        (0, "invalid_metadata")
    ]


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (
            "/customers",
            b'{"email": "a@b.co", "name": "A", "metadata": {"x": 1e99999999999999999999}}',
        ),
        ("/events/ingest", b'{"events": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        (
            "/meters",
            b'{"name": "m", "event_name": "e", "measurement_unit": "u", '
            b'"aggregation": {"type": "count"}, "filter": 1e99999999999999999999}',
        ),
    ],
    ids=["customer-huge-exponent", "ingest-deep-nesting", "meter-huge-exponent"],
)
def test_bodies_no_decoder_can_hold_are_4xx_not_500(client, path, text) -> None:
    response = client.post(path, content=text)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["code"] in {"invalid_request", "invalid_json"}

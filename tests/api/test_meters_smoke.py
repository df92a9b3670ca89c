"""A first walk through meters: define after the events, read the usage back."""

from __future__ import annotations

from tests.api.helpers import make_customer


def test_a_meter_made_after_its_events_counts_them(client, clock) -> None:
    cid = make_customer(client)
    now = clock()
    events = [
        {
            "event_id": f"e{i}",
            "customer_id": cid,
            "event_name": "api.call",
            "timestamp": (now.replace(minute=0, second=0, microsecond=0)).isoformat(),
            "metadata": {"tokens": i, "tier": "pro" if i % 2 else "free"},
        }
        for i in range(10)
    ]
    assert client.post("/events/ingest", json={"events": events}).status_code == 200
    response = client.post(
        "/meters",
        json={
            "name": "Pro tokens",
            "event_name": "api.call",
            "measurement_unit": "tokens",
            "aggregation": {"type": "sum", "key": "tokens"},
            "filter": {
                "conjunction": "and",
                "clauses": [{"key": "tier", "operator": "equals", "value": "pro"}],
            },
        },
    )
    assert response.status_code == 200, response.text
    meter = response.json()
    usage = client.get(
        f"/meters/{meter['id']}/usage",
        params={
            "start": "2026-11-25T00:00:00Z",
            "end": "2026-11-26T00:00:00Z",
            "window": "hour",
            "customer_id": cid,
        },
    )
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["total"] == 1 + 3 + 5 + 7 + 9
    assert body["event_count"] == 5
    assert len(body["items"]) == 24
    partial = client.get(
        f"/meters/{meter['id']}/usage",
        params={"start": "2026-11-25T12:00:00Z", "end": "2026-11-25T12:15:00Z"},
    ).json()
    assert partial["total"] == 25
    assert [m["id"] for m in client.get("/meters").json()["items"]] == [meter["id"]]


def test_events_lists_what_a_meter_counts_page_by_page(client) -> None:
    cid = make_customer(client)
    events = [
        {
            "event_id": f"e{i:02d}",
            "customer_id": cid,
            "event_name": "api.call" if i % 3 else "other",
            "metadata": {"tier": "pro" if i % 2 else "free"},
        }
        for i in range(30)
    ]
    client.post("/events/ingest", json={"events": events})
    meter = client.post(
        "/meters",
        json={
            "name": "Pro calls",
            "event_name": "api.call",
            "measurement_unit": "calls",
            "aggregation": {"type": "count"},
            "filter": {
                "conjunction": "and",
                "clauses": [{"key": "tier", "operator": "equals", "value": "pro"}],
            },
        },
    ).json()
    expected = sorted(
        (
            e["event_id"]
            for e in events
            if e["event_name"] == "api.call" and int(e["event_id"][1:]) % 2
        ),
        reverse=True,
    )
    pages = [
        [
            i["event_id"]
            for i in client.get(
                "/events", params={"meter_id": meter["id"], "page_size": 4, "page_number": n}
            ).json()["items"]
        ]
        for n in range(4)
    ]
    assert [i for page in pages for i in page] == expected
    assert client.get("/events", params={"meter_id": "mtr_nope"}).status_code == 404
    assert (
        client.get("/events", params={"meter_id": meter["id"], "event_name": "other"}).json()[
            "items"
        ]
        == []
    )


def test_a_billed_meter_keeps_its_definition_but_may_be_renamed(client, container, clock) -> None:
    meter = client.post(
        "/meters",
        json={
            "name": "Calls",
            "event_name": "api.call",
            "measurement_unit": "calls",
            "aggregation": {"type": "count"},
        },
    ).json()
    container.ledger.lock_meter("default", meter["id"], "invoice inv_1", clock())
    changed = client.patch(
        f"/meters/{meter['id']}", json={"aggregation": {"type": "sum", "key": "n"}}
    )
    assert changed.status_code == 409
    assert changed.json()["code"] == "meter_definition_locked"
    renamed = client.patch(f"/meters/{meter['id']}", json={"name": "API calls"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "API calls"
    assert renamed.json()["aggregation"] == {"type": "count", "key": None}

"""The dashboard's events pages over HTTP: browse with filters, void with a reason."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from tests.api.dashboard_helpers import api_client, dashboard, sign_in, submit
from tests.api.helpers import event, ingest, make_customer

__all__ = ["api_client", "dashboard"]

Client = TestClient  # type: ignore[type-arg]


def rows(page: str) -> list[str]:
    """The event ids of the table on an events page, in order."""
    return re.findall(r"<tr>\s*<td><code>([^<]+)</code>", page)


@pytest.fixture
def customers(api_client: Client) -> tuple[str, str]:
    ada = make_customer(api_client, "ada@example.com", "Ada")
    bob = make_customer(api_client, "bob@example.com", "Bob")
    answer = ingest(
        api_client,
        event(ada, "a1", timestamp="2026-11-25T11:10:00Z", metadata={"tokens": 12, "ok": True}),
        event(ada, "a2", "file.upload", timestamp="2026-11-25T11:30:00Z"),
        event(bob, "b1", timestamp="2026-11-25T11:50:00Z", metadata={"region": "eu"}),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["ingested_count"] == 3, answer.text
    return ada, bob


def test_the_events_page_lists_the_events_newest_first(
    dashboard: Client, customers: tuple[str, str]
) -> None:
    ada, _ = customers
    page = dashboard.get("/dashboard/events")
    assert page.status_code == 200, page.text
    assert rows(page.text) == ["b1", "a2", "a1"]
    assert f'href="/dashboard/customers/{ada}"' in page.text
    assert "<code>tokens=12</code> <code>ok=true</code>" in page.text
    assert "<code>region=eu</code>" in page.text
    assert "25 Nov 2026, 11:10 UTC" in page.text
    assert 'class="filters"' in page.text
    assert 'href="/dashboard/events/void?event_id=a1"' in page.text


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({"event_name": "file.upload"}, ["a2"]),
        ({"start": "2026-11-25T11:20", "end": "2026-11-25T11:40"}, ["a2"]),
        ({"start": "2026-11-25T12:25:00+01:00"}, ["b1", "a2"]),  # 11:25 UTC
        ({"end": "2026-11-25T11:30"}, ["a1"]),
    ],
)
def test_the_filters_narrow_the_list(
    dashboard: Client, customers: tuple[str, str], params: dict[str, str], shown: list[str]
) -> None:
    page = dashboard.get("/dashboard/events", params=params)
    assert page.status_code == 200, page.text
    assert rows(page.text) == shown
    for value in params.values():
        assert f'value="{value}"' in page.text  # the filter bar keeps what was entered


def test_the_customer_filter_and_the_voided_filter(
    dashboard: Client, api_client: Client, customers: tuple[str, str]
) -> None:
    ada, bob = customers
    assert rows(dashboard.get("/dashboard/events", params={"customer_id": ada}).text) == [
        "a2",
        "a1",
    ]
    assert api_client.post("/events/a2/void", json={"reason": "test"}).status_code == 200
    only = dashboard.get("/dashboard/events", params={"voided": "only"})
    assert rows(only.text) == ["a2"]
    assert 'voided</span> <span class="muted">test</span>' in only.text
    assert rows(dashboard.get("/dashboard/events", params={"voided": "not"}).text) == ["b1", "a1"]
    assert rows(dashboard.get("/dashboard/events", params={"voided": "all"}).text) == [
        "b1",
        "a2",
        "a1",
    ]
    none = dashboard.get("/dashboard/events", params={"customer_id": bob, "voided": "only"})
    assert rows(none.text) == []
    assert "No events match these filters" in none.text


def test_with_no_events_the_page_says_how_to_send_them(dashboard: Client) -> None:
    page = dashboard.get("/dashboard/events")
    assert page.status_code == 200
    assert "No events yet" in page.text
    assert "POST /events/ingest" in page.text


def test_a_start_that_is_not_a_date_is_refused_next_to_the_filter(
    dashboard: Client, customers: tuple[str, str]
) -> None:
    page = dashboard.get("/dashboard/events", params={"start": "yesterday", "event_name": "x"})
    assert page.status_code == 422
    assert re.search(
        r'id="start-error" role="alert">start: &#39;yesterday&#39; is not a date', page.text
    )
    assert 'value="yesterday"' in page.text
    assert rows(page.text) == []
    backwards = dashboard.get(
        "/dashboard/events", params={"start": "2026-11-25T12:00", "end": "2026-11-25T11:00"}
    )
    assert backwards.status_code == 422
    assert 'id="end-error" role="alert">end: must be after start' in backwards.text


def test_voiding_asks_first_then_needs_a_reason_then_voids(
    dashboard: Client, api_client: Client, customers: tuple[str, str]
) -> None:
    confirm = dashboard.get("/dashboard/events/void?event_id=a1")
    assert confirm.status_code == 200, confirm.text
    assert "adjustment on the next invoice" in confirm.text
    assert '<label for="reason">Reason</label>' in confirm.text
    assert "Void event</button>" in confirm.text
    refused = submit(
        dashboard,
        "/dashboard/events/void",
        {"event_id": "a1", "reason": "  "},
        form_page="/dashboard/events",
    )
    assert refused.status_code == 422
    assert 'id="reason-error" role="alert">Enter a reason' in refused.text
    assert "voided" not in api_client.get("/events/a1").json()  # nothing written
    done = submit(
        dashboard,
        "/dashboard/events/void",
        {"event_id": "a1", "reason": "sent twice"},
        form_page="/dashboard/events",
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/dashboard/events"
    assert "Event voided" in dashboard.get("/dashboard/events").text
    read = api_client.get("/events/a1").json()
    assert (read["voided"], read["void_reason"]) == (True, "sent twice")


def test_voiding_a_voided_event_keeps_the_first_void(
    dashboard: Client, api_client: Client, customers: tuple[str, str]
) -> None:
    assert api_client.post("/events/b1/void", json={"reason": "first"}).status_code == 200
    confirm = dashboard.get("/dashboard/events/void?event_id=b1")
    assert "voided already" in confirm.text
    assert "Void event</button>" not in confirm.text
    again = submit(
        dashboard,
        "/dashboard/events/void",
        {"event_id": "b1", "reason": "second"},
        form_page="/dashboard/events",
    )
    assert again.status_code == 303
    assert "the first void stands" in dashboard.get("/dashboard/events").text
    assert api_client.get("/events/b1").json()["void_reason"] == "first"


@pytest.mark.parametrize("odd", ["batch/7", "a%41", "b%2Fc", "../../meters", "x y+z&w#1"])
def test_an_event_id_of_any_characters_can_be_voided(
    dashboard: Client, api_client: Client, odd: str
) -> None:
    cid = make_customer(api_client)
    ingest(api_client, event(cid, odd))
    listed = dashboard.get("/dashboard/events").text
    link = re.search(r'href="(/dashboard/events/void\?event_id=[^"]+)"', listed)
    assert link, "no void link"
    confirm = dashboard.get(html.unescape(link.group(1)))
    assert confirm.status_code == 200
    assert html.escape(odd) in confirm.text
    done = submit(
        dashboard,
        "/dashboard/events/void",
        {"event_id": odd, "reason": "test"},
        form_page=html.unescape(link.group(1)),
    )
    assert done.status_code == 303
    voided = api_client.get("/events", params={"voided": "true"}).json()["items"]
    assert [e["event_id"] for e in voided] == [odd]


def test_another_business_s_event_is_not_found(
    container: Any, clock: Any, customers: tuple[str, str]
) -> None:
    key = container.keys.create("acme", "admin", clock.now)
    with TestClient(create_app(container)) as other:
        assert sign_in(other, key).status_code == 303
        assert other.get("/dashboard/events/void?event_id=a1").status_code == 404
        assert rows(other.get("/dashboard/events").text) == []
        token_page = "/dashboard/events"
        refused = submit(
            other, "/dashboard/events/void", {"event_id": "a1", "reason": "x"}, form_page=token_page
        )
        assert refused.status_code == 404


def test_the_void_form_needs_its_csrf_token(dashboard: Client, customers: tuple[str, str]) -> None:
    refused = dashboard.post("/dashboard/events/void", data={"event_id": "a1", "reason": "x"})
    assert refused.status_code == 403
    assert "Form refused" in refused.text


def test_the_list_pages_by_25(dashboard: Client, api_client: Client) -> None:
    cid = make_customer(api_client)
    sent = [event(cid, f"e{i:02d}", timestamp=f"2026-11-25T11:{i:02d}:00Z") for i in range(27)]
    assert ingest(api_client, *sent).json()["ingested_count"] == 27
    first = dashboard.get("/dashboard/events")
    assert rows(first.text) == [f"e{i:02d}" for i in range(26, 1, -1)]
    assert 'href="/dashboard/events?page=1" rel="next"' in first.text
    second = dashboard.get("/dashboard/events", params={"page": "1"})
    assert rows(second.text) == ["e01", "e00"]
    assert 'rel="prev"' in second.text

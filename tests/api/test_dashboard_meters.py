"""The dashboard's meters and alerts pages over HTTP: list, the filter builder, the meter page."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from tests.api.dashboard_helpers import api_client, dashboard, sign_in, submit
from tests.api.helpers import make_customer
from tests.api.test_billing_api import meter

__all__ = ["api_client", "dashboard"]

NEW = "/dashboard/meters/new"
COUNT = {
    "name": "API calls",
    "event_name": "api.call",
    "aggregation": "count",
    "aggregation_key": "",
    "measurement_unit": "calls",
    "description": "",
}


def field_error(page: str, field: str) -> str:
    """The text of the error shown next to ``field`` (empty if none)."""
    found = re.search(rf'id="{re.escape(field.replace(".", "-"))}-error"[^>]*>([^<]*)<', page)
    return found.group(1) if found else ""


def create(client: Any, data: dict[str, str]) -> Any:
    return submit(client, NEW, {**data, "action": "save"})


def meters_of(api: Any, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.get("/meters", params=params).json()["items"]
    return found


def ingest(api: Any, clock: Any, customer_id: str, rows: list[dict[str, Any]]) -> None:
    events = [
        {
            "event_id": f"e{index}-{customer_id}",
            "customer_id": customer_id,
            "event_name": "api.call",
            "timestamp": (clock.now - timedelta(minutes=index + 1)).isoformat(),
            "metadata": metadata,
        }
        for index, metadata in enumerate(rows)
    ]
    answer = api.post("/events/ingest", json={"events": events})
    assert answer.json()["ingested_count"] == len(events), answer.text


def test_the_list_says_what_to_do_when_there_is_no_meter(dashboard: TestClient) -> None:  # type: ignore[type-arg]
    page = dashboard.get("/dashboard/meters")
    assert page.status_code == 200
    assert "No meters yet: create one to start measuring usage." in page.text
    assert 'href="/dashboard/meters/new"' in page.text


def test_the_list_shows_active_meters_and_archived_ones_behind_the_toggle(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
) -> None:
    kept = meter(api_client, "api.call", {"type": "count"})
    gone = meter(api_client, "tokens", {"type": "sum", "key": "n"})
    assert api_client.delete(f"/meters/{gone}").status_code == 204
    active = dashboard.get("/dashboard/meters")
    assert active.status_code == 200
    assert kept in active.text
    assert gone not in active.text
    assert "Show archived" in active.text
    archived = dashboard.get("/dashboard/meters?archived=true")
    assert gone in archived.text
    assert "sum of <code>n</code>" in archived.text
    assert "archived</span>" in archived.text
    assert kept not in archived.text


def test_a_count_meter_is_created_from_the_form(
    dashboard: TestClient, api_client: TestClient
) -> None:  # type: ignore[type-arg]
    form = dashboard.get(NEW)
    assert form.status_code == 200
    for label in ("Name", "Event name", "Aggregation", "Aggregation key", "Measurement unit"):
        assert f">{label}</label>" in form.text
    assert 'aria-label="Filter key"' in form.text
    assert 'aria-label="Match"' in form.text
    for kind in ("count", "sum", "max", "min", "last", "unique_count"):
        assert f'value="{kind}"' in form.text
    answer = create(dashboard, COUNT)
    assert answer.status_code == 303, answer.text
    [made] = meters_of(api_client)
    assert answer.headers["location"] == f"/dashboard/meters/{made['id']}"
    assert made["aggregation"] == {"type": "count", "key": None}
    assert made["filter"] is None
    assert made["measurement_unit"] == "calls"
    page = dashboard.get(answer.headers["location"])
    assert "Meter created" in page.text
    assert "API calls" in page.text


def test_a_sum_without_its_key_is_refused_next_to_the_key_and_nothing_is_made(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
) -> None:
    answer = create(dashboard, {**COUNT, "aggregation": "sum"})
    assert answer.status_code == 422
    assert field_error(answer.text, "aggregation_key") == "sum needs the metadata key it aggregates"
    assert 'value="API calls"' in answer.text  # what was typed stays
    assert meters_of(api_client) == []
    blank = create(dashboard, {**COUNT, "name": " "})
    assert blank.status_code == 422
    assert "must be 1 to 255 characters" in field_error(blank.text, "name")


def test_the_builder_buttons_change_the_tree_and_keep_every_value(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
) -> None:
    typed = {
        **COUNT,
        "filter.0.conjunction": "or",
        "filter.0.0.key": "region",
        "filter.0.0.operator": "not_equals",
        "filter.0.0.value": "eu",
    }
    added = submit(dashboard, NEW, {**typed, "action": "add-condition:0"})
    assert added.status_code == 200
    assert 'name="filter.0.1.key"' in added.text
    assert 'name="filter.0.0.key" value="region"' in added.text
    assert '<option value="not_equals" selected>' in added.text
    assert '<option value="or" selected>' in added.text
    assert 'value="API calls"' in added.text
    grouped = submit(dashboard, NEW, {**typed, "action": "add-group:0"}, form_page=NEW)
    assert 'name="filter.0.1.conjunction"' in grouped.text
    assert 'name="filter.0.1.0.key"' in grouped.text
    assert 'aria-label="Group 2 conjunction"' in grouped.text
    removed = submit(dashboard, NEW, {**typed, "action": "remove:0.0"})
    assert removed.status_code == 200
    assert 'name="filter.0.0.key"' not in removed.text
    assert "No conditions" in removed.text
    assert meters_of(api_client) == []  # only the save button creates


def test_a_fourth_level_is_refused_by_the_builder(dashboard: TestClient) -> None:  # type: ignore[type-arg]
    three = {**COUNT, "filter.0.0.0.conjunction": "and", "filter.0.0.0.0.key": "k"}
    answer = submit(dashboard, NEW, {**three, "action": "add-group:0.0.0"})
    assert answer.status_code == 422
    assert "at most 3 levels deep" in field_error(answer.text, "filter.0.0.0")
    assert 'name="filter.0.0.0.0.key" value="k"' in answer.text
    crafted = create(dashboard, {**COUNT, "filter.0.0.0.0.0.key": "k"})
    assert crafted.status_code == 422
    assert "at most 3 levels deep" in crafted.text


def test_a_bad_filter_is_refused_with_the_domain_message_at_its_condition(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
) -> None:
    bad = {
        **COUNT,
        "filter.0.0.key": "tokens",
        "filter.0.0.operator": "greater_than",
        "filter.0.0.value": "many",
    }
    answer = create(dashboard, bad)
    assert answer.status_code == 422
    assert (
        field_error(answer.text, "filter.0.0.value")
        == "greater_than compares numbers; &#39;many&#39; is not a number"
    )
    assert meters_of(api_client) == []


def test_a_two_level_filter_counts_only_the_matching_events(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
    clock: Any,
) -> None:
    # region equals eu and (plan equals pro or tokens greater than 100)
    data = {
        **COUNT,
        "filter.0.conjunction": "and",
        "filter.0.0.conjunction": "and",
        "filter.0.0.0.key": "region",
        "filter.0.0.0.operator": "equals",
        "filter.0.0.0.value": "eu",
        "filter.0.1.conjunction": "or",
        "filter.0.1.0.key": "plan",
        "filter.0.1.0.operator": "equals",
        "filter.0.1.0.value": "pro",
        "filter.0.1.1.key": "tokens",
        "filter.0.1.1.operator": "greater_than",
        "filter.0.1.1.value": "100",
    }
    answer = create(dashboard, data)
    assert answer.status_code == 303, answer.text
    [made] = meters_of(api_client)
    assert made["filter"]["clauses"][1]["clauses"][1]["value"] == 100
    customer = make_customer(api_client)
    ingest(
        api_client,
        clock,
        customer,
        [
            {"region": "eu", "plan": "pro"},  # counts
            {"region": "eu", "tokens": 500},  # counts
            {"region": "eu", "plan": "free", "tokens": 5},
            {"region": "us", "plan": "pro"},
            {"plan": "pro"},
        ],
    )
    page = dashboard.get(answer.headers["location"])
    assert page.status_code == 200
    assert re.search(r'id="usage-total">2<', page.text)
    assert "<strong>or</strong>" in page.text  # the filter written out
    assert "e0-" in page.text
    assert "e1-" in page.text
    assert "e2-" not in page.text
    assert "e3-" not in page.text


def test_the_meter_page_shows_each_window_its_top_customers_and_its_events(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
    clock: Any,
) -> None:
    meter_id = meter(api_client, "api.call", {"type": "count"})
    ada = make_customer(api_client, "ada@example.com", "Ada")
    bob = make_customer(api_client, "bob@example.com", "Bob")
    ingest(api_client, clock, ada, [{}, {}, {}])
    ingest(api_client, clock, bob, [{}])
    for window in ("hour", "day", "month"):
        page = dashboard.get(f"/dashboard/meters/{meter_id}?window={window}")
        assert page.status_code == 200, page.text
        assert f"per UTC {window}" in page.text
        assert "<svg" in page.text
        assert 'id="meter-usage" data-refresh="10"' in page.text
        assert re.search(r'id="usage-total">4<', page.text)
    page = dashboard.get(f"/dashboard/meters/{meter_id}")
    top = page.text.split('id="top-customers"')[1].split("</section>")[0]
    assert top.index(">Ada<") < top.index(">Bob<")
    assert f'href="/dashboard/customers/{ada}"' in top
    events = page.text.split('id="counted-events"')[1]
    assert events.count("<tr>") == 1 + 4
    assert events.index(f"e0-{ada}") < events.index(f"e2-{ada}")  # newest first
    assert f'href="/dashboard/alerts?meter_id={meter_id}"' in page.text
    assert "Alerts on this meter" in page.text


def test_the_range_form_narrows_the_usage_and_refuses_a_bad_date(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
    clock: Any,
) -> None:
    meter_id = meter(api_client, "api.call", {"type": "count"})
    ingest(api_client, clock, make_customer(api_client), [{}, {}, {}])  # 11:59, 11:58, 11:57
    path = f"/dashboard/meters/{meter_id}"
    narrow = dashboard.get(f"{path}?window=hour&start=2026-11-25T11:58&end=2026-11-25T12:00")
    assert narrow.status_code == 200
    assert re.search(r'id="usage-total">2<', narrow.text)
    assert 'value="2026-11-25T11:58"' in narrow.text
    empty = dashboard.get(f"{path}?window=day&start=2026-11-01&end=2026-11-02")
    assert re.search(r'id="usage-total">0<', empty.text)
    assert "No usage in this range" in empty.text
    bad = dashboard.get(f"{path}?start=yesterday")
    assert bad.status_code == 422
    assert "is not a date" in field_error(bad.text, "start")
    backwards = dashboard.get(f"{path}?start=2026-11-20&end=2026-11-10")
    assert backwards.status_code == 422
    assert field_error(backwards.text, "end") == "end must be after start"


def test_editing_a_meter_prefills_the_builder_and_saves_the_changes(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
) -> None:
    filter_ = {
        "conjunction": "and",
        "clauses": [{"key": "plan", "operator": "equals", "value": "pro"}],
    }
    meter_id = meter(api_client, "api.call", {"type": "count"}, filter=filter_)
    edit = f"/dashboard/meters/{meter_id}/edit"
    form = dashboard.get(edit)
    assert form.status_code == 200
    assert 'name="filter.0.0.key" value="plan"' in form.text
    assert 'name="filter.0.0.value" value="pro"' in form.text
    changed = {
        **COUNT,
        "name": "Pro calls",
        "aggregation": "sum",
        "aggregation_key": "tokens",
        "filter.0.conjunction": "and",
        "filter.0.0.key": "plan",
        "filter.0.0.operator": "contains",
        "filter.0.0.value": "pro",
        "filter.0.0.kind": "text",
    }
    answer = submit(dashboard, edit, {**changed, "action": "save"})
    assert answer.status_code == 303, answer.text
    read = api_client.get(f"/meters/{meter_id}").json()
    assert read["name"] == "Pro calls"
    assert read["aggregation"] == {"type": "sum", "key": "tokens"}
    assert read["filter"]["clauses"][0]["operator"] == "contains"
    assert "Meter saved" in dashboard.get(answer.headers["location"]).text


def test_a_billed_meter_keeps_its_definition_and_says_why(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
    container: Any,
    clock: Any,
) -> None:
    meter_id = meter(api_client, "api.call", {"type": "count"})
    business_id = api_client.get(f"/meters/{meter_id}").json()["business_id"]
    container.ledger.lock_meter(business_id, meter_id, "invoice inv_1", clock.now)
    edit = f"/dashboard/meters/{meter_id}/edit"
    answer = submit(dashboard, edit, {**COUNT, "event_name": "other", "action": "save"})
    assert answer.status_code == 422
    assert "its event_name, aggregation and filter cannot change" in answer.text
    assert api_client.get(f"/meters/{meter_id}").json()["event_name"] == "api.call"


def test_archive_and_unarchive_from_the_meter_page(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
) -> None:
    meter_id = meter(api_client, "api.call", {"type": "count"})
    page = f"/dashboard/meters/{meter_id}"
    archived = submit(dashboard, f"{page}/archive", {}, form_page=page)
    assert archived.status_code == 303
    assert api_client.get(f"/meters/{meter_id}").json()["archived"] is True
    shown = dashboard.get(page)
    assert "Meter archived" in shown.text
    assert f'action="{page}/unarchive"' in shown.text
    back = submit(dashboard, f"{page}/unarchive", {}, form_page=page)
    assert back.status_code == 303
    assert api_client.get(f"/meters/{meter_id}").json()["archived"] is False


def test_another_business_meter_and_alert_answer_404(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
    container: Any,
    clock: Any,
) -> None:
    meter_id = meter(api_client, "api.call", {"type": "count"})
    alert = api_client.post("/alerts", json={"meter_id": meter_id, "threshold": 5}).json()
    other_key = container.keys.create("acme", "admin", clock.now)
    with TestClient(create_app(container)) as other:
        assert sign_in(other, other_key).status_code == 303
        page = f"/dashboard/meters/{meter_id}"
        for path in (page, f"{page}/edit", f"/dashboard/alerts/{alert['id']}/delete"):
            assert other.get(path).status_code == 404, path
        assert submit(other, f"{page}/archive", {}, form_page=NEW).status_code == 404
        assert other.get(f"/dashboard/alerts?meter_id={meter_id}").status_code == 404
    assert api_client.get(f"/meters/{meter_id}").json()["archived"] is False


def test_a_form_without_its_csrf_token_is_refused(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
) -> None:
    refused = dashboard.post(NEW, data={**COUNT, "action": "save"}, follow_redirects=False)
    assert refused.status_code == 403
    assert meters_of(api_client) == []


def test_alerts_are_listed_created_and_deleted_after_confirming(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
) -> None:
    assert "No alerts yet" in dashboard.get("/dashboard/alerts").text
    meter_id = meter(api_client, "api.call", {"type": "count"})
    form = dashboard.get(f"/dashboard/alerts/new?meter_id={meter_id}")
    assert f'<option value="{meter_id}" selected>' in form.text
    fields = {"meter_id": meter_id, "customer_id": "", "threshold": "1000", "period": "day"}
    answer = submit(dashboard, "/dashboard/alerts/new", {**fields, "name": "big day"})
    assert answer.status_code == 303, answer.text
    [made] = api_client.get("/alerts").json()["items"]
    assert (made["threshold"], made["period"], made["customer_id"]) == ("1000", "day", None)
    listed = dashboard.get(answer.headers["location"])
    assert "Alert created" in listed.text
    assert "every customer" in listed.text
    assert "1,000" in listed.text
    confirm = dashboard.get(f"/dashboard/alerts/{made['id']}/delete")
    assert confirm.status_code == 200
    assert "Delete this alert?" in confirm.text
    assert api_client.get("/alerts").json()["items"] != []  # the GET deletes nothing
    deleted = submit(
        dashboard, f"/dashboard/alerts/{made['id']}/delete", {}, form_page="/dashboard/alerts"
    )
    assert deleted.status_code == 303
    assert api_client.get("/alerts").json()["items"] == []
    assert dashboard.get(f"/dashboard/alerts/{made['id']}/delete").status_code == 404


def test_an_alert_form_is_refused_with_the_message_next_to_its_field(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
) -> None:
    meter_id = meter(api_client, "api.call", {"type": "count"})
    fields = {"meter_id": meter_id, "customer_id": "", "threshold": "-5", "period": "cycle"}
    negative = submit(dashboard, "/dashboard/alerts/new", fields)
    assert negative.status_code == 422
    assert field_error(negative.text, "threshold") == "a number from 0 to 10^18"
    assert 'value="-5"' in negative.text
    unknown = submit(
        dashboard, "/dashboard/alerts/new", {**fields, "threshold": "5", "meter_id": "mtr_nope"}
    )
    assert unknown.status_code == 422
    assert field_error(unknown.text, "meter_id") == "there is no meter &#39;mtr_nope&#39;"
    stranger = submit(
        dashboard, "/dashboard/alerts/new", {**fields, "threshold": "5", "customer_id": "cus_x"}
    )
    assert field_error(stranger.text, "customer_id") == "there is no customer &#39;cus_x&#39;"
    assert api_client.get("/alerts").json()["items"] == []

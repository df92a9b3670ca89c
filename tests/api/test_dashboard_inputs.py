"""Malformed input anywhere in the dashboard is a clear refusal, never a 500."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api.dashboard_helpers import api_client, dashboard, submit
from tests.api.helpers import make_customer
from tests.api.test_billing_api import meter, product

__all__ = ["api_client", "dashboard"]

LISTS = (
    "/dashboard/meters",
    "/dashboard/products",
    "/dashboard/credits",
    "/dashboard/customers",
    "/dashboard/subscriptions",
    "/dashboard/invoices",
    "/dashboard/events",
    "/dashboard/alerts",
    "/dashboard/webhooks",
    "/dashboard/api-keys",
)


def test_an_unreadable_page_number_is_the_first_page(dashboard: Any) -> None:
    for path in LISTS:
        for page in ("\u00b2", "9" * 5000, "-1", "1e3", "x"):  # "²".isdigit() is true
            answer = dashboard.get(path, params={"page": page})
            assert answer.status_code == 200, (path, page)
            assert answer.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    "extra",
    [
        {"quantity": "\u00b2"},
        {"quantity": "9" * 5000},
        {"quantity": "0"},
        {"start_date": "0001-01-01T00:00+01:00"},
        {"start_date": "yesterday"},
    ],
    ids=["superscript-quantity", "huge-quantity", "zero-quantity", "year-1-start", "words"],
)
def test_a_bad_subscription_form_is_refused_and_writes_nothing(
    dashboard: Any, api_client: Any, extra: dict[str, str]
) -> None:
    cid = make_customer(api_client)
    pid = product(api_client, [(meter(api_client, "api.call", {"type": "count"}), "2", 1000)])
    data = {"customer_id": cid, "product_id": pid, "start_date": "", "quantity": "1"}
    answer = submit(dashboard, "/dashboard/subscriptions/new", {**data, "country": "US", **extra})
    assert answer.status_code == 422, answer.text[:500]
    assert 'class="field-error"' in answer.text
    assert api_client.get("/subscriptions").json()["items"] == []


def test_a_webhook_rate_limit_of_many_digits_is_refused_not_a_500(dashboard: Any) -> None:
    answer = submit(
        dashboard,
        "/dashboard/webhooks/new",
        {"url": "https://example.com/hook", "rate_limit": "9" * 5000},
    )
    assert answer.status_code == 422, answer.text[:300]


METER = {"name": "m", "event_name": "api.call", "aggregation": "count", "measurement_unit": "u"}


def test_the_filter_builder_stops_at_its_limit_and_keeps_what_was_typed(dashboard: Any) -> None:
    fields = {"filter.0.conjunction": "or"}
    fields |= {f"filter.0.{i}.key": f"k{i}" for i in range(99)}
    fields |= {f"filter.0.{i}.value": "v" for i in range(99)}
    refused = submit(
        dashboard, "/dashboard/meters/new", {**METER, **fields, "action": "add-condition:0"}
    )
    assert refused.status_code == 422
    assert "at most 100 conditions and groups" in refused.text
    kept = re.findall(r'name="(filter\.0\.\d+\.key)" value="(k\d+)"', refused.text)
    assert len(kept) == 99  # nothing typed is lost


def test_a_filter_key_with_spaces_and_a_huge_number_round_trip_through_the_edit_form(
    dashboard: Any, api_client: Any
) -> None:
    wire = {
        "conjunction": "and",
        "clauses": [{"key": " region ", "operator": "greater_than", "value": 10**38}],
    }
    made = api_client.post(
        "/meters",
        json={**METER, "aggregation": {"type": "count"}, "filter": wire},
    )
    assert made.status_code == 200, made.text
    meter_id = made.json()["id"]
    form = dashboard.get(f"/dashboard/meters/{meter_id}/edit").text
    fields = dict(re.findall(r'name="((?:filter\.[\d.]+\.)?\w+)" value="([^"]*)"', form))
    fields |= dict(
        re.findall(
            r'<select[^>]*name="([\w.]+)"[^>]*>'
            r'(?:(?!</select>).)*?<option value="([^"]*)" selected',
            form,
            re.S,
        )
    )
    fields.pop("_csrf_token", None)
    saved = submit(
        dashboard,
        f"/dashboard/meters/{meter_id}/edit",
        {**fields, "action": "save"},
    )
    assert saved.status_code == 303, saved.text[:2000]
    after = api_client.get(f"/meters/{meter_id}").json()
    assert after["filter"] == made.json()["filter"]


def test_an_edited_webhook_cursor_is_refused_or_ignored_not_a_500(
    dashboard: Any, api_client: Any
) -> None:
    import base64  # noqa: PLC0415

    for raw in (b"99999999999999999999:whk_x", b"1:wh\x00k", b"x" * 3000):
        cursor = base64.urlsafe_b64encode(raw).decode()
        assert api_client.get("/webhooks", params={"iterator": cursor}).status_code == 400
        assert dashboard.get("/dashboard/webhooks", params={"after": cursor}).status_code == 200


def test_a_webhook_edit_refused_for_its_headers_changes_nothing(
    dashboard: Any, api_client: Any
) -> None:
    headers = {f"X-H{i}": "v" for i in range(20)}
    made = api_client.post("/webhooks", json={"url": "https://a.example/h", "headers": headers})
    assert made.status_code == 200, made.text
    hook = made.json()["id"]
    answer = submit(
        dashboard,
        f"/dashboard/webhooks/{hook}/edit",
        {"url": "https://b.example/h", "headers": "X-New: 1", "description": ""},
    )
    assert answer.status_code == 422
    assert "at most 20 custom headers" in answer.text
    assert api_client.get(f"/webhooks/{hook}").json()["url"] == "https://a.example/h"

"""Malformed input anywhere in the dashboard is a clear refusal, never a 500."""

from __future__ import annotations

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

"""Editing a product in the dashboard keeps every part of its price it does not change.

A product using every part the API accepts is opened in the edit form and submitted
as a browser would (every input, the selected options, checked boxes only): the
product read through the API afterwards is the one before. A POST that is not the
whole form is refused, row buttons read ASCII row numbers only, and a preview with
unreadable inputs answers 422.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from tests.api.dashboard_helpers import api_client, dashboard, submit
from tests.api.test_billing_api import meter
from tests.api.test_dashboard_products import calls_meter, field_error, product_fields

__all__ = ["api_client", "dashboard"]

PRICE = {
    "type": "usage_based_price",
    "currency": "USD",
    "fixed_price": 1000,
    "payment_frequency_count": 1,
    "payment_frequency_interval": "Month",
    "subscription_period_count": 20,
    "subscription_period_interval": "Year",
}


class BrowserForm(HTMLParser):
    """What a browser sends from the form posting to ``action``: every input (a
    checkbox only when checked), each select's selected option (else its first)."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.values: dict[str, str] = {}
        self._inside = False
        self._select: str | None = None
        self._first: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._inside = a.get("action") == self.action
        if not self._inside:
            return
        name = a.get("name")
        if tag == "input" and name and name != "_csrf_token":
            if a.get("type") != "checkbox":
                self.values[name] = a.get("value") or ""
            elif "checked" in a:
                self.values[name] = a.get("value") or "on"
        elif tag == "select" and name:
            self._select, self._first = name, None
        elif tag == "option" and self._select:
            if self._first is None:
                self._first = a.get("value") or ""
            if "selected" in a:
                self.values[self._select] = a.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select:
            self.values.setdefault(self._select, self._first or "")
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data


def form_values(client: Any, path: str) -> dict[str, str]:
    page = client.get(path)
    assert page.status_code == 200, page.text[:300]
    form = BrowserForm(path)
    form.feed(page.text)
    assert form.values, "no form posting to " + path
    return form.values


def save_unchanged(client: Any, product_id: str) -> None:
    path = f"/dashboard/products/{product_id}/edit"
    answer = submit(client, path, {**form_values(client, path), "action": "save"}, form_page=path)
    assert answer.status_code == 303, answer.text[:3000]


def read(api_client: Any, product_id: str) -> dict[str, Any]:
    found = api_client.get(f"/products/{product_id}")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    body.pop("updated_at")
    return body


def entitlement(api_client: Any, name: str, **rules: Any) -> str:
    made = api_client.post(
        "/credit-entitlements",
        json={
            "name": name,
            "unit": "calls",
            "precision": 0,
            "overage_enabled": False,
            "rollover_enabled": False,
            **rules,
        },
    )
    assert made.status_code == 200, made.text
    found: str = made.json()["id"]
    return found


def make(api_client: Any, price: dict[str, Any], credits: list[Any] | None = None) -> str:
    body: dict[str, Any] = {"name": "Every part", "tax_category": "edtech", "price": price}
    if credits is not None:
        body["credit_entitlements"] = credits
    made = api_client.post("/products", json={**body, "description": "All of it"})
    assert made.status_code == 200, made.text
    found: str = made.json()["product_id"]
    return found


def tiers(*steps: tuple[str | None, str, int]) -> list[dict[str, Any]]:
    return [{"up_to": up, "price_per_unit": p, "flat_fee": fee} for up, p, fee in steps]


def every_part(api_client: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A price with every model, tiers with flat fees, bounds, values priced apart
    with each model, a credit link, and attachments with every override."""
    calls = meter(api_client, "api.call", {"type": "count"})
    tokens = meter(api_client, "tokens", {"type": "sum", "key": "n"})
    storage = meter(api_client, "storage", {"type": "max", "key": "gb"})
    seats = meter(api_client, "seats", {"type": "count"})
    plain = entitlement(api_client, "Plain")
    rich = entitlement(
        api_client,
        "Rich",
        currency="EUR",
        price_per_unit="5",
        overage_enabled=True,
        overage_behavior="invoice_at_billing",
    )
    meters = [
        {
            "meter_id": calls,
            "price_per_unit": "0.5",
            "free_threshold": 100,
            "minimum_amount": 500,
            "maximum_amount": 90000,
            "credit_entitlement_id": plain,
            "meter_units_per_credit": "2.5",
            "group_by": "region",
            "groups": [
                {"value": "eu", "price_per_unit": "3"},
                {
                    "value": "us",
                    "pricing_model": "graduated",
                    "tiers": tiers(("100", "1", 50), (None, "0.25", 0)),
                },
                {"value": "apac", "pricing_model": "volume", "tiers": tiers((None, "2", 7))},
                {
                    "value": "latam",
                    "pricing_model": "package",
                    "package_size": 10,
                    "package_price": "40",
                    "package_rounding": "down",
                },
            ],
        },
        {
            "meter_id": tokens,
            "pricing_model": "graduated",
            "tiers": tiers(("1000", "0.001", 100), ("5000.5", "0.0005", 0), (None, "0", 25)),
            "free_threshold": 0,
            "group_by": "model",
        },
        {
            "meter_id": storage,
            "pricing_model": "volume",
            "tiers": tiers(("10", "100", 0), (None, "80", 1000)),
            "free_threshold": 1,
            "maximum_amount": 100000,
        },
        {
            "meter_id": seats,
            "pricing_model": "package",
            "package_size": 5,
            "package_price": "2500",
            "package_rounding": "up",
            "free_threshold": 0,
            "minimum_amount": 0,
        },
    ]
    attached = [
        {
            "credit_entitlement_id": plain,
            "credits_amount": "100",
            "proration_behavior": "no_prorate",
            "low_balance_threshold_percent": 20,
            "trial_credits": "5",
            "trial_credits_expire_after_trial": True,
            "currency": "GBP",
            "price_per_unit": "1.5",
            "overage_enabled": True,
            "overage_behavior": "carry_deficit",
            "overage_limit": "30",
            "rollover_enabled": True,
            "rollover_percentage": 50,
            "max_rollover_count": 3,
            "rollover_timeframe_count": 2,
            "rollover_timeframe_interval": "Month",
            "expires_after_days": 90,
        },
        {"credit_entitlement_id": rich, "credits_amount": "25"},
    ]
    price = {**PRICE, "currency": "EUR", "tax_inclusive": True, "meters": meters}
    price["payment_frequency_interval"], price["subscription_period_count"] = "Week", 3
    return price, attached


def test_saving_a_product_with_every_price_part_unchanged_keeps_it(
    dashboard: Any, api_client: Any
) -> None:
    price, attached = every_part(api_client)
    product_id = make(api_client, price, attached)
    before = read(api_client, product_id)
    assert before["price"]["tax_inclusive"] is True
    assert len(before["price"]["meters"][0]["groups"]) == 4
    save_unchanged(dashboard, product_id)
    assert read(api_client, product_id) == before
    save_unchanged(dashboard, product_id)  # the form of the saved product keeps it too
    assert read(api_client, product_id) == before


def test_a_product_without_tax_or_credits_round_trips(dashboard: Any, api_client: Any) -> None:
    calls = meter(api_client, "api.call", {"type": "count"})
    plain = {"meter_id": calls, "price_per_unit": "2", "free_threshold": 0}
    product_id = make(api_client, {**PRICE, "tax_inclusive": False, "meters": [plain]})
    before = read(api_client, product_id)
    save_unchanged(dashboard, product_id)
    assert read(api_client, product_id) == before


def test_fifty_values_priced_apart_are_all_kept(dashboard: Any, api_client: Any) -> None:
    calls = meter(api_client, "api.call", {"type": "count"})
    groups = [{"value": f"v{n}", "price_per_unit": str(n)} for n in range(50)]
    line = {"meter_id": calls, "price_per_unit": "2", "free_threshold": 0, "group_by": "region"}
    product_id = make(api_client, {**PRICE, "meters": [{**line, "groups": groups}]})
    before = read(api_client, product_id)
    save_unchanged(dashboard, product_id)
    assert read(api_client, product_id) == before


def test_an_edit_post_that_is_not_the_whole_form_is_refused(
    dashboard: Any, api_client: Any
) -> None:
    price, attached = every_part(api_client)
    product_id = make(api_client, price, attached)
    before = read(api_client, product_id)
    path = f"/dashboard/products/{product_id}/edit"
    whole = {**form_values(dashboard, path), "action": "save"}
    partial = [
        {"name": "Renamed", "action": "save"},
        {k: v for k, v in whole.items() if k != "form"},
        {k: v for k, v in whole.items() if k != "fixed_price"},
        {k: v for k, v in whole.items() if k != "m0.minimum_amount"},
        {k: v for k, v in whole.items() if k != "c0.rollover_percentage"},
    ]
    for data in partial:
        answer = submit(dashboard, path, data, form_page=path)
        assert answer.status_code == 422, answer.status_code
        assert "not sent whole" in answer.text
    assert read(api_client, product_id) == before


def test_a_credit_entitlement_edit_post_that_is_not_the_whole_form_is_refused(
    dashboard: Any, api_client: Any
) -> None:
    found = entitlement(api_client, "Calls", overage_enabled=True, rollover_enabled=True)
    before = api_client.get(f"/credit-entitlements/{found}").json()
    path = f"/dashboard/credits/{found}/edit"
    whole = form_values(dashboard, path)
    assert whole["form"] == "credit"
    for data in ({"name": "Renamed"}, {k: v for k, v in whole.items() if k != "form"}):
        answer = submit(dashboard, path, data, form_page=path)
        assert answer.status_code == 422, answer.status_code
        assert "not sent whole" in answer.text
    assert api_client.get(f"/credit-entitlements/{found}").json() == before
    saved = submit(dashboard, path, {**whole, "name": "Renamed"}, form_page=path)
    assert saved.status_code == 303, saved.text[:500]
    after = api_client.get(f"/credit-entitlements/{found}").json()
    assert (after["name"], after["overage_enabled"], after["rollover_enabled"]) == (
        "Renamed",
        True,
        True,
    )


def test_a_row_button_with_a_unicode_digit_re_renders_the_form(
    dashboard: Any, api_client: Any
) -> None:
    data = product_fields(calls_meter(api_client))
    for action in ("add_tier:\u00b2", "remove_meter:\u0661", "add_group_tier:0:" + "9" * 50):
        answer = submit(dashboard, "/dashboard/products/new", {**data, "action": action})
        assert answer.status_code == 200, (action, answer.status_code)


def test_a_value_priced_apart_takes_tiers_of_its_own(dashboard: Any, api_client: Any) -> None:
    data = product_fields(
        calls_meter(api_client),
        **{"m0.group_by": "region", "m0.g0.value": "eu", "m0.g0.pricing_model": "graduated"},
    )
    shown = submit(dashboard, "/dashboard/products/new", {**data, "action": "preview"})
    assert 'name="m0.g0.t1.up_to"' in shown.text  # a tiered value shows two tiers to fill
    more = submit(dashboard, "/dashboard/products/new", {**data, "action": "add_group_tier:0:0"})
    assert 'name="m0.g0.t0.up_to"' in more.text
    tiered = {
        **data,
        "m0.g0.t0.up_to": "10",
        "m0.g0.t0.price_per_unit": "0.05",
        "m0.g0.t0.flat_fee": "1.00",
        "m0.g0.t1.up_to": "",
        "m0.g0.t1.price_per_unit": "0.01",
        "m0.g0.t1.flat_fee": "",
    }
    made = submit(dashboard, "/dashboard/products/new", tiered)
    assert made.status_code == 303, made.text[:2000]
    product_id = made.headers["location"].rsplit("/", 1)[1]
    (group,) = read(api_client, product_id)["price"]["meters"][0]["groups"]
    assert group == {
        "value": "eu",
        "pricing_model": "graduated",
        "tiers": tiers(("10", "5", 100), (None, "1", 0)),
    }


def test_a_preview_with_unreadable_inputs_answers_422(dashboard: Any, api_client: Any) -> None:
    data = product_fields(calls_meter(api_client), **{"m0.price_per_unit": "two"})
    answer = submit(dashboard, "/dashboard/products/new", {**data, "action": "preview"})
    assert answer.status_code == 422
    assert "must be a non-negative amount" in field_error(answer.text, "m0.price_per_unit")
    quantity = submit(
        dashboard,
        "/dashboard/products/new",
        {**data, "m0.price_per_unit": "0.02", "action": "preview", "example_quantity": "lots"},
    )
    assert quantity.status_code == 422
    good = submit(
        dashboard,
        "/dashboard/products/new",
        {**data, "m0.price_per_unit": "0.02", "action": "preview"},
    )
    assert good.status_code == 200


def test_a_units_per_credit_error_is_shown_next_to_its_input(
    dashboard: Any, api_client: Any
) -> None:
    found = entitlement(api_client, "Calls")
    data = product_fields(
        calls_meter(api_client),
        **{"m0.credit_entitlement_id": found, "m0.meter_units_per_credit": "0"},
    )
    answer = submit(dashboard, "/dashboard/products/new", data)
    assert answer.status_code == 422
    assert "meter_units_per_credit" in field_error(answer.text, "m0.meter_units_per_credit")


def test_the_worked_tier_table_names_its_columns_once(dashboard: Any, api_client: Any) -> None:
    data = product_fields(
        calls_meter(api_client, unit="units"),
        **{
            "m0.pricing_model": "graduated",
            "m0.t0.up_to": "1000",
            "m0.t0.price_per_unit": "0.02",
            "m0.t0.flat_fee": "",
            "m0.t1.up_to": "",
            "m0.t1.price_per_unit": "0.01",
            "m0.t1.flat_fee": "",
            "action": "preview",
        },
    )
    answer = submit(dashboard, "/dashboard/products/new", data)
    assert answer.status_code == 200, answer.text[:2000]
    headers = re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', answer.text)
    assert "Price per unit" in headers
    assert len(set(headers)) == len(headers), headers

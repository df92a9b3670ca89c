"""The dashboard's products and credit entitlements over HTTP: forms, worked examples, 404s."""

from __future__ import annotations

import html
import re
from dataclasses import fields
from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from api.dashboard.price_rows import CreditRow
from tests.api.dashboard_helpers import api_client, dashboard, sign_in, submit
from tests.api.helpers import make_customer
from tests.api.test_billing_api import meter

__all__ = ["api_client", "dashboard"]

NEW = "/dashboard/products/new"


def calls_meter(api_client: Any, unit: str = "calls") -> str:
    response = api_client.post(
        "/meters",
        json={
            "name": "API calls",
            "event_name": "api.call",
            "measurement_unit": unit,
            "aggregation": {"type": "count"},
        },
    )
    assert response.status_code == 200, response.text
    meter_id: str = response.json()["id"]
    return meter_id


def meter_row(i: int, **values: str) -> dict[str, str]:
    """The fields a meter price row always sends besides its model's, blank but ``values``."""
    names = ("minimum_amount", "maximum_amount", "group_by", "credit_entitlement_id")
    names += ("meter_units_per_credit",)
    return {f"m{i}.{name}": values.get(name, "") for name in names}


def credit_row(k: int, **values: str) -> dict[str, str]:
    """A credit entitlement row as the form sends it: the entitlement's rules but ``values``."""
    row = dict.fromkeys((f.name for f in fields(CreditRow)), "")
    row.update(proration_behavior="prorate", trial_credits_expire_after_trial="no", **values)
    return {f"c{k}.{name}": value for name, value in row.items()}


def product_fields(meter_id: str, **extra: str) -> dict[str, str]:
    return {
        "form": "product",
        "name": "API plan",
        "description": "",
        "tax_category": "saas",
        "currency": "USD",
        "fixed_price": "0.00",
        "payment_frequency_count": "1",
        "payment_frequency_interval": "Month",
        "subscription_period_count": "20",
        "subscription_period_interval": "Year",
        "example_quantity": "2500",
        "m0.meter_id": meter_id,
        "m0.pricing_model": "per_unit",
        "m0.price_per_unit": "0.02",
        "m0.free_threshold": "1000",
        **meter_row(0),
        "action": "save",
        **extra,
    }


def products_listed(api_client: Any, archived: bool = False) -> list[dict[str, Any]]:
    answer = api_client.get("/products", params={"archived": archived})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def field_error(page: str, name: str) -> str:
    """The message shown next to input ``name``."""
    found = re.search(rf'id="{re.escape(name.replace(".", "-"))}-error"[^>]*>([^<]*)<', page)
    assert found, f"no error next to {name}"
    return html.unescape(found.group(1))


def create(dashboard: TestClient, data: dict[str, str]) -> str:  # type: ignore[type-arg]
    answer = submit(dashboard, NEW, data)
    assert answer.status_code == 303, answer.text[:2000]
    location: str = answer.headers["location"]
    assert location.startswith("/dashboard/products/pdt_")
    return location


def test_the_list_says_what_to_do_when_there_is_no_product(dashboard: TestClient) -> None:  # type: ignore[type-arg]
    page = dashboard.get("/dashboard/products")
    assert page.status_code == 200
    assert "No products yet: create one to price your meters." in page.text
    assert 'href="/dashboard/products/new"' in page.text


def test_a_product_at_two_cents_above_1000_free_shows_the_worked_example(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: Any,
) -> None:
    meter_id = calls_meter(api_client)
    form = dashboard.get(NEW)
    assert form.status_code == 200
    for label in ("Name", "Currency", "Fixed price", "Meter", "Price per unit", "Free threshold"):
        assert f">{label}</label>" in form.text
    location = create(dashboard, product_fields(meter_id))
    page = dashboard.get(location)
    assert page.status_code == 200
    assert "Product created" in page.text
    assert "2,500 calls - 1,000 free = 1,500 x $0.02 = $30.00" in page.text
    other = dashboard.get(location, params={"quantity": "1200"})
    assert "1,200 calls - 1,000 free = 200 x $0.02 = $4.00" in other.text
    (listed,) = products_listed(api_client)
    assert listed["price_detail"]["meters"][0]["price_per_unit"] == "2"
    assert listed["price_detail"]["meters"][0]["free_threshold"] == 1000
    listing = dashboard.get("/dashboard/products")
    assert "API plan" in listing.text
    assert "$0.00" in listing.text


def test_a_graduated_product_shows_each_tier(dashboard: TestClient, api_client: Any) -> None:  # type: ignore[type-arg]
    meter_id = calls_meter(api_client)
    data = product_fields(
        meter_id,
        **{
            "m0.pricing_model": "graduated",
            "m0.price_per_unit": "",
            "m0.free_threshold": "0",
            "m0.t0.up_to": "1000",
            "m0.t0.price_per_unit": "0.02",
            "m0.t0.flat_fee": "1.00",
            "m0.t1.up_to": "",
            "m0.t1.price_per_unit": "0.01",
            "m0.t1.flat_fee": "",
        },
    )
    page = dashboard.get(create(dashboard, data))
    assert "2,500 calls in graduated tiers = $36.00" in page.text
    tiers = re.findall(r'<tr class="tier">(.*?)</tr>', page.text, re.S)
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in tiers]
    assert cells == [
        ["Tier 1", "0 to 1,000", "1,000", "$0.02", "$1.00", "$21.00"],
        ["Tier 2", "1,000 to any", "1,500", "$0.01", "$0.00", "$15.00"],
    ]


def test_a_package_price_and_its_preview_in_the_form(
    dashboard: TestClient, api_client: Any
) -> None:  # type: ignore[type-arg]
    meter_id = calls_meter(api_client)
    data = product_fields(
        meter_id,
        action="preview",
        **{
            "m0.pricing_model": "package",
            "m0.free_threshold": "0",
            "m0.package_size": "1000",
            "m0.package_price": "5",
            "m0.package_rounding": "up",
        },
    )
    page = submit(dashboard, NEW, data)
    assert page.status_code == 200
    assert "2,500 calls in packages of 1,000 (rounded up) = 3 x $5.00 = $15.00" in page.text
    assert products_listed(api_client) == []  # a preview writes nothing


def test_the_preview_recomputes_at_the_example_quantity(
    dashboard: TestClient, api_client: Any
) -> None:  # type: ignore[type-arg]
    meter_id = calls_meter(api_client)
    data = product_fields(meter_id, action="preview", example_quantity="3000")
    page = submit(dashboard, NEW, data)
    assert page.status_code == 200
    assert "3,000 calls - 1,000 free = 2,000 x $0.02 = $40.00" in page.text
    assert 'value="3000"' in page.text
    bad = submit(dashboard, NEW, {**data, "example_quantity": "lots"})
    assert "Example quantity must be a number" in bad.text


def test_refused_inputs_answer_422_next_to_their_field_and_write_nothing(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: Any,
) -> None:
    meter_id = calls_meter(api_client)
    cases = [
        ({"name": ""}, "name", "name must be 1 to 255 characters"),
        ({"m0.price_per_unit": "abc"}, "m0.price_per_unit", "Price per unit must be"),
        ({"m0.meter_id": "mtr_nope"}, "m0.meter_id", "meter 'mtr_nope' not found"),
        ({"m0.free_threshold": "-5"}, "m0.free_threshold", "free_threshold must be an integer"),
        ({"fixed_price": "1.001"}, "fixed_price", "at most 2 decimal places"),
        ({"currency": "XYZ"}, "currency", "'XYZ' is not supported"),
    ]
    for change, name, message in cases:
        answer = submit(dashboard, NEW, product_fields(meter_id, **change))
        assert answer.status_code == 422, (change, answer.text[:500])
        assert message in field_error(answer.text, name), change
        assert f'value="{next(iter(change.values()))}"' in answer.text or "XYZ" in answer.text
    assert products_listed(api_client) == []


def test_a_fraction_of_a_cent_is_a_price_the_api_takes(
    dashboard: TestClient, api_client: Any
) -> None:  # type: ignore[type-arg]
    meter_id = calls_meter(api_client)
    page = dashboard.get(
        create(dashboard, product_fields(meter_id, **{"m0.price_per_unit": "0.005"}))
    )
    assert "1,500 x $0.005 = $7.50" in page.text
    (listed,) = products_listed(api_client)
    assert listed["price_detail"]["meters"][0]["price_per_unit"] == "0.5"


def test_row_buttons_add_and_remove_rows_keeping_what_was_typed(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: Any,
) -> None:
    meter_id = calls_meter(api_client)
    data = product_fields(meter_id, name="Kept name", action="add_meter")
    added = submit(dashboard, NEW, data)
    assert added.status_code == 200
    assert 'value="Kept name"' in added.text
    assert 'name="m1.meter_id"' in added.text
    switched = submit(dashboard, NEW, {**data, "m0.pricing_model": "graduated", "action": "x"})
    assert 'name="m0.t1.up_to"' in switched.text  # a tiered model shows two tiers to fill
    tiered = submit(
        dashboard,
        NEW,
        {**data, "m0.pricing_model": "graduated", "m0.t0.up_to": "100", "action": "add_tier:0"},
    )
    assert 'name="m0.t1.up_to"' in tiered.text
    assert 'value="100"' in tiered.text
    fewer = submit(
        dashboard,
        NEW,
        {
            **data,
            "m0.pricing_model": "graduated",
            "m0.t0.up_to": "100",
            "m0.t1.up_to": "200",
            "action": "remove_tier:0:0",
        },
    )
    assert 'value="200"' in fewer.text
    assert 'value="100"' not in fewer.text
    removed = submit(
        dashboard,
        NEW,
        {
            **data,
            "m1.meter_id": "",
            "m1.price_per_unit": "0.07",
            "action": "remove_meter:0",
        },
    )
    assert 'name="m1.meter_id"' not in removed.text
    assert 'value="0.07"' in removed.text  # the second row is now the first
    credit = submit(dashboard, NEW, {**data, "action": "add_credit"})
    assert 'name="c0.credits_amount"' in credit.text
    assert products_listed(api_client) == []


def test_editing_changes_the_price_and_the_name(dashboard: TestClient, api_client: Any) -> None:  # type: ignore[type-arg]
    meter_id = calls_meter(api_client)
    location = create(dashboard, product_fields(meter_id))
    edit = dashboard.get(location + "/edit")
    assert edit.status_code == 200
    assert 'value="0.02"' in edit.text
    assert 'value="API plan"' in edit.text
    refused = submit(
        dashboard,
        location + "/edit",
        product_fields(meter_id, **{"m0.free_threshold": "-1"}),
        form_page=location + "/edit",
    )
    assert refused.status_code == 422
    answer = submit(
        dashboard,
        location + "/edit",
        product_fields(meter_id, name="API plan 2", **{"m0.price_per_unit": "0.03"}),
        form_page=location + "/edit",
    )
    assert answer.status_code == 303
    page = dashboard.get(location)
    assert "Product saved" in page.text
    assert "1,500 x $0.03 = $45.00" in page.text
    (listed,) = products_listed(api_client)
    assert (listed["name"], listed["price_detail"]["meters"][0]["price_per_unit"]) == (
        "API plan 2",
        "3",
    )


def test_archive_and_unarchive(dashboard: TestClient, api_client: Any) -> None:  # type: ignore[type-arg]
    location = create(dashboard, product_fields(calls_meter(api_client)))
    answer = submit(dashboard, location + "/archive", {}, form_page=location)
    assert answer.status_code == 303
    assert products_listed(api_client) == []
    assert len(products_listed(api_client, archived=True)) == 1
    archived = dashboard.get("/dashboard/products?archived=true")
    assert "API plan" in archived.text
    assert "No products yet" in dashboard.get("/dashboard/products").text
    assert submit(dashboard, location + "/unarchive", {}, form_page=location).status_code == 303
    assert len(products_listed(api_client)) == 1


def test_another_business_gets_404_for_the_product(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: Any,
    container: Any,
    clock: Any,
) -> None:
    location = create(dashboard, product_fields(calls_meter(api_client)))
    key = container.keys.create("acme", "admin", clock.now)
    with TestClient(create_app(container)) as other:
        assert sign_in(other, key).status_code == 303
        assert other.get(location).status_code == 404
        assert other.get(location + "/edit").status_code == 404
        answer = submit(other, location + "/archive", {}, form_page="/dashboard/products")
        assert answer.status_code == 404
    assert len(products_listed(api_client)) == 1


def test_a_form_without_its_csrf_token_is_refused(dashboard: TestClient, api_client: Any) -> None:  # type: ignore[type-arg]
    data = product_fields(calls_meter(api_client))
    answer = dashboard.post(NEW, data=data, follow_redirects=False)
    assert answer.status_code == 403
    assert products_listed(api_client) == []


def test_a_product_grants_credit_entitlements(dashboard: TestClient, api_client: Any) -> None:  # type: ignore[type-arg]
    meter_id = meter(api_client, "api.call", {"type": "count"})
    entitlement = api_client.post(
        "/credit-entitlements",
        json={
            "name": "API credits",
            "unit": "calls",
            "precision": 0,
            "overage_enabled": False,
            "rollover_enabled": False,
        },
    ).json()["id"]
    data = product_fields(
        meter_id,
        **{
            "m0.credit_entitlement_id": entitlement,
            "m0.meter_units_per_credit": "1",
            **credit_row(
                0,
                credit_entitlement_id=entitlement,
                credits_amount="500",
                low_balance_threshold_percent="10",
            ),
        },
    )
    page = dashboard.get(create(dashboard, data))
    assert "API credits" in page.text
    assert "500 calls" in page.text
    (listed,) = products_listed(api_client)
    product = api_client.get(f"/products/{listed['product_id']}").json()
    assert product["credit_entitlements"][0]["credits_amount"] == "500"
    refused = submit(dashboard, NEW, {**data, "c0.credit_entitlement_id": "cet_nope"})
    assert refused.status_code == 422
    assert "no such credit entitlement" in field_error(refused.text, "c0.credit_entitlement_id")


CREDITS_NEW = "/dashboard/credits/new"


def entitlement_fields(**extra: str) -> dict[str, str]:
    return {
        "form": "credit",
        "name": "API credits",
        "description": "",
        "unit": "calls",
        "precision": "0",
        "currency": "",
        "price_per_unit": "",
        "overage_enabled": "on",
        "overage_behavior": "invoice_at_billing",
        "overage_limit": "",
        "rollover_enabled": "on",
        "rollover_percentage": "50",
        "max_rollover_count": "1",
        "rollover_timeframe_count": "",
        "rollover_timeframe_interval": "",
        "expires_after_days": "",
        **extra,
    }


def entitlements_listed(api_client: Any, deleted: bool = False) -> list[dict[str, Any]]:
    answer = api_client.get("/credit-entitlements", params={"deleted": deleted})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_credit_entitlements_are_created_shown_and_listed(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: Any,
) -> None:
    empty = dashboard.get("/dashboard/credits")
    assert empty.status_code == 200
    assert "No credit entitlements yet" in empty.text
    assert dashboard.get(CREDITS_NEW).status_code == 200
    answer = submit(
        dashboard, CREDITS_NEW, entitlement_fields(currency="USD", price_per_unit="0.01")
    )
    assert answer.status_code == 303, answer.text[:1000]
    page = dashboard.get(answer.headers["location"])
    assert "Credit entitlement created" in page.text
    assert "50% of what is left, at most 1 times" in page.text
    (listed,) = entitlements_listed(api_client)
    assert (listed["name"], listed["rollover_percentage"], listed["price_per_unit"]) == (
        "API credits",
        50,
        "1",
    )
    assert listed["overage_behavior"] == "invoice_at_billing"
    assert "API credits" in dashboard.get("/dashboard/credits").text


def test_a_refused_entitlement_answers_422_next_to_its_field(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: Any,
) -> None:
    cases = [
        ({"name": ""}, "name", "name must be 1 to 255 characters"),
        ({"rollover_percentage": "150"}, "rollover_percentage", "from 0 to 100"),
        ({"precision": "x"}, "precision", "Precision must be a whole number"),
        ({"price_per_unit": "0.01"}, "currency", "Choose the currency"),
    ]
    for change, name, message in cases:
        answer = submit(dashboard, CREDITS_NEW, entitlement_fields(**change))
        assert answer.status_code == 422, change
        assert message in field_error(answer.text, name), change
    assert entitlements_listed(api_client) == []


def test_an_entitlement_is_edited_and_deleted_after_a_confirmation(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: Any,
) -> None:
    location = submit(dashboard, CREDITS_NEW, entitlement_fields()).headers["location"]
    edit = dashboard.get(location + "/edit")
    assert 'value="API credits"' in edit.text
    refused = submit(
        dashboard,
        location + "/edit",
        entitlement_fields(max_rollover_count="-1"),
        form_page=location + "/edit",
    )
    assert refused.status_code == 422
    assert "max_rollover_count must be" in field_error(refused.text, "max_rollover_count")
    saved = submit(
        dashboard,
        location + "/edit",
        entitlement_fields(name="Calls", rollover_enabled=""),
        form_page=location + "/edit",
    )
    assert saved.status_code == 303
    (listed,) = entitlements_listed(api_client)
    assert (listed["name"], listed["rollover_enabled"], listed["precision"]) == ("Calls", False, 0)
    confirm = dashboard.get(location + "/delete")
    assert confirm.status_code == 200
    assert "Delete Calls?" in confirm.text
    assert entitlements_listed(api_client) != []  # the confirmation page wrote nothing
    deleted = submit(dashboard, location + "/delete", {}, form_page=location + "/delete")
    assert deleted.status_code == 303
    assert entitlements_listed(api_client) == []
    assert len(entitlements_listed(api_client, deleted=True)) == 1
    assert "Undelete" in dashboard.get(location).text
    assert submit(dashboard, location + "/undelete", {}, form_page=location).status_code == 303
    assert len(entitlements_listed(api_client)) == 1


def test_grants_show_in_the_balances_and_refusals_name_the_field(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: Any,
) -> None:
    location = submit(dashboard, CREDITS_NEW, entitlement_fields()).headers["location"]
    customer = make_customer(api_client)
    entry = {"customer_id": customer, "amount": "250", "entry_type": "credit", "reason": "promo"}
    answer = submit(dashboard, location + "/entries", entry, form_page=location)
    assert answer.status_code == 303, answer.text[:1000]
    page = dashboard.get(location)
    assert "Granted credits" in page.text
    assert f'href="/dashboard/customers/{customer}"' in page.text
    assert "250 calls" in page.text
    unknown = submit(
        dashboard, location + "/entries", {**entry, "customer_id": "cus_nope"}, form_page=location
    )
    assert unknown.status_code == 422
    assert "not found" in field_error(unknown.text, "customer_id")
    bad = submit(dashboard, location + "/entries", {**entry, "amount": "2.5"}, form_page=location)
    assert bad.status_code == 422
    assert field_error(bad.text, "amount")
    entitlement_id = location.rsplit("/", 1)[1]
    balances = api_client.get(f"/credit-entitlements/{entitlement_id}/balances").json()["items"]
    assert [b["balance"] for b in balances] == ["250"]


def test_another_business_gets_404_for_the_entitlement(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: Any,
    container: Any,
    clock: Any,
) -> None:
    location = submit(dashboard, CREDITS_NEW, entitlement_fields()).headers["location"]
    key = container.keys.create("acme", "admin", clock.now)
    with TestClient(create_app(container)) as other:
        assert sign_in(other, key).status_code == 303
        for path in (location, location + "/edit", location + "/delete"):
            assert other.get(path).status_code == 404, path
        answer = submit(other, location + "/delete", {}, form_page="/dashboard/credits")
        assert answer.status_code == 404
    assert len(entitlements_listed(api_client)) == 1

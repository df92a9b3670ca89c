"""The dashboard's customers and subscriptions over HTTP: list, search, create, edit, the
customer page with this cycle's $30.00, the portal link, subscribing, cancelling."""

from __future__ import annotations

import html
import re
from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from tests.api.dashboard_helpers import api_client, dashboard, sign_in, submit
from tests.api.helpers import make_customer
from tests.api.test_billing_api import meter, product, send, started

__all__ = ["api_client", "dashboard"]

Client = TestClient  # type: ignore[type-arg]
PORTAL_LINK = re.compile(r'<code id="portal-link">([^<]+)</code>')


def field_error(page: str, field: str) -> str:
    """The error message shown next to ``field``."""
    found = re.search(rf'id="{field}-error" role="alert">([^<]+)<', page)
    assert found, f"no error next to {field}"
    return html.unescape(found.group(1))


def quickstart(api: Client, clock: Any) -> tuple[str, str]:
    """Ada subscribed to $0.02 a call above 1,000 free, with 2,500 calls this cycle."""
    cid = make_customer(api)
    calls = meter(api, "api.call", {"type": "count"})
    subscription_id = started(api, cid, product(api, [(calls, "2", 1000)]), clock)
    send(api, clock, cid, "api.call", 2500)
    return cid, subscription_id


def test_the_customer_list_is_empty_then_lists_and_searches(
    dashboard: Client, api_client: Client
) -> None:
    empty = dashboard.get("/dashboard/customers")
    assert empty.status_code == 200
    assert "No customers yet" in empty.text
    assert 'href="/dashboard/customers/new"' in empty.text
    make_customer(api_client, "ada@example.com", "Ada Lovelace")
    make_customer(api_client, "grace@example.com", "Grace Hopper")
    listed = dashboard.get("/dashboard/customers")
    assert "Ada Lovelace" in listed.text
    assert "Grace Hopper" in listed.text
    by_name = dashboard.get("/dashboard/customers", params={"q": "hopp"})
    assert "Grace Hopper" in by_name.text
    assert "Ada Lovelace" not in by_name.text
    by_email = dashboard.get("/dashboard/customers", params={"q": "ADA@example.com"})
    assert "Ada Lovelace" in by_email.text
    assert "Grace Hopper" not in by_email.text
    none = dashboard.get("/dashboard/customers", params={"q": "nobody"})
    assert "No customer matches" in none.text


def test_a_customer_is_created_through_the_form(dashboard: Client, api_client: Client) -> None:
    form = dashboard.get("/dashboard/customers/new")
    assert '<label for="name">Name</label>' in form.text
    assert '<label for="email">Email</label>' in form.text
    answer = submit(
        dashboard,
        "/dashboard/customers/new",
        {"name": "Ada", "email": "ada@example.com", "phone_number": ""},
    )
    assert answer.status_code == 303
    location = answer.headers["location"]
    customer_id = location.rsplit("/", 1)[1]
    page = dashboard.get(location)
    assert page.status_code == 200
    assert "Customer created" in page.text
    body = api_client.get(f"/customers/{customer_id}").json()
    assert (body["name"], body["email"], body["phone_number"]) == ("Ada", "ada@example.com", None)


def test_a_bad_email_or_a_missing_name_is_refused_next_to_its_field(
    dashboard: Client, api_client: Client
) -> None:
    bad = submit(
        dashboard,
        "/dashboard/customers/new",
        {"name": "Ada", "email": "not-an-address", "phone_number": ""},
    )
    assert bad.status_code == 422
    assert "is not a valid address" in field_error(bad.text, "email")
    assert 'value="not-an-address"' in bad.text  # what was typed stays
    nameless = submit(
        dashboard, "/dashboard/customers/new", {"name": " ", "email": "ada@example.com"}
    )
    assert nameless.status_code == 422
    assert field_error(nameless.text, "name") == "Enter the customer's name."
    assert api_client.get("/customers").json()["items"] == []


def test_a_customer_is_edited_as_the_api_allows(dashboard: Client, api_client: Client) -> None:
    cid = make_customer(api_client)
    path = f"/dashboard/customers/{cid}/edit"
    assert 'value="ada@example.com"' in dashboard.get(path).text
    refused = submit(dashboard, path, {"name": "Ada", "email": "nope", "phone_number": ""})
    assert refused.status_code == 422
    assert "is not a valid address" in field_error(refused.text, "email")
    changed = {"name": "Ada King", "email": "ada@king.example", "phone_number": "+44 20 1234"}
    answer = submit(dashboard, path, changed)
    assert answer.status_code == 303
    assert "Customer updated" in dashboard.get(answer.headers["location"]).text
    body = api_client.get(f"/customers/{cid}").json()
    assert (body["name"], body["email"], body["phone_number"]) == tuple(changed.values())


def test_the_customer_page_shows_this_cycle_at_30_dollars_with_a_chart(
    dashboard: Client, api_client: Client, clock: Any
) -> None:
    cid, subscription_id = quickstart(api_client, clock)
    page = dashboard.get(f"/dashboard/customers/{cid}")
    assert page.status_code == 200
    assert "$30.00" in page.text
    assert "2,500" in page.text
    assert "<rect" in page.text
    assert f'href="/dashboard/subscriptions/{subscription_id}"' in page.text
    assert f'href="/dashboard/subscriptions/new?customer_id={cid}"' in page.text
    assert "No finalized invoices yet" in page.text


def test_the_portal_link_button_makes_a_link_that_opens_the_portal(
    dashboard: Client, api_client: Client, clock: Any
) -> None:
    cid, _ = quickstart(api_client, clock)
    path = f"/dashboard/customers/{cid}/portal-link"
    answer = submit(dashboard, path, {}, form_page=f"/dashboard/customers/{cid}")
    assert answer.status_code == 200
    found = PORTAL_LINK.search(answer.text)
    assert found, answer.text[:500]
    link = html.unescape(found.group(1))
    assert "/portal/" in link
    portal = TestClient(dashboard.app).get(link.split("testserver.local", 1)[-1])
    assert portal.status_code == 200
    assert "$30.00" in portal.text
    assert not PORTAL_LINK.search(dashboard.get(f"/dashboard/customers/{cid}").text)  # once


def test_a_subscription_is_created_through_the_form(dashboard: Client, api_client: Client) -> None:
    cid = make_customer(api_client)
    calls = meter(api_client, "api.call", {"type": "count"})
    product_id = product(api_client, [(calls, "2", 1000)])
    form = dashboard.get("/dashboard/subscriptions/new", params={"customer_id": cid})
    assert form.status_code == 200
    assert '<label for="customer_id">Customer</label>' in form.text
    assert '<label for="product_id">Product</label>' in form.text
    assert '<label for="start_date">Start date</label>' in form.text
    assert f'<option value="{cid}" selected>' in form.text
    assert "Create subscription" in form.text
    data = {"customer_id": cid, "product_id": product_id, "start_date": "", "quantity": "1"}
    answer = submit(dashboard, "/dashboard/subscriptions/new", {**data, "country": "US"})
    assert answer.status_code == 303, answer.text
    subscription_id = answer.headers["location"].rsplit("/", 1)[1]
    [listed] = api_client.get("/subscriptions", params={"customer_id": cid}).json()["items"]
    assert (listed["subscription_id"], listed["status"]) == (subscription_id, "active")
    page = dashboard.get(answer.headers["location"])
    assert page.status_code == 200
    assert "Subscription created" in page.text
    assert "Invoice so far" in page.text
    listing = dashboard.get("/dashboard/subscriptions", params={"status": "active"})
    assert subscription_id in listing.text
    assert (
        subscription_id
        not in dashboard.get("/dashboard/subscriptions", params={"status": "cancelled"}).text
    )


def test_a_subscription_to_an_unknown_product_is_refused(
    dashboard: Client, api_client: Client
) -> None:
    cid = make_customer(api_client)
    data = {"customer_id": cid, "product_id": "pdt_nope", "quantity": "1", "country": "US"}
    answer = submit(dashboard, "/dashboard/subscriptions/new", {**data, "start_date": ""})
    assert answer.status_code == 422
    assert "does not exist" in field_error(answer.text, "product_id")
    late = submit(
        dashboard, "/dashboard/subscriptions/new", {**data, "start_date": "2030-01-01T00:00"}
    )
    assert late.status_code == 422
    assert api_client.get("/subscriptions").json()["items"] == []


def test_a_subscription_is_cancelled_after_a_confirmation_step(
    dashboard: Client, api_client: Client, clock: Any
) -> None:
    _, subscription_id = quickstart(api_client, clock)
    path = f"/dashboard/subscriptions/{subscription_id}/cancel"
    confirm = dashboard.get(path)
    assert confirm.status_code == 200
    assert "Cancel at next billing date" in confirm.text
    answer = submit(dashboard, path, {"comment": "too dear"})
    assert answer.status_code == 303
    assert "Withdraw cancellation" in dashboard.get(answer.headers["location"]).text
    body = api_client.get(f"/subscriptions/{subscription_id}").json()
    assert body["cancel_at_next_billing_date"] is True


def test_another_businesss_customer_and_subscription_answer_404(
    dashboard: Client, api_client: Client, clock: Any, container: Any
) -> None:
    cid, subscription_id = quickstart(api_client, clock)
    with TestClient(create_app(container)) as other:
        assert sign_in(other, container.keys.create("acme", "admin", clock.now)).status_code == 303
        for path in (
            f"/dashboard/customers/{cid}",
            f"/dashboard/customers/{cid}/edit",
            f"/dashboard/subscriptions/{subscription_id}",
            f"/dashboard/subscriptions/{subscription_id}/cancel",
        ):
            assert other.get(path).status_code == 404, path
        link = submit(other, f"/dashboard/customers/{cid}/portal-link", {}, form_page="/dashboard")
        assert link.status_code == 404
        assert "Ada" not in other.get("/dashboard/customers").text


def test_a_form_without_its_csrf_token_is_refused(dashboard: Client, api_client: Client) -> None:
    answer = dashboard.post(
        "/dashboard/customers/new",
        data={"name": "Ada", "email": "ada@example.com"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert api_client.get("/customers").json()["items"] == []

"""The dashboard in a real browser: the README's quickstart walked through its pages.

Sign in with the admin key, create a count meter of ``api.call``, a product pricing
it at $0.02 above 1,000 free, a customer and its subscription; send 2,500 events
through the API and read $30.00 on the customer's open invoice beside a chart of
them; build a filtered meter with the filter builder and see it count only its
events; open the customer's portal link and see that customer alone, and see the
link refused once it has expired. No page may write a console error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, expect

from infrastructure.runtime import tick
from tests.api.helpers import make_customer
from tests.api.test_billing_api import meter, product, send, subscribe
from tests.browser.conftest import WatchedPage
from tests.conftest import BOOTSTRAP_KEY, LiveServer, start_live_server


@pytest.fixture
def live(container: Any) -> Iterator[LiveServer]:
    server = start_live_server(container)
    yield server
    server.stop()


def api(live: LiveServer) -> httpx.Client:
    headers = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
    return httpx.Client(base_url=live.base_url, headers=headers, timeout=30)


def sign_in(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in"))
    page.get_by_label("API key").fill(BOOTSTRAP_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def create_meter(page: Page, base_url: str, name: str, *, pro_only: bool = False) -> str:
    page.goto(f"{base_url}/dashboard/meters/new")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Event name").fill("api.call")
    page.get_by_label("Aggregation", exact=True).select_option("count")
    page.get_by_label("Measurement unit").fill("calls")
    if pro_only:
        page.get_by_role("button", name="Add condition").first.click()
        page.get_by_label("Filter key").first.fill("tier")
        page.get_by_label("Filter operator").first.select_option("equals")
        page.get_by_label("Filter value").first.fill("pro")
    page.get_by_role("button", name="Create meter").click()
    expect(page.get_by_text("Meter created")).to_be_visible()
    return page.url.split("/dashboard/meters/")[1].split("?")[0]


def test_the_quickstart_in_the_dashboard(
    container: Any, clock: Any, live: LiveServer, watched: WatchedPage
) -> None:
    page, base = watched.page, live.base_url
    sign_in(page, base)

    create_meter(page, base, "API calls")

    page.goto(f"{base}/dashboard/products/new")
    page.get_by_label("Name", exact=True).fill("API plan")
    page.get_by_label("Meter", exact=True).first.select_option(label="API calls (calls)")
    page.get_by_label("Price per unit").first.fill("0.02")
    page.get_by_label("Free threshold").first.fill("1000")
    page.get_by_role("button", name="Create product").click()
    expect(page.get_by_text("Product created")).to_be_visible()
    expect(page.locator("body")).to_contain_text("1,500")  # the worked example's billed units

    page.goto(f"{base}/dashboard/customers/new")
    page.get_by_label("Name", exact=True).fill("Ada Lovelace")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("button", name=re.compile("Create")).click()
    expect(page.get_by_text("Customer created")).to_be_visible()
    customer_page = page.url
    customer_id = customer_page.rstrip("/").split("/")[-1]
    with api(live) as client:
        make_customer(client, email="grace@example.com", name="Grace Hopper")

    page.goto(f"{base}/dashboard/subscriptions/new?customer_id={customer_id}")
    page.get_by_label("Product", exact=True).select_option(label="API plan")
    page.get_by_role("button", name="Create subscription").click()
    expect(page.locator("body")).to_contain_text("API plan")

    clock.advance(timedelta(minutes=30))  # the events fall in the open cycle
    with api(live) as client:
        send(client, clock, customer_id, "api.call", 2500)

    page.goto(customer_page)
    body = page.locator("body")
    expect(body).to_contain_text("$30.00")  # 2,500 calls - 1,000 free = 1,500 x $0.02
    expect(body).to_contain_text("2,500")
    assert page.locator("svg rect.bar").count() >= 1  # the usage chart has its bars
    assert watched.errors == []


def test_a_filtered_meter_built_in_the_filter_builder_counts_its_events(
    container: Any, clock: Any, live: LiveServer, watched: WatchedPage
) -> None:
    page, base = watched.page, live.base_url
    sign_in(page, base)
    meter_id = create_meter(page, base, "Pro calls", pro_only=True)
    with api(live) as client:
        customer = make_customer(client, email="pro@example.com", name="Pro Customer")
        send(client, clock, customer, "api.call", 40, tier="pro")
        send(client, clock, customer, "api.call", 25, tier="free")
    page.goto(f"{base}/dashboard/meters/{meter_id}?window=hour")
    body = page.locator("body")
    expect(body).to_contain_text("tier")
    expect(body).to_contain_text(re.compile(r"\b40 calls\b"))  # the total of the range
    expect(body).not_to_contain_text("65 calls")  # the free-tier calls are not counted
    expect(body).to_contain_text("Pro Customer")  # the top customers
    assert page.locator("svg rect.bar").count() >= 1
    assert watched.errors == []


def test_the_portal_link_shows_one_customer_and_expires(
    container: Any, clock: Any, live: LiveServer, watched: WatchedPage
) -> None:
    page, base = watched.page, live.base_url
    with api(live) as client:
        ada = make_customer(client, email="ada@example.com", name="Ada Lovelace")
        make_customer(client, email="grace@example.com", name="Grace Hopper")
    sign_in(page, base)
    page.goto(f"{base}/dashboard/customers/{ada}")
    page.get_by_role("button", name=re.compile("portal link", re.IGNORECASE)).click()
    link = page.locator("a[href*='/portal/'], code:has-text('/portal/')").first
    expect(link).to_be_visible()
    href = link.get_attribute("href") or link.inner_text()
    page.goto(href.strip())
    body = page.locator("body")
    expect(body).to_contain_text("Ada Lovelace")
    expect(body).not_to_contain_text("Grace")
    clock.advance(timedelta(hours=2))  # the link's default lifetime is one hour
    answer = page.goto(href.strip())
    assert answer is not None
    assert answer.status == 403
    expect(page.locator("body")).to_contain_text("expired")
    assert [e for e in watched.errors if "403" not in e] == []  # the refusal is the page


def test_a_dashboard_form_refuses_bad_input_with_a_message(
    container: Any, live: LiveServer, watched: WatchedPage
) -> None:
    page, base = watched.page, live.base_url
    sign_in(page, base)
    page.goto(f"{base}/dashboard/meters/new")
    page.get_by_label("Name", exact=True).fill("Tokens")
    page.get_by_label("Event name").fill("api.call")
    page.get_by_label("Aggregation", exact=True).select_option("sum")
    page.get_by_role("button", name="Create meter").click()  # a sum needs its key
    expect(page.locator(".field-error").first).to_be_visible()
    assert page.locator(".field-error").first.inner_text().strip() != ""
    assert [e for e in watched.errors if "422" not in e] == []


def test_every_page_renders_without_a_console_error(
    container: Any, clock: Any, live: LiveServer, watched: WatchedPage
) -> None:
    page, base = watched.page, live.base_url
    with api(live) as client:
        ada = make_customer(client, email="ada@example.com", name="Ada Lovelace")
        calls = meter(client, "api.call", {"type": "count"})
        plan = product(client, [(calls, "2", 1000)])
        start = (clock.now - timedelta(minutes=30)).isoformat()
        subscription = subscribe(client, ada, plan, start_date=start).json()["subscription_id"]
        send(client, clock, ada, "api.call", 1200)
        entitlement = client.post(
            "/credit-entitlements",
            json={
                "name": "API credits",
                "unit": "calls",
                "precision": 0,
                "overage_enabled": False,
                "rollover_enabled": False,
            },
        ).json()["id"]
        hook = client.post("/webhooks", json={"url": "http://127.0.0.1:1/hook"}).json()["id"]
        alert = client.post(
            "/alerts", json={"meter_id": calls, "threshold": "100", "period": "day"}
        )
        assert alert.status_code in (200, 201), alert.text
        clock.advance(timedelta(days=32))  # the cycle ends and is invoiced
        tick(container, catch_up=True)
        invoices = client.get("/invoices", params={"subscription_id": subscription}).json()
        invoice = invoices["items"][0]["invoice_id"]
        event_id = client.get("/events", params={"customer_id": ada}).json()["items"][0]["event_id"]
    sign_in(page, base)
    paths = [
        "/dashboard",
        "/dashboard/meters",
        f"/dashboard/meters/{calls}",
        f"/dashboard/meters/{calls}?window=day",
        f"/dashboard/meters/{calls}?window=month",
        f"/dashboard/meters/{calls}/edit",
        "/dashboard/meters/new",
        "/dashboard/products",
        f"/dashboard/products/{plan}",
        f"/dashboard/products/{plan}/edit",
        "/dashboard/products/new",
        "/dashboard/customers",
        f"/dashboard/customers/{ada}",
        f"/dashboard/customers/{ada}/edit",
        "/dashboard/customers/new",
        "/dashboard/subscriptions",
        f"/dashboard/subscriptions/{subscription}",
        "/dashboard/subscriptions/new",
        "/dashboard/invoices",
        f"/dashboard/invoices/{invoice}",
        f"/dashboard/invoices/{invoice}/explain",
        "/dashboard/events",
        f"/dashboard/events/void?event_id={quote(event_id, safe='')}",
        "/dashboard/credits",
        f"/dashboard/credits/{entitlement}",
        "/dashboard/credits/new",
        "/dashboard/alerts",
        "/dashboard/alerts/new",
        "/dashboard/webhooks",
        f"/dashboard/webhooks/{hook}",
        "/dashboard/webhooks/new",
        "/dashboard/api-keys",
        "/dashboard/api-keys/audit",
    ]
    for path in paths:
        answer = page.goto(base + path)
        assert answer is not None
        assert answer.status == 200, path
        assert page.locator("h1").count() == 1, path
        assert page.locator(".side nav a.active").count() == 1, path
    page.goto(f"{base}/dashboard/invoices/{invoice}")
    page.get_by_role("button", name=re.compile("Re-fold")).click()
    expect(page.locator(".match")).to_contain_text("The hash matches")
    assert watched.errors == []


def test_csrf_and_another_business_are_refused_in_the_browser(
    container: Any, clock: Any, live: LiveServer, watched: WatchedPage
) -> None:
    page, base = watched.page, live.base_url
    with api(live) as client:
        ada = make_customer(client, email="ada@example.com", name="Ada Lovelace")
    other_key = container.keys.create("acme", "admin", clock.now)
    page.goto(f"{base}/dashboard/sign-in")
    page.get_by_label("API key").fill(other_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    answer = page.goto(f"{base}/dashboard/customers/{ada}")  # the default business's
    assert answer is not None
    assert answer.status == 404
    expect(page.locator("body")).not_to_contain_text("Ada")
    page.goto(f"{base}/dashboard/customers/new")
    page.get_by_label("Name", exact=True).fill("Mallory")
    page.get_by_label("Email").fill("mallory@example.com")
    page.locator("main input[name=_csrf_token]").evaluate("field => { field.value = 'forged'; }")
    page.get_by_role("button", name="Create customer").click()
    expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    forged = page.request.post(
        f"{base}/dashboard/customers/new", form={"name": "Eve", "email": "eve@example.com"}
    )
    assert forged.status == 403  # the session cookie alone is not enough
    with api(live) as client:
        names = [c["name"] for c in client.get("/customers").json()["items"]]
    assert names == ["Ada Lovelace"]  # nothing was written for the refused forms
    assert [e for e in watched.errors if "403" not in e and "404" not in e] == []


def test_forms_refuse_bad_input_next_to_the_field(
    container: Any, live: LiveServer, watched: WatchedPage
) -> None:
    page, base = watched.page, live.base_url
    sign_in(page, base)
    cases = [
        ("/dashboard/customers/new", {"Name": "Ada", "Email": "not-an-email"}, "Create customer"),
        ("/dashboard/webhooks/new", {"URL": "ftp://example.com/hook"}, "Create endpoint"),
        ("/dashboard/products/new", {"Name": ""}, "Create product"),
        ("/dashboard/alerts/new", {"Threshold": "-5"}, "Create alert"),
    ]
    for path, fields, button in cases:
        page.goto(base + path)
        for label, value in fields.items():
            page.get_by_label(label, exact=True).fill(value)
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.get_by_role("button", name=button).click()
        assert posted.value.status == 422, path
        message = page.locator(".field-error, .error-box").first
        expect(message).to_be_visible()
        assert message.inner_text().strip(), path
    assert [e for e in watched.errors if "422" not in e] == []

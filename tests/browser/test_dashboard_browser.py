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

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.api.helpers import make_customer
from tests.api.test_billing_api import send
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

"""The customer portal in a real browser: the page a customer opens from the link."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from tests.api.helpers import make_customer
from tests.api.test_billing_api import meter, product, send, subscribe
from tests.browser.conftest import WatchedPage
from tests.conftest import BOOTSTRAP_KEY, start_live_server


def portal_link(base_url: str, customer_id: str) -> str:
    response = httpx.post(
        f"{base_url}/customers/{customer_id}/customer-portal/session",
        headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"},
    )
    assert response.status_code == 200, response.text
    link: str = response.json()["link"]
    return link


def api(live: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
    return httpx.Client(base_url=live.base_url, headers=headers, timeout=30)


def test_a_customer_sees_their_usage_and_invoice_and_no_one_else(
    container: Any, clock: Any, watched: WatchedPage
) -> None:
    live = start_live_server(container)
    try:
        with api(live) as client:
            ada = make_customer(client, email="ada@example.com", name="Ada Lovelace")
            grace = make_customer(client, email="grace@example.com", name="Grace Hopper")
            calls = meter(client, "api.call", {"type": "count"})
            plan = product(client, [(calls, "2", 1000)])
            for customer in (ada, grace):
                start = (clock.now - timedelta(minutes=30)).isoformat()
                assert subscribe(client, customer, plan, start_date=start).status_code == 200
            send(client, clock, ada, "api.call", 2500)
            send(client, clock, grace, "api.call", 7)
        watched.page.goto(portal_link(live.base_url, ada))
        body = watched.page.inner_text("body")
        assert "Ada Lovelace" in body
        assert "$30.00" in body  # 2,500 calls - 1,000 free = 1,500 x $0.02
        assert "Grace" not in body
        assert watched.page.locator("svg").count() >= 1  # the usage chart
        assert watched.errors == []
    finally:
        live.stop()


def test_an_expired_link_is_refused_with_a_page_that_says_so(
    container: Any, clock: Any, watched: WatchedPage
) -> None:
    live = start_live_server(container)
    try:
        with api(live) as client:
            ada = make_customer(client, name="Ada Lovelace")
        link = portal_link(live.base_url, ada)
        clock.advance(timedelta(hours=2))
        response = watched.page.goto(link)
        assert response is not None
        assert response.status == 403
        body = watched.page.inner_text("body")
        assert "expired" in body
        assert "Ada" not in body
        altered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        response = watched.page.goto(altered)
        assert response is not None
        assert response.status == 403
        assert "not valid" in watched.page.inner_text("body")
    finally:
        live.stop()

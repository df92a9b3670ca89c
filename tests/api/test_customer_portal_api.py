"""The customer portal: a signed link from the SDK's call, and the read-only page it opens.

The worked example (2,500 ``api.call`` events, 1,000 free, 2 cents each: $30.00)
is billed to Ada; Grace, another customer of the same business, has her own
usage, and a second business has its own customer. Ada's page must show her
figures formatted and nothing of theirs; an altered, foreign or expired link
gets the 403 page, never a 500 and never data.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from dodopayments import DodoPayments

from api.routes import portal as portal_routes
from application.errors import UnavailableError
from infrastructure.runtime import close_cycles
from tests.api.helpers import assert_error, bearer, client_for, make_customer
from tests.api.test_billing_api import meter, product, send, started
from tests.api.test_credits_api import entitlement
from tests.conftest import BOOTSTRAP_KEY, start_live_server

SECURITY_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}


def link_for(client: Any, cid: str, **params: Any) -> str:
    response = client.post(f"/customers/{cid}/customer-portal/session", params=params)
    assert response.status_code == 200, response.text
    link: str = response.json()["link"]
    return link


def path_of(link: str) -> str:
    return urlsplit(link).path


def token_of(link: str) -> str:
    return path_of(link).removeprefix("/portal/")


def open_page(client: Any, link_or_token: str) -> Any:
    token = token_of(link_or_token) if "/" in link_or_token else link_or_token
    return client.get(f"/portal/{token}", headers={"Authorization": ""})


def billed_world(client: Any, clock: Any) -> dict[str, str]:
    """Ada billed $30.00 for 2,500 calls and holding 5 credits; Grace with 7 calls."""
    calls = meter(client, "api.call", {"type": "count"})
    plan = product(client, [(calls, "2", 1000)])
    ada = make_customer(client, "ada@example.com", "Ada Lovelace")
    grace = make_customer(client, "grace@example.com", "Grace Hopper")
    for cid in (ada, grace):
        started(client, cid, plan, clock)  # half an hour ago: the events fall in the cycle
    send(client, clock, ada, "api.call", 2500)
    send(client, clock, grace, "api.call", 7)
    credits = entitlement(client, name="Support minutes", unit="minutes")
    entry = client.post(
        f"/credit-entitlements/{credits}/balances/{ada}/ledger-entries",
        json={"amount": "5", "entry_type": "credit", "reason": "welcome"},
    )
    assert entry.status_code == 200, entry.text
    return {"ada": ada, "grace": grace, "meter": calls, "plan": plan}


def assert_refused(response: Any, *, expired: bool) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("text/html")
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    heading = "This link has expired" if expired else "This link is not valid"
    assert heading in response.text
    if expired:
        assert "Ask the company that bills you for a new link" in response.text
    assert "Ada" not in response.text


def test_the_sdk_makes_a_link_that_opens_the_customers_page(container, clock) -> None:
    live = start_live_server(container)
    try:
        headers = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
        with httpx.Client(base_url=live.base_url, headers=headers) as http:
            cid = make_customer(http, "ada@example.com", "Ada Lovelace")
        sdk = DodoPayments(bearer_token=BOOTSTRAP_KEY, base_url=live.base_url, max_retries=0)
        session = sdk.customers.customer_portal.create(
            cid, return_url="https://app.example.com/account", send_email=False
        )
        assert session.link.startswith(f"{live.base_url}/portal/")
        page = httpx.get(session.link)  # no key: the link is the credential
        assert page.status_code == 200, page.text
        assert "Ada Lovelace" in page.text
        assert 'href="https://app.example.com/account"' in page.text
        assert "Return to app.example.com" in page.text
    finally:
        live.stop()


def test_the_page_shows_this_customers_usage_credit_and_invoice_formatted(client, clock) -> None:
    world = billed_world(client, clock)
    page = open_page(client, link_for(client, world["ada"]))
    assert page.status_code == 200, page.text
    text = page.text
    assert "Ada Lovelace" in text
    assert "2,500 units" in text  # this cycle's usage of the meter
    assert "$30.00" in text  # the open invoice's line, 1,500 billed at $0.02
    assert "$0.02" in text
    assert "Support minutes" in text
    assert "5 minutes left" in text
    assert "welcome" in text  # the ledger entry, with its reason
    assert "UTC" in text
    assert "<svg" in text
    assert 'class="bar"' in text
    assert "No invoices yet: the first is issued on 25 Dec 2026" in text


def test_the_page_shows_nothing_of_another_customer(client, clock) -> None:
    world = billed_world(client, clock)
    text = open_page(client, link_for(client, world["ada"])).text
    assert "Grace" not in text
    assert "grace@example.com" not in text
    assert world["grace"] not in text
    grace_page = open_page(client, link_for(client, world["grace"])).text
    assert "Grace Hopper" in grace_page
    assert "Ada" not in grace_page
    assert "7 units" in grace_page
    assert "2,500" not in grace_page


def test_a_finalized_invoice_is_listed_with_its_lines(make_container, clock) -> None:
    container = make_container()
    with client_for(container) as client:
        world = billed_world(client, clock)
        clock.advance(timedelta(days=31))  # past the cycle's end and its grace
        assert close_cycles(container, catch_up=True)
        text = open_page(client, link_for(client, world["ada"])).text
    invoices = text[text.index("<h2>Invoices</h2>") :]
    assert "25 Nov 2026 to 25 Dec 2026" in invoices
    assert "Issued 26 Dec 2026" in invoices
    assert "$30.00" in invoices
    assert "No invoices yet" not in text


def test_the_page_sends_no_store_no_referrer_and_a_strict_policy(client, clock) -> None:
    cid = make_customer(client)
    page = open_page(client, link_for(client, cid))
    assert page.status_code == 200
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "<script" not in page.text
    assert "style=" not in page.text  # the policy would block it: all style is the sheet
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # nothing from elsewhere


def test_the_stylesheet_is_served_here_without_a_key(client) -> None:
    sheet = client.get("/static/portal.css", headers={"Authorization": ""})
    assert sheet.status_code == 200
    assert sheet.headers["content-type"].startswith("text/css")
    assert "url(" not in sheet.text  # no font or image from anywhere


def test_an_empty_customer_gets_empty_states_that_say_what_comes(client) -> None:
    cid = make_customer(client)
    text = open_page(client, link_for(client, cid)).text
    assert "No active subscription" in text
    assert "No credits" in text
    assert "No invoices yet, and no active subscription to issue one." in text


@pytest.mark.parametrize("position", [0, 10, -40, -1])
def test_a_token_with_one_character_changed_is_refused(client, position) -> None:
    cid = make_customer(client, name="Ada")
    token = token_of(link_for(client, cid))
    index = position % len(token)  # the payload's start, inside it, the signature, its end
    changed = "B" if token[index] != "B" else "C"
    altered = token[:index] + changed + token[index + 1 :]
    assert altered != token
    assert_refused(open_page(client, altered), expired=False)


@pytest.mark.parametrize("token", ["x", "a.b", "a.", ".b", "a.b.c", "%00", "é" * 10, "A" * 5000])
def test_a_malformed_token_is_refused_never_a_500(client, token) -> None:
    assert_refused(open_page(client, token), expired=False)


def test_a_token_naming_another_business_is_refused(client, container, clock) -> None:
    cid = make_customer(client, name="Ada")
    token = token_of(link_for(client, cid))
    payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims[1] = "other"
    forged = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode())
    assert_refused(open_page(client, f"{forged.decode().rstrip('=')}.{signature}"), expired=False)


def test_another_business_cannot_make_a_link_for_this_customer(client, container, clock) -> None:
    cid = make_customer(client, name="Ada")
    other = bearer(container.keys.create("other", "admin", clock.now))
    response = client.post(f"/customers/{cid}/customer-portal/session", headers=other)
    assert_error(response, 404, "not_found")
    theirs = make_customer(client, "bo@example.com", "Bo Zhang", headers=other)
    response = client.post(f"/customers/{theirs}/customer-portal/session", headers=other)
    text = open_page(client, response.json()["link"]).text
    assert "Bo Zhang" in text
    assert "Ada" not in text


def test_an_unknown_customer_has_no_link(client) -> None:
    response = client.post("/customers/cus_nope/customer-portal/session")
    assert_error(response, 404, "not_found")


def test_a_read_key_cannot_make_a_link(client, container, clock) -> None:
    cid = make_customer(client)
    read = bearer(container.keys.create("default", "read", clock.now))
    response = client.post(f"/customers/{cid}/customer-portal/session", headers=read)
    assert_error(response, 403, "forbidden")


def test_a_link_expires_after_an_hour_by_default(client, clock) -> None:
    cid = make_customer(client, name="Ada")
    link = link_for(client, cid)
    clock.advance(timedelta(minutes=59, seconds=59))
    assert open_page(client, link).status_code == 200
    clock.advance(timedelta(seconds=1))
    assert_refused(open_page(client, link), expired=True)


def test_the_links_lifetime_follows_the_setting(make_container, clock) -> None:
    container = make_container(portal_link_seconds=90.0)
    with client_for(container) as client:
        link = link_for(client, make_customer(client, name="Ada"))
        clock.advance(timedelta(seconds=89))
        assert open_page(client, link).status_code == 200
        clock.advance(timedelta(seconds=1))
        assert_refused(open_page(client, link), expired=True)


def test_a_link_opens_on_another_process_and_after_a_restart(make_container, clock) -> None:
    first, second = make_container(), make_container()
    with client_for(first) as client:
        link = link_for(client, make_customer(client, name="Ada Lovelace"))
    first.close()
    with client_for(second) as client:
        assert "Ada Lovelace" in open_page(client, link).text


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "ftp://example.com/", "/relative", "https://", "https://a b.com/"],
)
def test_a_return_url_that_is_not_http_is_refused_naming_the_field(client, url) -> None:
    cid = make_customer(client)
    response = client.post(f"/customers/{cid}/customer-portal/session", params={"return_url": url})
    body = assert_error(response, 422, "invalid_request")
    assert body["detail"] == {"param": "return_url"}
    assert "return_url" in body["message"]


def test_send_email_is_refused_naming_the_field_as_no_email_is_sent(client) -> None:
    cid = make_customer(client)
    path = f"/customers/{cid}/customer-portal/session"
    body = assert_error(client.post(path, params={"send_email": "true"}), 422, "invalid_request")
    assert body["detail"] == {"param": "send_email"}
    assert client.post(path, params={"send_email": "false"}).status_code == 200


@pytest.mark.parametrize(
    "error",
    [
        UnavailableError("the catalogue has not reached position 9 in 10 s; try again shortly"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
    ],
)
def test_a_page_that_cannot_be_read_now_says_to_open_the_link_again(
    client, monkeypatch, error
) -> None:
    link = link_for(client, make_customer(client))

    def lagging(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(portal_routes, "customer_portal", lagging)
    response = open_page(client, link)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["retry-after"] == "2"
    assert response.headers["cache-control"] == "no-store"
    assert "open it again" in response.text

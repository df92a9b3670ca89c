"""The dashboard's shell over HTTP: sign-in, the session cookie, CSRF, sign-out, errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from tests.api.dashboard_helpers import api_client, csrf_token, dashboard, sign_in, submit
from tests.api.helpers import bearer, make_customer
from tests.api.test_billing_api import meter, product, send, subscribe
from tests.conftest import BOOTSTRAP_KEY

__all__ = ["api_client", "dashboard"]


def test_root_redirects_to_the_dashboard_and_it_asks_to_sign_in(container: Any) -> None:
    with TestClient(create_app(container)) as client:
        root = client.get("/", follow_redirects=False)
        assert root.status_code == 302
        assert root.headers["location"] == "/dashboard"
        page = client.get("/dashboard?page=2", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/dashboard/sign-in?next=%2Fdashboard%3Fpage%3D2"
        form = client.get(page.headers["location"])
        assert form.status_code == 200
        assert 'name="api_key"' in form.text
        assert 'value="/dashboard?page=2"' in form.text


def test_signing_in_sets_a_strict_http_only_expiring_cookie(container: Any) -> None:
    with TestClient(create_app(container)) as client:
        answer = sign_in(client)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard"
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("ledger_session=")
        )
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Max-Age=28800" in cookie
        assert "Secure" not in cookie  # plain http here: a Secure cookie would never return
        assert BOOTSTRAP_KEY not in cookie  # the key is not kept, not even encrypted
        overview = client.get("/dashboard")
        assert overview.status_code == 200
        assert "Overview" in overview.text
        assert overview.headers["cache-control"] == "no-store"
        assert "default-src 'self'" in overview.headers["content-security-policy"]


def test_the_session_cookie_is_secure_over_https(container: Any) -> None:
    with TestClient(create_app(container), base_url="https://testserver.local") as client:
        answer = sign_in(client)
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("ledger_session=")
        )
        assert "Secure" in cookie


def test_an_ingest_key_or_a_wrong_key_cannot_sign_in(container: Any) -> None:
    with TestClient(create_app(container)) as client:
        created = client.post(
            "/api-keys", json={"scope": "ingest", "name": "edge"}, headers=bearer(BOOTSTRAP_KEY)
        )
        assert created.status_code == 201, created.text
        ingest_key = created.json()["key"]
        refused = sign_in(client, ingest_key)
        assert refused.status_code == 401
        assert "dashboard needs an admin key" in refused.text
        assert "ledger_session=" not in refused.headers.get("set-cookie", "")
        wrong = sign_in(client, "not-a-key-at-all-0000")
        assert wrong.status_code == 401
        assert "not valid" in wrong.text
        assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_a_form_without_its_csrf_token_is_refused(dashboard: TestClient) -> None:  # type: ignore[type-arg]
    no_token = dashboard.post("/dashboard/sign-out", data={}, follow_redirects=False)
    assert no_token.status_code == 403
    assert "Form refused" in no_token.text
    forged = dashboard.post(
        "/dashboard/sign-out", data={"_csrf_token": "0" * 128}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert dashboard.get("/dashboard").status_code == 200  # still signed in
    login_csrf = TestClient(dashboard.app).post(
        "/dashboard/sign-in", data={"api_key": BOOTSTRAP_KEY}, follow_redirects=False
    )
    assert login_csrf.status_code == 403  # the sign-in form is protected too


def test_signing_out_ends_the_session(dashboard: TestClient) -> None:  # type: ignore[type-arg]
    answer = submit(dashboard, "/dashboard/sign-out", {}, form_page="/dashboard")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/sign-in?reason=signed-out"
    assert "You are signed out." in dashboard.get(answer.headers["location"]).text
    assert dashboard.get("/dashboard", follow_redirects=False).status_code == 303


def test_revoking_the_key_signs_its_sessions_out(container: Any) -> None:
    with TestClient(create_app(container)) as client:
        created = client.post(
            "/api-keys", json={"scope": "admin", "name": "ops"}, headers=bearer(BOOTSTRAP_KEY)
        )
        key = created.json()
        assert sign_in(client, key["key"]).status_code == 303
        assert client.get("/dashboard").status_code == 200
        revoked = client.delete(f"/api-keys/{key['id']}", headers=bearer(BOOTSTRAP_KEY))
        assert revoked.status_code in (200, 204), revoked.text
        gone = client.get("/dashboard", follow_redirects=False)
        assert gone.status_code == 303
        assert "reason=revoked" in gone.headers["location"]


def test_the_session_ends_after_its_lifetime(container: Any, clock: Any) -> None:
    with TestClient(create_app(container)) as client:
        sign_in(client)
        clock.advance(timedelta(hours=8, seconds=1))
        ended = client.get("/dashboard", follow_redirects=False)
        assert ended.status_code == 303
        assert "reason=ended" in ended.headers["location"]


def test_next_never_leads_off_the_dashboard(container: Any) -> None:
    with TestClient(create_app(container)) as client:
        token = csrf_token(client)
        for target in ("https://evil.example/", "//evil.example/x", "/customers", "/\\evil"):
            answer = client.post(
                "/dashboard/sign-in",
                data={"api_key": BOOTSTRAP_KEY, "next": target, "_csrf_token": token},
                follow_redirects=False,
            )
            assert answer.headers["location"] == "/dashboard", target


def test_an_unknown_dashboard_page_is_a_404_page(dashboard: TestClient) -> None:  # type: ignore[type-arg]
    missing = dashboard.get("/dashboard/no-such-page")
    assert missing.status_code == 404
    assert "Not found" in missing.text
    assert missing.headers["content-type"].startswith("text/html")


def test_the_overview_counts_todays_events_per_hour(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
    clock: Any,
) -> None:
    customer = make_customer(api_client)
    events = [
        {
            "event_id": f"e{i}",
            "customer_id": customer,
            "event_name": "api.call",
            "timestamp": clock.now.isoformat(),
        }
        for i in range(7)
    ]
    assert api_client.post("/events/ingest", json={"events": events}).status_code == 200
    page = dashboard.get("/dashboard")
    assert page.status_code == 200
    assert '<div class="value" id="events-today">7</div>' in page.text
    assert "<rect" in page.text  # the hourly chart


def test_the_overview_shows_the_open_cycles_billed_so_far(
    dashboard: TestClient,  # type: ignore[type-arg]
    api_client: TestClient,  # type: ignore[type-arg]
    clock: Any,
) -> None:
    customer = make_customer(api_client)
    plan = product(api_client, [(meter(api_client, "api.call", {"type": "count"}), "2", 1000)])
    start = (clock.now - timedelta(minutes=30)).isoformat()
    assert subscribe(api_client, customer, plan, start_date=start).status_code == 200
    send(api_client, clock, customer, "api.call", 2500)
    first = dashboard.get("/dashboard")
    assert "being added up for the first time" in first.text  # the page did not wait
    dashboard.app.state.open_cycles.stop()  # the refresh the page started has finished
    page = dashboard.get("/dashboard")
    assert "$30.00" in page.text  # 2,500 calls - 1,000 free = 1,500 x $0.02
    assert "1 open cycle ·" in page.text

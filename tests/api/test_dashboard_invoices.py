"""The dashboard's invoices over HTTP: the list, a finalized invoice's page with its lines,
SHA-256 and cut, the explain view, and the re-fold from the log that says the hash matches."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from infrastructure.runtime import close_cycles
from tests.api.dashboard_helpers import api_client, dashboard, sign_in, submit
from tests.api.helpers import make_customer
from tests.api.test_billing_api import meter, product, send, started

__all__ = ["api_client", "dashboard"]

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def finalized(dashboard: Client, api_client: Client, clock: Any, container: Any) -> dict[str, Any]:
    """Ada's first cycle, 2,500 calls at $0.02 above 1,000 free, finalized: $30.00."""
    cid = make_customer(api_client)
    calls = meter(api_client, "api.call", {"type": "count"})
    subscription_id = started(api_client, cid, product(api_client, [(calls, "2", 1000)]), clock)
    send(api_client, clock, cid, "api.call", 2500)
    clock.advance(timedelta(days=35))
    [record] = close_cycles(container, catch_up=True)
    assert sign_in(dashboard).status_code == 303  # the session ended as the month passed
    body: dict[str, Any] = api_client.get(f"/invoices/{record.invoice_id}").json()
    return {"cid": cid, "subscription_id": subscription_id, "invoice": body}


def test_the_invoice_list_is_empty_then_lists_the_finalized_invoice(
    dashboard: Client, finalized: dict[str, Any]
) -> None:
    invoice_id = finalized["invoice"]["invoice_id"]
    listed = dashboard.get("/dashboard/invoices")
    assert listed.status_code == 200
    assert f'href="/dashboard/invoices/{invoice_id}"' in listed.text
    assert "$30.00" in listed.text
    mine = dashboard.get("/dashboard/invoices", params={"customer_id": finalized["cid"]})
    assert invoice_id in mine.text
    other = dashboard.get("/dashboard/invoices", params={"subscription_id": "sub_other"})
    assert invoice_id not in other.text
    assert "No finalized invoice matches" in other.text


def test_no_invoices_yet_says_when_they_come(dashboard: Client) -> None:
    page = dashboard.get("/dashboard/invoices")
    assert page.status_code == 200
    assert "No finalized invoices yet" in page.text


def test_the_invoice_page_shows_its_lines_hash_and_cut(
    dashboard: Client, finalized: dict[str, Any]
) -> None:
    invoice = finalized["invoice"]
    page = dashboard.get(f"/dashboard/invoices/{invoice['invoice_id']}")
    assert page.status_code == 200
    assert "api.call count" in page.text  # the meter's name on its line
    assert "2,500" in page.text
    assert "1,000" in page.text
    assert "$0.02" in page.text
    assert "$30.00" in page.text
    assert f'<dd class="hash" id="sha256">{invoice["sha256"]}</dd>' in page.text
    assert f'<dd class="hash">{invoice["cut"]}</dd>' in page.text
    assert "No credits were drawn" in page.text
    customer = dashboard.get(f"/dashboard/customers/{finalized['cid']}")
    assert f'href="/dashboard/invoices/{invoice["invoice_id"]}"' in customer.text


def test_re_folding_the_invoice_from_the_log_says_the_hash_matches(
    dashboard: Client, finalized: dict[str, Any]
) -> None:
    path = f"/dashboard/invoices/{finalized['invoice']['invoice_id']}"
    answer = submit(dashboard, f"{path}/refold", {}, form_page=path)
    assert answer.status_code == 200
    assert '<p class="match">The hash matches' in answer.text
    assert "MISMATCH" not in answer.text
    assert answer.text.count(finalized["invoice"]["sha256"]) >= 3  # recorded, re-folded, page


def test_the_explain_view_counts_the_events_and_samples_them(
    dashboard: Client, finalized: dict[str, Any]
) -> None:
    page = dashboard.get(f"/dashboard/invoices/{finalized['invoice']['invoice_id']}/explain")
    assert page.status_code == 200
    assert re.search(r"<dt>Events counted</dt><dd>2,500</dd>", page.text)
    assert "Events counted: a sample" in page.text
    assert page.text.count(f"{finalized['cid']}-") == 25  # one page of the events counted
    second = dashboard.get(
        f"/dashboard/invoices/{finalized['invoice']['invoice_id']}/explain", params={"page": 1}
    )
    assert 'rel="prev"' in second.text


def test_another_businesss_invoice_answers_404(
    finalized: dict[str, Any], clock: Any, container: Any
) -> None:
    invoice_id = finalized["invoice"]["invoice_id"]
    with TestClient(create_app(container)) as other:
        assert sign_in(other, container.keys.create("acme", "admin", clock.now)).status_code == 303
        for path in (
            f"/dashboard/invoices/{invoice_id}",
            f"/dashboard/invoices/{invoice_id}/explain",
        ):
            assert other.get(path).status_code == 404, path
        refold = submit(
            other, f"/dashboard/invoices/{invoice_id}/refold", {}, form_page="/dashboard"
        )
        assert refold.status_code == 404
        assert invoice_id not in other.get("/dashboard/invoices").text


def test_a_re_fold_without_its_csrf_token_is_refused(
    dashboard: Client, finalized: dict[str, Any]
) -> None:
    path = f"/dashboard/invoices/{finalized['invoice']['invoice_id']}/refold"
    assert dashboard.post(path, data={}, follow_redirects=False).status_code == 403

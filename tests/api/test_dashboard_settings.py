"""The dashboard's API keys and webhooks pages over HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from domain.webhook import MESSAGE_TYPES
from tests.api.dashboard_helpers import api_client, dashboard, sign_in, submit
from tests.api.helpers import bearer, make_customer
from tests.api.test_credits_api import entitlement

__all__ = ["api_client", "dashboard"]

Client = TestClient  # type: ignore[type-arg]
SECRET = re.compile(r'<code id="new-key">([^<]+)</code>')
KEYS = "/dashboard/api-keys"
HOOKS = "/dashboard/webhooks"


def new_key(dashboard: Client, **form: str) -> tuple[str, str]:
    """Create a key through the form; its id and the key, read off the answer page."""
    answer = submit(dashboard, f"{KEYS}/new", {"name": "", "scope": "ingest", **form})
    assert answer.status_code == 200, answer.text
    token = SECRET.search(answer.text)
    key_id = re.search(r'href="/dashboard/api-keys/(key_[0-9a-f]{16})"', answer.text)
    assert token, answer.text
    assert key_id, answer.text
    return key_id.group(1), token.group(1)


def test_a_new_key_is_shown_once_and_works(dashboard: Client, api_client: Client) -> None:
    form = dashboard.get(f"{KEYS}/new")
    assert '<label for="name">Name</label>' in form.text
    assert '<label for="scope">Scope</label>' in form.text
    answer = submit(dashboard, f"{KEYS}/new", {"name": "checkout", "scope": "admin"})
    assert answer.status_code == 200  # the answer page itself: no redirect to lose the key on
    assert 'class="secret"' in answer.text
    assert "Copy it now: it is not shown again" in answer.text
    token = SECRET.search(answer.text)
    assert token
    assert token.group(1).startswith("ldg_a_")
    assert api_client.get("/customers", headers=bearer(token.group(1))).status_code == 200
    listing = dashboard.get(KEYS)
    assert listing.status_code == 200
    assert "checkout" in listing.text
    assert token.group(1)[:12] in listing.text  # its prefix, to tell it apart
    assert token.group(1) not in listing.text
    [key] = api_client.get("/api-keys").json()["items"]
    assert (key["name"], key["scope"], key["created_by"]) == ("checkout", "admin", "bootstrap")
    page = dashboard.get(f"{KEYS}/{key['id']}")
    assert page.status_code == 200
    assert token.group(1) not in page.text
    assert "created" in page.text  # its audit trail


def test_a_bad_name_or_scope_is_refused_next_to_the_field(
    dashboard: Client, api_client: Client
) -> None:
    long_name = submit(dashboard, f"{KEYS}/new", {"name": "x" * 101, "scope": "read"})
    assert long_name.status_code == 422
    assert 'id="name-error" role="alert">name: 1 to 100 printable characters' in long_name.text
    assert 'value="' + "x" * 101 + '"' in long_name.text
    scope = submit(dashboard, f"{KEYS}/new", {"name": "n", "scope": "root"})
    assert scope.status_code == 422
    assert 'id="scope-error" role="alert">Choose a scope' in scope.text
    assert api_client.get("/api-keys").json()["items"] == []


def test_revoking_asks_first_and_the_key_stops_working(
    dashboard: Client, api_client: Client
) -> None:
    key_id, token = new_key(dashboard, name="edge")
    confirm = dashboard.get(f"{KEYS}/{key_id}/revoke")
    assert confirm.status_code == 200
    assert "Revoke key</button>" in confirm.text
    done = submit(dashboard, f"{KEYS}/{key_id}/revoke", {}, form_page=f"{KEYS}/{key_id}/revoke")
    assert done.status_code == 303
    assert done.headers["location"] == KEYS
    working = dashboard.get(KEYS)
    assert f"API key {key_id} revoked" in working.text
    assert f"<code>{key_id}</code>" not in working.text  # revoked keys are behind the toggle
    everything = dashboard.get(KEYS, params={"inactive": "1"})
    assert f"<code>{key_id}</code>" in everything.text
    assert '<span class="badge bad">revoked</span>' in everything.text
    assert api_client.get(f"/api-keys/{key_id}").json()["status"] == "revoked"
    events = {"events": []}
    assert api_client.post("/events/ingest", json=events, headers=bearer(token)).status_code == 401
    audit = dashboard.get(f"{KEYS}/audit")
    assert audit.status_code == 200
    assert audit.text.count(f"<code>{key_id}</code>") == 2  # created, revoked


def test_the_session_s_own_key_cannot_be_revoked(container: Any, clock: Any) -> None:
    issued = container.keys.issue("default", "admin", clock.now, name="ops")
    owner = issued.record.key_id
    with TestClient(create_app(container)) as client:
        assert sign_in(client, issued.token).status_code == 303
        assert "this session" in client.get(KEYS).text
        refused = submit(client, f"{KEYS}/{owner}/revoke", {}, form_page=KEYS)
        assert refused.status_code == 422
        assert "a key cannot revoke itself" in refused.text
        assert container.keys.get("default", owner).revoked_at is None


def test_rotating_shows_the_new_key_once_and_the_old_one_expires(
    dashboard: Client, api_client: Client
) -> None:
    key_id, old = new_key(dashboard, name="svc", scope="read")
    confirm = dashboard.get(f"{KEYS}/{key_id}/rotate")
    assert "Rotate key</button>" in confirm.text
    answer = submit(dashboard, f"{KEYS}/{key_id}/rotate", {"grace_seconds": "3600"})
    assert answer.status_code == 200
    new = SECRET.search(answer.text)
    assert new
    assert new.group(1) != old
    assert new.group(1).startswith("ldg_r_")
    assert api_client.get(f"/api-keys/{key_id}").json()["status"] == "expiring"
    again = submit(dashboard, f"{KEYS}/{key_id}/rotate", {"grace_seconds": "0"})
    assert again.status_code == 422
    assert "was rotated already" in again.text


def test_another_business_s_key_is_not_found(dashboard: Client, container: Any, clock: Any) -> None:
    key_id, _ = new_key(dashboard)
    other_key = container.keys.create("acme", "admin", clock.now)
    with TestClient(create_app(container)) as other:
        assert sign_in(other, other_key).status_code == 303
        assert other.get(f"{KEYS}/{key_id}").status_code == 404
        assert other.get(f"{KEYS}/{key_id}/revoke").status_code == 404
        assert submit(other, f"{KEYS}/{key_id}/revoke", {}, form_page=KEYS).status_code == 404
        assert key_id not in other.get(KEYS).text
    assert container.keys.get("default", key_id).revoked_at is None


def hook_form(**fields: Any) -> dict[str, Any]:
    return {"url": "https://example.com/hooks", "description": "", "rate_limit": "", **fields}


def created_hook(dashboard: Client, **fields: Any) -> str:
    answer = submit(dashboard, f"{HOOKS}/new", hook_form(**fields))
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"]).removeprefix(f"{HOOKS}/")


def test_the_new_webhook_form_offers_every_message_type(dashboard: Client) -> None:
    form = dashboard.get(f"{HOOKS}/new")
    assert form.status_code == 200
    assert '<label for="url">URL</label>' in form.text
    for message_type in MESSAGE_TYPES:
        assert f'name="filter_types" value="{message_type}"' in form.text
    empty = dashboard.get(HOOKS)
    assert "No webhook endpoints yet" in empty.text


def test_creating_a_webhook_keeps_its_settings(dashboard: Client, api_client: Client) -> None:
    hook = created_hook(
        dashboard,
        description="billing",
        filter_types=["invoice.finalized", "credit.added"],
        rate_limit="5",
        headers="X-Team: ops\nAuthorization: Bearer s3cret\n",
    )
    read = api_client.get(f"/webhooks/{hook}").json()
    assert (read["url"], read["description"], read["rate_limit"]) == (
        "https://example.com/hooks",
        "billing",
        5,
    )
    assert read["filter_types"] == ["credit.added", "invoice.finalized"]
    assert api_client.get(f"/webhooks/{hook}/headers").json() == {
        "headers": {"X-Team": "ops"},
        "sensitive": ["Authorization"],
    }
    page = dashboard.get(f"{HOOKS}/{hook}")
    assert page.status_code == 200
    assert "Webhook created" in page.text
    assert "<code>X-Team: ops</code>" in page.text
    assert "s3cret" not in page.text
    listing = dashboard.get(HOOKS)
    assert "<code>https://example.com/hooks</code>" in listing.text
    assert "<code>invoice.finalized</code>" in listing.text


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"url": "ftp://example.com/x"}, "url", "url: must be an http or https URL"),
        ({"filter_types": ["payment.succeeded"]}, "filter_types", "filter_types[0]: &#39;payment"),
        ({"rate_limit": "0"}, "rate_limit", "rate_limit: an integer from 1"),
        ({"rate_limit": "fast"}, "rate_limit", "rate_limit: an integer from 1"),
        ({"headers": "no colon here"}, "headers", "headers: line 1 is not"),
        ({"headers": "webhook-id: x"}, "headers", "headers.webhook-id: set by the sender"),
    ],
)
def test_a_bad_webhook_is_refused_next_to_the_field(
    dashboard: Client, api_client: Client, fields: dict[str, Any], field: str, message: str
) -> None:
    answer = submit(dashboard, f"{HOOKS}/new", hook_form(**fields), form_page=f"{HOOKS}/new")
    assert answer.status_code == 422
    assert f'id="{field}-error" role="alert">{message}' in answer.text
    assert api_client.get("/webhooks").json()["data"] == []


def test_the_secret_is_revealed_on_request_only(dashboard: Client, api_client: Client) -> None:
    hook = created_hook(dashboard)
    secret = api_client.get(f"/webhooks/{hook}/secret").json()["secret"]
    page = dashboard.get(f"{HOOKS}/{hook}")
    assert "Reveal secret</button>" in page.text
    assert secret not in page.text
    shown = submit(dashboard, f"{HOOKS}/{hook}/secret", {}, form_page=f"{HOOKS}/{hook}")
    assert shown.status_code == 200
    assert f'<code id="signing-secret">{secret}</code>' in shown.text
    assert 'class="secret"' in shown.text


def test_editing_a_webhook_changes_it(dashboard: Client, api_client: Client) -> None:
    hook = created_hook(dashboard, filter_types=["credit.added"])
    form = dashboard.get(f"{HOOKS}/{hook}/edit")
    assert form.status_code == 200
    assert 'value="credit.added" checked' in form.text
    edit = {
        "url": "http://127.0.0.1:9/x",
        "description": "ops",
        "rate_limit": "",
        "filter_types": ["invoice.finalized"],
        "disabled": "on",
        "headers": "X-More: 1",
    }
    refused = submit(dashboard, f"{HOOKS}/{hook}/edit", {**edit, "url": "ftp://x"})
    assert refused.status_code == 422
    assert 'id="url-error"' in refused.text
    assert api_client.get(f"/webhooks/{hook}").json()["url"] == "https://example.com/hooks"
    done = submit(dashboard, f"{HOOKS}/{hook}/edit", edit)
    assert done.status_code == 303
    read = api_client.get(f"/webhooks/{hook}").json()
    assert (read["url"], read["description"], read["disabled"]) == (
        "http://127.0.0.1:9/x",
        "ops",
        True,
    )
    assert read["filter_types"] == ["invoice.finalized"]
    assert api_client.get(f"/webhooks/{hook}/headers").json()["headers"] == {"X-More": "1"}
    assert "Webhook saved" in dashboard.get(f"{HOOKS}/{hook}").text


def test_deleting_a_webhook_asks_first(dashboard: Client, api_client: Client) -> None:
    hook = created_hook(dashboard)
    confirm = dashboard.get(f"{HOOKS}/{hook}/delete")
    assert confirm.status_code == 200
    assert "Delete webhook</button>" in confirm.text
    done = submit(dashboard, f"{HOOKS}/{hook}/delete", {})
    assert done.status_code == 303
    assert done.headers["location"] == HOOKS
    assert api_client.get(f"/webhooks/{hook}").status_code == 404
    assert dashboard.get(f"{HOOKS}/{hook}").status_code == 404


def test_the_messages_table_and_its_retry_button(dashboard: Client, api_client: Client) -> None:
    hook = created_hook(dashboard, url="http://127.0.0.1:1/")
    assert "No messages yet" in dashboard.get(f"{HOOKS}/{hook}").text
    cid = make_customer(api_client)
    ent = entitlement(api_client)
    grant = api_client.post(
        f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries",
        json={"amount": "10", "entry_type": "credit"},
    )
    assert grant.status_code == 200, grant.text
    page = dashboard.get(f"{HOOKS}/{hook}")
    assert page.status_code == 200
    [message] = api_client.get(f"/webhooks/{hook}/messages").json()["data"]
    assert f"<code>{message['id']}</code>" in page.text
    assert "<code>credit.manual_adjustment</code>" in page.text
    assert "Retry</button>" in page.text
    retry = f"{HOOKS}/{hook}/messages/{message['id']}/retry"
    done = submit(dashboard, retry, {}, form_page=f"{HOOKS}/{hook}")
    assert done.status_code == 303
    assert f"Message {message['id']} is sent again now" in dashboard.get(f"{HOOKS}/{hook}").text
    missing = submit(dashboard, f"{HOOKS}/{hook}/messages/msg_none/retry", {}, form_page=HOOKS)
    assert missing.status_code == 404


def test_another_business_s_webhook_is_not_found(
    dashboard: Client, container: Any, clock: Any
) -> None:
    hook = created_hook(dashboard)
    key = container.keys.create("acme", "admin", clock.now)
    with TestClient(create_app(container)) as other:
        assert sign_in(other, key).status_code == 303
        for path in ("", "/edit", "/delete"):
            assert other.get(f"{HOOKS}/{hook}{path}").status_code == 404
        assert submit(other, f"{HOOKS}/{hook}/secret", {}, form_page=HOOKS).status_code == 404
        assert submit(other, f"{HOOKS}/{hook}/delete", {}, form_page=HOOKS).status_code == 404
        assert "No webhook endpoints yet" in other.get(HOOKS).text


def test_the_webhook_form_needs_its_csrf_token(dashboard: Client, api_client: Client) -> None:
    refused = dashboard.post(f"{HOOKS}/new", data=hook_form())
    assert refused.status_code == 403
    assert api_client.get("/webhooks").json()["data"] == []


def test_the_empty_pages_say_what_to_do(dashboard: Client) -> None:
    keys = dashboard.get(KEYS)
    assert keys.status_code == 200
    assert "No API keys yet" in keys.text
    assert "No API keys yet" in dashboard.get(KEYS, params={"inactive": "1"}).text
    assert "Nothing recorded yet" in dashboard.get(f"{KEYS}/audit").text
    hooks = dashboard.get(HOOKS, params={"after": "not-a-cursor"})  # an edited link
    assert hooks.status_code == 200
    assert "No webhook endpoints yet" in hooks.text
    hook = created_hook(dashboard)
    page = dashboard.get(f"{HOOKS}/{hook}", params={"status": "bogus", "after": "%%%"})
    assert page.status_code == 200
    assert dashboard.get(f"{HOOKS}/{hook}", params={"status": "failed"}).status_code == 200
    assert dashboard.get(f"{KEYS}/bootstrap").status_code == 404

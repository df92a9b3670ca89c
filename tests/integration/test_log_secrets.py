"""Nothing secret in any log line: keys, Authorization headers, webhook secrets and headers,
customer portal links.

A full scenario runs against ``ledger serve`` at debug level, its log captured:
keys created on the command line, requests with good, wrong and malformed
keys, an endpoint with a custom header, messages signed and delivered after a
failed attempt, a secret retrieved, a portal link made, opened and opened
altered, errors of every kind. Then every line of
the server's and the command line's output is searched for each secret, whole
and in part (a prefix long enough to matter).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BOOTSTRAP_KEY
from tests.integration.receiver import Receiver
from tests.integration.test_crash import Server

HEADER_SECRET = "hdr-secret-7f3a9c2e41b8d6"
WRONG_KEY = "ldg_a_wrongWRONGwrong0123456789abcdef"


def cli(store_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": store_url,
        "LEDGER_LOG_LEVEL": "debug",
        "LEDGER_LOG_FORMAT": "json",
    }
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *arguments],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_no_log_line_holds_a_key_an_authorization_header_or_a_webhook_secret(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_LOG_LEVEL", "debug")
    monkeypatch.setenv("LEDGER_WEBHOOK_RETRY_SCHEDULE", "0.2,0.2,0.2")
    monkeypatch.setenv("LEDGER_WEBHOOK_POLL_SECONDS", "0.05")
    made = cli(store_url, "keys", "create", "--business", "default", "--scope", "ingest")
    assert made.returncode == 0, made.stderr
    ingest_key = made.stdout.strip()
    receiver = Receiver(answer=lambda number: 500 if number == 0 else 200).start()
    server = Server(store_url, tmp_path / "server.log")
    server.start()
    try:
        with server.client() as http:
            hook = http.post(
                "/webhooks",
                json={"url": f"{receiver.url}/in", "headers": {"X-Token": HEADER_SECRET}},
            )
            assert hook.status_code == 200, hook.text
            hook_id = hook.json()["id"]
            secret = http.get(f"/webhooks/{hook_id}/secret").json()["secret"]
            customer = http.post("/customers", json={"email": "a@example.com", "name": "A"})
            customer_id = customer.json()["customer_id"]
            link = http.post(f"/customers/{customer_id}/customer-portal/session").json()["link"]
            portal_token = link.rsplit("/", 1)[1]
            assert http.get(f"/portal/{portal_token}", headers={"Authorization": ""}
                            ).status_code == 200
            assert http.get(f"/portal/{portal_token[:-2]}xy", headers={"Authorization": ""}
                            ).status_code == 403
            entitlement = http.post(
                "/credit-entitlements",
                json={"name": "Credits", "unit": "calls", "precision": 0,
                      "overage_enabled": False, "rollover_enabled": False},
            ).json()["id"]
            entry = http.post(
                f"/credit-entitlements/{entitlement}/balances/{customer_id}/ledger-entries",
                json={"amount": "5", "entry_type": "credit"},
            )
            assert entry.status_code == 200, entry.text
            events = {"events": [{"event_id": "e1", "customer_id": customer_id,
                                  "event_name": "api.call"}]}
            as_ingest = {"Authorization": f"Bearer {ingest_key}"}
            assert http.post("/events/ingest", json=events, headers=as_ingest).status_code == 200
            assert http.get("/meters", headers=as_ingest).status_code == 403
            for wrong in (f"Bearer {WRONG_KEY}", WRONG_KEY, f"Basic {WRONG_KEY}", "Bearer"):
                assert http.get("/meters", headers={"Authorization": wrong}).status_code == 401
            assert http.post("/events/ingest", content=b"{not json", headers=as_ingest
                             ).status_code == 400
            assert http.get("/webhooks/nope/secret").status_code == 404
        delivered = receiver.wait_for(lambda found: len(found) >= 1, timeout=30)
        assert delivered[0].headers["x-token"] == HEADER_SECRET
        assert len(receiver.requests) >= 2  # one failed attempt, then the delivery
    finally:
        server.stop()
        receiver.stop()
    listed = cli(store_url, "webhooks", "replay", "--since", "2020-01-01T00:00:00Z")
    output = "\n".join(
        [server.output(), made.stderr, listed.stdout, listed.stderr]
    )
    assert '"path": "/events/ingest"' in output  # the log was captured, at debug level
    assert '"path": "/portal/[redacted]"' in output  # the portal requests were logged
    whole = {
        "bootstrap key": BOOTSTRAP_KEY,
        "ingest key": ingest_key,
        "wrong key": WRONG_KEY,
        "webhook secret": secret,
        "webhook secret body": secret.removeprefix("whsec_"),
        "custom header": HEADER_SECRET,
        "portal token": portal_token,
        "portal token signature": portal_token.split(".")[1],
    }
    for name, value in whole.items():
        for piece in {value, value[:16], value[-16:]}:
            assert piece not in output, f"the {name} ({piece!r}) is in the log"
    assert "bearer " not in output.lower()
    assert "authorization" not in output.lower()

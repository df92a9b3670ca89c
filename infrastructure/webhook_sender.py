"""Sending one webhook message over HTTP, signed per the Standard Webhooks spec.

The body is the envelope exactly as the outbox stored it; ``webhook-id`` is the
message's deterministic id, ``webhook-timestamp`` the time of this attempt and
``webhook-signature`` ``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` with the
endpoint's secret (the ``standardwebhooks`` library's own signing). The secret
and the custom headers' values are never logged.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from application.delivery import Outcome, Pending
from application.outbox import Route

USER_AGENT = "ledger-webhooks/1"


class HttpSender:
    """One connection pool for every endpoint; each request bounded by ``timeout``."""

    def __init__(self, timeout: float) -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            trust_env=False,  # no proxy from the environment: the URL is where it goes
        )

    def send(
        self,
        route: Route,
        pending: Pending,
        secret: str,
        headers: dict[str, str],
    ) -> Outcome:
        sent_at = datetime.now(UTC)  # what the receiver compares with its own clock
        body = pending.body.decode()
        signature = Webhook(secret).sign(pending.message_id, sent_at, body)
        request_headers = {
            **headers,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": pending.message_id,
            "webhook-timestamp": str(math.floor(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        try:
            response = self._client.post(route.url, content=pending.body, headers=request_headers)
        except httpx.TimeoutException:
            return Outcome(None, "timed out")
        except httpx.HTTPError as error:
            return Outcome(None, f"{type(error).__name__}: {str(error)[:200]}")
        return Outcome(response.status_code, None if response.is_success else response.text[:200])

    def close(self) -> None:
        self._client.close()

"""Webhook endpoints: create, change, disable, delete; their secrets and custom headers.

The endpoint is an aggregate (``domain.webhook``); its signing secret, in the
Standard Webhooks ``whsec_<base64>`` form, and its custom headers are kept in an
``EndpointSecrets`` store beside the API keys, never in the log. A secret is
stored before its endpoint is saved, so no endpoint is ever without one.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from eventsourcing.persistence import IntegrityError

from application.delivery import STATUSES, MessageQuery, MessageView
from application.errors import ConflictRetryExhaustedError, InvalidParameterError, NotFoundError
from application.ledger import Ledger
from application.reads import OUTBOX, Reads
from domain.webhook import InvalidWebhookError, WebhookEndpoint, webhook_aggregate_id

MAX_HEADERS = 20
MAX_SAVE_ATTEMPTS = 8
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
# Set by the sender itself: a custom header may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "transfer-encoding",
        "connection",
    }
)
SENSITIVE = ("authorization", "cookie", "secret", "token", "key", "password", "signature")


class EndpointSecrets(Protocol):
    """Each endpoint's signing secret and custom headers."""

    def store(self, business_id: str, endpoint_id: str, secret: str) -> None:
        """Keep ``secret`` for the endpoint, unless it has one already."""
        ...

    def secret(self, business_id: str, endpoint_id: str) -> str | None: ...

    def headers(self, business_id: str, endpoint_id: str) -> dict[str, str]: ...

    def set_headers(
        self, business_id: str, endpoint_id: str, headers: Mapping[str, str]
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class HeadersView:
    headers: dict[str, str]  # the values of the headers that are not sensitive
    sensitive: list[str]  # the names of those that are, without their values


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def create_endpoint(
    ledger: Ledger,
    store: EndpointSecrets,
    business_id: str,
    fields: Mapping[str, Any],
    now: datetime,
) -> WebhookEndpoint:
    """A new endpoint; with ``idempotency_key`` the same key gives the same endpoint."""
    key = fields.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 255):
        raise InvalidWebhookError("idempotency_key: 1 to 255 characters")
    endpoint_id = _endpoint_id(business_id, key)
    existing = ledger.load(WebhookEndpoint, webhook_aggregate_id(business_id, endpoint_id))
    if existing is not None:
        return existing
    endpoint = WebhookEndpoint.define(business_id, endpoint_id, fields, now)
    headers = check_headers(fields.get("headers"))
    store.store(business_id, endpoint_id, new_secret())
    if headers:
        store.set_headers(business_id, endpoint_id, headers)
    try:
        ledger.save(endpoint)
    except IntegrityError:  # the same idempotency key, at the same moment
        found = ledger.load(WebhookEndpoint, endpoint.id)
        assert found is not None
        return found
    return endpoint


def _endpoint_id(business_id: str, idempotency_key: str | None) -> str:
    return keyed_id("wh_", business_id, idempotency_key)


def keyed_id(prefix: str, business_id: str, idempotency_key: str | None) -> str:
    """A new id; with an idempotency key, the same id for the same key in the business."""
    if idempotency_key is None:
        return f"{prefix}{secrets.token_hex(12)}"
    digest = hashlib.sha256(f"{business_id}\x1f{idempotency_key}".encode()).hexdigest()
    return f"{prefix}{digest[:24]}"


def load_endpoint(ledger: Ledger, business_id: str, endpoint_id: str) -> WebhookEndpoint:
    found = ledger.load(WebhookEndpoint, webhook_aggregate_id(business_id, endpoint_id))
    if found is None or found.deleted_at is not None:
        raise NotFoundError(f"webhook {endpoint_id!r} not found")
    return found


def update_endpoint(
    ledger: Ledger, business_id: str, endpoint_id: str, changes: Mapping[str, Any], now: datetime
) -> WebhookEndpoint:
    for _ in range(MAX_SAVE_ATTEMPTS):
        endpoint = load_endpoint(ledger, business_id, endpoint_id)
        endpoint.change(changes, now)
        try:
            ledger.save(endpoint)
        except IntegrityError:
            continue  # the delivery loop disabled it meanwhile: look again
        return endpoint
    raise ConflictRetryExhaustedError("the webhook kept changing under this update")


def delete_endpoint(ledger: Ledger, business_id: str, endpoint_id: str, now: datetime) -> None:
    for _ in range(MAX_SAVE_ATTEMPTS):
        endpoint = load_endpoint(ledger, business_id, endpoint_id)
        endpoint.delete(now)
        try:
            ledger.save(endpoint)
        except IntegrityError:
            continue
        return
    raise ConflictRetryExhaustedError("the webhook kept changing under this delete")


def endpoint_secret(
    ledger: Ledger, store: EndpointSecrets, business_id: str, endpoint_id: str
) -> str:
    load_endpoint(ledger, business_id, endpoint_id)
    secret = store.secret(business_id, endpoint_id)
    if secret is None:  # pragma: no cover - a secret is stored before its endpoint
        raise NotFoundError(f"webhook {endpoint_id!r} has no secret")
    return secret


def endpoint_headers(
    ledger: Ledger, store: EndpointSecrets, business_id: str, endpoint_id: str
) -> HeadersView:
    load_endpoint(ledger, business_id, endpoint_id)
    headers = store.headers(business_id, endpoint_id)
    sensitive = sorted(name for name in headers if is_sensitive(name))
    plain = {name: value for name, value in headers.items() if not is_sensitive(name)}
    return HeadersView(plain, sensitive)


def add_headers(
    ledger: Ledger,
    store: EndpointSecrets,
    business_id: str,
    endpoint_id: str,
    headers: object,
) -> None:
    """Add or replace custom headers (the others stay)."""
    load_endpoint(ledger, business_id, endpoint_id)
    store.set_headers(business_id, endpoint_id, _merged(store, business_id, endpoint_id, headers))


def edit_endpoint(
    ledger: Ledger,
    store: EndpointSecrets,
    business_id: str,
    endpoint_id: str,
    changes: Mapping[str, object],
    headers: object,
    now: datetime,
) -> None:
    """Change the endpoint's fields and add or replace custom headers, all checked before
    anything is written: refused headers leave the fields unchanged too."""
    load_endpoint(ledger, business_id, endpoint_id)
    merged = _merged(store, business_id, endpoint_id, headers) if headers else None
    update_endpoint(ledger, business_id, endpoint_id, changes, now)
    if merged is not None:
        store.set_headers(business_id, endpoint_id, merged)


def _merged(
    store: EndpointSecrets, business_id: str, endpoint_id: str, headers: object
) -> dict[str, str]:
    merged = {**store.headers(business_id, endpoint_id), **check_headers(headers)}
    if len(merged) > MAX_HEADERS:
        raise InvalidWebhookError(f"headers: at most {MAX_HEADERS} custom headers")
    return merged


def check_headers(headers: object) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping) or len(headers) > MAX_HEADERS:
        raise InvalidWebhookError(f"headers: an object of at most {MAX_HEADERS} header values")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise InvalidWebhookError(f"headers: {str(name)[:100]!r} is not a header name")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidWebhookError(f"headers.{name}: set by the sender, it cannot be replaced")
        if not isinstance(value, str) or len(value) > 2000 or any(c in value for c in "\r\n\x00"):
            raise InvalidWebhookError(f"headers.{name}: a string of at most 2,000 characters")
        checked[name] = value
    return checked


def is_sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE)


def disable_failing(
    ledger: Ledger, business_id: str, endpoint_id: str, reason: str, now: datetime
) -> None:
    """Disable an endpoint whose every delivery failed for a day (the delivery loop)."""
    for _ in range(MAX_SAVE_ATTEMPTS):
        found = ledger.load(WebhookEndpoint, webhook_aggregate_id(business_id, endpoint_id))
        if found is None:
            return
        found.disable_for_failures(reason, now)
        try:
            ledger.save(found)
        except IntegrityError:
            continue
        return


def endpoint_messages(
    ledger: Ledger, reads: Reads, business_id: str, query: MessageQuery
) -> list[MessageView]:
    """The endpoint's messages in log order, with their delivery state."""
    load_endpoint(ledger, business_id, query.endpoint_id)
    if query.status is not None and query.status not in STATUSES:
        raise InvalidParameterError(f"status: one of {', '.join(STATUSES)}")
    reads.fresh(OUTBOX)
    return reads.delivery.messages(query)


def retry_message(
    ledger: Ledger,
    reads: Reads,
    business_id: str,
    endpoint_id: str,
    message_id: str,
    now: datetime,
) -> MessageView:
    """Send the message again now (delivered or failed ones too), under the same id."""
    load_endpoint(ledger, business_id, endpoint_id)
    if not reads.delivery.retry(endpoint_id, message_id, now):
        raise NotFoundError(f"message {message_id!r} of webhook {endpoint_id!r} not found")
    found = reads.delivery.message(endpoint_id, message_id)
    assert found is not None
    return found


def replay_messages(
    ledger: Ledger,
    reads: Reads,
    business_id: str | None,
    since: datetime,
    endpoint_id: str | None,
    now: datetime,
) -> int:
    """Send every message of facts since ``since`` again (to one endpoint, or all)."""
    if endpoint_id is not None and business_id is not None:
        load_endpoint(ledger, business_id, endpoint_id)
    return reads.delivery.replay(since, endpoint_id, now)

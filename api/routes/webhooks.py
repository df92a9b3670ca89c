"""Webhook endpoints in the SDK's shapes (``client.webhooks``); secrets for admin keys only."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, FromQuery, QueryParameter

from api.routes.common import business_of, container_of
from api.schemas import decode
from application import listings, webhooks
from application.delivery import MessageQuery, MessageView
from application.errors import InvalidParameterError, InvalidRequestError
from application.views import WebhookView
from domain.webhook import WebhookEndpoint
from infrastructure.codec import from_micros, to_micros
from infrastructure.keys import Principal

CREATABLE = frozenset(
    {
        "url",
        "description",
        "disabled",
        "filter_types",
        "headers",
        "idempotency_key",
        "metadata",
        "rate_limit",
    }
)
UPDATABLE = frozenset({"url", "description", "disabled", "filter_types", "metadata", "rate_limit"})
Limit = Annotated[int, QueryParameter(ge=1, le=100, description="endpoints per page, 1 to 100")]


class WebhookRead(msgspec.Struct):
    """The SDK's ``WebhookDetails``."""

    id: str
    created_at: str
    description: str
    metadata: dict[str, str]
    updated_at: str
    url: str
    disabled: bool
    filter_types: list[str]
    rate_limit: int | None
    disabled_reason: str | None = None  # our extension: why the delivery loop disabled it


class WebhookPage(msgspec.Struct):
    data: list[WebhookRead]
    iterator: str | None
    done: bool


class SecretRead(msgspec.Struct):
    secret: str


class HeadersRead(msgspec.Struct):
    headers: dict[str, str]
    sensitive: list[str]


def webhook_read(found: WebhookEndpoint | WebhookView) -> WebhookRead:
    return WebhookRead(
        id=found.endpoint_id,
        created_at=found.created_at.isoformat(),
        description=found.description,
        metadata=dict(found.metadata),
        updated_at=found.updated_at.isoformat(),
        url=found.url,
        disabled=found.disabled,
        filter_types=list(found.filter_types),
        rate_limit=found.rate_limit,
        disabled_reason=found.disabled_reason,
    )


def _fields(body: bytes, allowed: frozenset[str]) -> dict[str, Any]:
    fields = decode(body, dict[str, Any])
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InvalidRequestError(
            f"unknown field {unknown[0]!r}; a webhook takes: {', '.join(sorted(allowed))}",
            path=f"$.{unknown[0]}",
        )
    return fields


def cursor_of(view: WebhookView) -> str:
    raw = f"{to_micros(view.created_at)}:{view.endpoint_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def after_cursor(iterator: str | None) -> tuple[datetime, str] | None:
    if iterator is None:
        return None
    refused = InvalidParameterError("iterator: not one this API returned")
    try:
        micros, _, endpoint_id = base64.urlsafe_b64decode(iterator.encode()).decode().partition(":")
        after = from_micros(int(micros)) if len(micros) <= 20 else None
    except (ValueError, UnicodeDecodeError, OverflowError):  # a huge time is past year 9999
        raise refused from None
    if after is None or "\x00" in endpoint_id:
        raise refused
    return after, endpoint_id


class MessageRead(msgspec.Struct):
    """A message to the endpoint and how its delivery stands (our extension)."""

    id: str  # its webhook-id, the same on every attempt
    type: str
    status: str  # pending, delivered, failed
    attempts: int
    position: int  # the log position of the fact it derives from
    created_at: str
    last_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: str | None
    delivered_at: str | None


class MessagePage(msgspec.Struct):
    data: list[MessageRead]
    iterator: str | None
    done: bool


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def message_read(view: MessageView) -> MessageRead:
    return MessageRead(
        id=view.message_id,
        type=view.type,
        status=view.status,
        attempts=view.attempts,
        position=view.position,
        created_at=view.created_at.isoformat(),
        last_attempt_at=_iso(view.last_attempt_at),
        last_status_code=view.last_status_code,
        last_error=view.last_error,
        next_attempt_at=_iso(view.next_attempt_at),
        delivered_at=_iso(view.delivered_at),
    )


def _message_after(iterator: str | None) -> tuple[int, str] | None:
    if iterator is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(iterator.encode()).decode()
        position, _, message_id = raw.partition(":")
        after = int(position), message_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidParameterError("iterator: not one this API returned") from None
    if not 0 <= after[0] < 2**62 or not message_id.startswith("msg_") or "\x00" in message_id:
        raise InvalidParameterError("iterator: not one this API returned")
    return after


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]  # noqa: RUF012

    @post("/", status_code=200, summary="Create a webhook endpoint")
    async def create(self, request: Request[Principal, Any, Any]) -> WebhookRead:
        fields = _fields(await request.body(), CREATABLE)
        container, business = container_of(request), business_of(request)
        endpoint = await anyio.to_thread.run_sync(
            lambda: webhooks.create_endpoint(
                container.ledger, container.webhook_secrets, business, fields, container.clock()
            )
        )
        return webhook_read(endpoint)

    @get("/", summary="List webhook endpoints, oldest first", sync_to_thread=True)
    def list_webhooks(
        self,
        request: Request[Principal, Any, Any],
        limit: Limit = 10,
        iterator: FromQuery[str | None] = None,
    ) -> WebhookPage:
        container = container_of(request)
        found = listings.webhooks(
            container.reads, business_of(request), after_cursor(iterator), limit + 1
        )
        page, more = found[:limit], len(found) > limit
        return WebhookPage(
            data=[webhook_read(v) for v in page],
            iterator=cursor_of(page[-1]) if more else None,
            done=not more,
        )

    @get("/{webhook_id:str}", summary="Retrieve a webhook endpoint", sync_to_thread=True)
    def retrieve(
        self, request: Request[Principal, Any, Any], webhook_id: FromPath[str]
    ) -> WebhookRead:
        container = container_of(request)
        return webhook_read(
            webhooks.load_endpoint(container.ledger, business_of(request), webhook_id)
        )

    @patch("/{webhook_id:str}", summary="Change a webhook endpoint")
    async def update(
        self, request: Request[Principal, Any, Any], webhook_id: FromPath[str]
    ) -> WebhookRead:
        changes = _fields(await request.body(), UPDATABLE)
        container, business = container_of(request), business_of(request)
        endpoint = await anyio.to_thread.run_sync(
            lambda: webhooks.update_endpoint(
                container.ledger, business, webhook_id, changes, container.clock()
            )
        )
        return webhook_read(endpoint)

    @delete("/{webhook_id:str}", status_code=204, summary="Delete a webhook endpoint")
    async def remove(
        self, request: Request[Principal, Any, Any], webhook_id: FromPath[str]
    ) -> None:
        container, business = container_of(request), business_of(request)
        await anyio.to_thread.run_sync(
            lambda: webhooks.delete_endpoint(
                container.ledger, business, webhook_id, container.clock()
            )
        )

    @get(
        "/{webhook_id:str}/messages",
        summary="The endpoint's messages and their delivery, in log order",
        sync_to_thread=True,
    )
    def messages(
        self,
        request: Request[Principal, Any, Any],
        webhook_id: FromPath[str],
        limit: Limit = 50,
        iterator: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
    ) -> MessagePage:
        container = container_of(request)
        query = MessageQuery(
            business_of(request), webhook_id, status, _message_after(iterator), limit + 1
        )
        found = webhooks.endpoint_messages(
            container.ledger, container.reads, business_of(request), query
        )
        page, more = found[:limit], len(found) > limit
        last = page[-1] if page else None
        cursor = (
            base64.urlsafe_b64encode(f"{last.position}:{last.message_id}".encode()).decode()
            if more and last is not None
            else None
        )
        return MessagePage([message_read(m) for m in page], cursor, not more)

    @post(
        "/{webhook_id:str}/messages/{message_id:str}/retry",
        status_code=200,
        summary="Send a message again now, under the same webhook-id",
        sync_to_thread=True,
    )
    def retry(
        self,
        request: Request[Principal, Any, Any],
        webhook_id: FromPath[str],
        message_id: FromPath[str],
    ) -> MessageRead:
        container = container_of(request)
        found = webhooks.retry_message(
            container.ledger,
            container.reads,
            business_of(request),
            webhook_id,
            message_id,
            container.clock(),
        )
        return message_read(found)

    @get(
        "/{webhook_id:str}/secret",
        summary="The endpoint's signing secret",
        opt={"scope": "admin"},  # a secret: never for a read key
        sync_to_thread=True,
    )
    def secret(
        self, request: Request[Principal, Any, Any], webhook_id: FromPath[str]
    ) -> SecretRead:
        container = container_of(request)
        found = webhooks.endpoint_secret(
            container.ledger, container.webhook_secrets, business_of(request), webhook_id
        )
        return SecretRead(found)

    @get(
        "/{webhook_id:str}/headers",
        summary="The endpoint's custom headers",
        opt={"scope": "admin"},  # they may carry credentials the name does not betray
        sync_to_thread=True,
    )
    def headers(
        self, request: Request[Principal, Any, Any], webhook_id: FromPath[str]
    ) -> HeadersRead:
        container = container_of(request)
        found = webhooks.endpoint_headers(
            container.ledger, container.webhook_secrets, business_of(request), webhook_id
        )
        return HeadersRead(found.headers, found.sensitive)

    @patch("/{webhook_id:str}/headers", status_code=200, summary="Add or replace custom headers")
    async def update_headers(
        self, request: Request[Principal, Any, Any], webhook_id: FromPath[str]
    ) -> Response[None]:
        fields = _fields(await request.body(), frozenset({"headers"}))
        if "headers" not in fields:
            raise InvalidRequestError("headers is required", path="$.headers")
        container, business = container_of(request), business_of(request)
        await anyio.to_thread.run_sync(
            lambda: webhooks.add_headers(
                container.ledger, container.webhook_secrets, business, webhook_id, fields["headers"]
            )
        )
        return Response(None, status_code=200)

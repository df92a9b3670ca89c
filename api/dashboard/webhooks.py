"""The dashboard's webhooks: endpoints (create, edit, delete, reveal the secret), their messages.

Every read and write is an ``application.webhooks`` function, the ones the
``/webhooks`` routes call, with the fields the wire would carry built from the
form; the domain's refusal (``url: must be an http or https URL``) names its
field, and the page shows it there. Paging follows the API's cursors.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import anyio
from litestar import Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Redirect, Template

from api.dashboard.pages import PAGE_SIZE, business, digits, flash, render
from api.routes.common import container_of
from api.routes.webhooks import after_cursor, cursor_of
from application import listings, webhooks
from application.delivery import STATUSES, MessageQuery
from application.errors import InvalidRequestError, LedgerError
from domain.errors import DomainError
from domain.webhook import MESSAGE_TYPES

HOOKS = "/dashboard/webhooks"
FIELDS = ("url", "description", "filter_types", "rate_limit", "headers", "disabled")
_FIELD = re.compile(r"^([a-z_]+)")
_HEADER_LINES = 20


def field_of(error: DomainError | LedgerError) -> str:
    """The form field a refusal names by its first word (``url: ...``); else ``""``."""
    found = _FIELD.match(error.message)
    return found.group(1) if found and found.group(1) in FIELDS else ""


def parse_headers(text: str) -> dict[str, str]:
    """Custom headers written one a line, ``Name: value``; checked as the API checks them."""
    headers: dict[str, str] = {}
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > _HEADER_LINES:
        raise InvalidRequestError(f"headers: at most {_HEADER_LINES} lines")
    for number, line in enumerate(lines, start=1):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise InvalidRequestError(f"headers: line {number} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    return webhooks.check_headers(headers)


def endpoint_fields(form: FormMultiDict) -> dict[str, Any]:
    """The fields of ``POST /webhooks`` (and ``PATCH``) from the form's values."""
    raw_limit = str(form.get("rate_limit", "")).strip()
    limit = digits(raw_limit, 12)
    return {
        "url": str(form.get("url", "")).strip(),
        "description": str(form.get("description", "")),
        "filter_types": [str(t) for t in form.getall("filter_types", [])],
        # digits are a number; anything else goes as it is, for the domain's own message
        "rate_limit": limit if limit is not None else (raw_limit or None),
    }


def form_values(form: FormMultiDict) -> dict[str, Any]:
    """What was entered, to show back when the form is refused."""
    return {
        "url": str(form.get("url", "")),
        "description": str(form.get("description", "")),
        "filter_types": [str(t) for t in form.getall("filter_types", [])],
        "rate_limit": str(form.get("rate_limit", "")),
        "headers": str(form.get("headers", "")),
        "disabled": form.get("disabled") == "on",
    }


def _form_page(
    request: Request[Any, Any, Any],
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    endpoint: Any = None,
    status_code: int = 200,
) -> Template:
    return render(
        request,
        "dashboard/webhooks/form.html",
        status_code=status_code,
        values=values,
        errors=errors,
        endpoint=endpoint,
        types=MESSAGE_TYPES,
    )


def _quiet_cursor(iterator: str | None) -> Any:
    try:
        return after_cursor(iterator)
    except InvalidRequestError:  # an edited link: start at the beginning
        return None


@get("/webhooks", sync_to_thread=True)
def webhooks_page(request: Request[Any, Any, Any]) -> Template:
    container = container_of(request)
    cursor = _quiet_cursor(request.query_params.get("after") or None)
    found = listings.webhooks(container.reads, business(request), cursor, PAGE_SIZE + 1)
    shown, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
    return render(
        request,
        "dashboard/webhooks/list.html",
        endpoints=shown,
        after=cursor is not None,
        next_cursor=cursor_of(shown[-1]) if more else None,
    )


@get("/webhooks/new", sync_to_thread=False)
def new_webhook_form(request: Request[Any, Any, Any]) -> Template:
    empty = {"url": "", "description": "", "filter_types": [], "rate_limit": "", "headers": ""}
    return _form_page(request, {**empty, "disabled": False}, {})


@post("/webhooks/new")
async def create_webhook(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await request.form()
    container, owner = container_of(request), business(request)
    try:
        fields = {**endpoint_fields(form), "headers": parse_headers(str(form.get("headers", "")))}
        endpoint = await anyio.to_thread.run_sync(
            lambda: webhooks.create_endpoint(
                container.ledger, container.webhook_secrets, owner, fields, container.clock()
            )
        )
    except (DomainError, InvalidRequestError) as error:
        errors = {field_of(error): error.message}
        return _form_page(request, form_values(form), errors, status_code=422)
    flash(request, "Webhook created")
    return Redirect(f"{HOOKS}/{endpoint.endpoint_id}", status_code=303)


def message_cursor(position: int, message_id: str) -> str:
    return base64.urlsafe_b64encode(f"{position}:{message_id}".encode()).decode()


def message_after(iterator: str | None) -> tuple[int, str] | None:
    """Where a page of messages starts; an unreadable cursor is the first page."""
    if not iterator:
        return None
    try:
        position, _, message_id = base64.urlsafe_b64decode(iterator).decode().partition(":")
        after = int(position), message_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return None
    ok = 0 <= after[0] < 2**62 and message_id.startswith("msg_") and "\x00" not in message_id
    return after if ok else None


@get("/webhooks/{webhook_id:str}", sync_to_thread=True)
def webhook_page(request: Request[Any, Any, Any], webhook_id: FromPath[str]) -> Template:
    container, owner = container_of(request), business(request)
    endpoint = webhooks.load_endpoint(container.ledger, owner, webhook_id)
    headers = webhooks.endpoint_headers(
        container.ledger, container.webhook_secrets, owner, webhook_id
    )
    status = request.query_params.get("status") or None
    status = status if status in STATUSES else None
    after = message_after(request.query_params.get("after") or None)
    query = MessageQuery(owner, webhook_id, status, after, PAGE_SIZE + 1)
    found = webhooks.endpoint_messages(container.ledger, container.reads, owner, query)
    shown, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
    last = shown[-1] if shown else None
    return render(
        request,
        "dashboard/webhooks/endpoint.html",
        endpoint=endpoint,
        custom_headers=headers,
        messages=shown,
        status=status,
        statuses=STATUSES,
        after=after is not None,
        next_cursor=message_cursor(last.position, last.message_id) if more and last else None,
    )


@post("/webhooks/{webhook_id:str}/secret", sync_to_thread=True)
def reveal_secret(request: Request[Any, Any, Any], webhook_id: FromPath[str]) -> Template:
    container, owner = container_of(request), business(request)
    endpoint = webhooks.load_endpoint(container.ledger, owner, webhook_id)
    secret = webhooks.endpoint_secret(
        container.ledger, container.webhook_secrets, owner, webhook_id
    )
    return render(request, "dashboard/webhooks/secret.html", endpoint=endpoint, secret=secret)


@get("/webhooks/{webhook_id:str}/edit", sync_to_thread=True)
def edit_webhook_form(request: Request[Any, Any, Any], webhook_id: FromPath[str]) -> Template:
    endpoint = webhooks.load_endpoint(container_of(request).ledger, business(request), webhook_id)
    values = {
        "url": endpoint.url,
        "description": endpoint.description,
        "filter_types": list(endpoint.filter_types),
        "rate_limit": "" if endpoint.rate_limit is None else str(endpoint.rate_limit),
        "headers": "",
        "disabled": endpoint.disabled,
    }
    return _form_page(request, values, {}, endpoint=endpoint)


@post("/webhooks/{webhook_id:str}/edit")
async def edit_webhook(
    request: Request[Any, Any, Any], webhook_id: FromPath[str]
) -> Template | Redirect:
    form = await request.form()
    container, owner = container_of(request), business(request)
    endpoint = await anyio.to_thread.run_sync(
        lambda: webhooks.load_endpoint(container.ledger, owner, webhook_id)
    )

    def change() -> None:
        headers = parse_headers(str(form.get("headers", "")))  # all checked before any write
        changes = {**endpoint_fields(form), "disabled": form.get("disabled") == "on"}
        webhooks.edit_endpoint(
            container.ledger,
            container.webhook_secrets,
            owner,
            webhook_id,
            changes,
            headers,
            container.clock(),
        )

    try:
        await anyio.to_thread.run_sync(change)
    except (DomainError, InvalidRequestError) as error:
        errors = {field_of(error): error.message}
        values = form_values(form)
        return _form_page(request, values, errors, endpoint=endpoint, status_code=422)
    flash(request, "Webhook saved")
    return Redirect(f"{HOOKS}/{webhook_id}", status_code=303)


@get("/webhooks/{webhook_id:str}/delete", sync_to_thread=True)
def delete_confirmation(request: Request[Any, Any, Any], webhook_id: FromPath[str]) -> Template:
    endpoint = webhooks.load_endpoint(container_of(request).ledger, business(request), webhook_id)
    return render(request, "dashboard/webhooks/delete.html", endpoint=endpoint)


@post("/webhooks/{webhook_id:str}/delete", sync_to_thread=True)
def delete_webhook(request: Request[Any, Any, Any], webhook_id: FromPath[str]) -> Redirect:
    container = container_of(request)
    webhooks.delete_endpoint(container.ledger, business(request), webhook_id, container.clock())
    flash(request, "Webhook deleted")
    return Redirect(HOOKS, status_code=303)


@post("/webhooks/{webhook_id:str}/messages/{message_id:str}/retry", sync_to_thread=True)
def retry_message(
    request: Request[Any, Any, Any], webhook_id: FromPath[str], message_id: FromPath[str]
) -> Redirect:
    container = container_of(request)
    webhooks.retry_message(
        container.ledger,
        container.reads,
        business(request),
        webhook_id,
        message_id,
        container.clock(),
    )
    flash(request, f"Message {message_id} is sent again now, under the same webhook-id")
    return Redirect(f"{HOOKS}/{webhook_id}", status_code=303)


HANDLERS: tuple[HTTPRouteHandler, ...] = (
    webhooks_page,
    new_webhook_form,
    create_webhook,
    webhook_page,
    reveal_secret,
    edit_webhook_form,
    edit_webhook,
    delete_confirmation,
    delete_webhook,
    retry_message,
)

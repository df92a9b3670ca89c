"""The dashboard's API keys: list, create (the key shown once), rotate, revoke, audit trail.

Every change goes through ``container.keys`` (``infrastructure.keys.KeyStore``)
as the ``/api-keys`` routes do, with the signed-in session's key as the actor,
so the store's own refusals hold here too: a key cannot revoke itself. A new
key is on the page that answers the form, once; nothing shows it again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Redirect, Template

from api.dashboard.pages import (
    PAGE_SIZE,
    business,
    digits,
    flash,
    page_number,
    pager,
    principal_of,
    render,
)
from api.dashboard.session import FormBody
from api.routes.common import container_of
from application.errors import InvalidRequestError
from infrastructure.key_records import AuditQuery, IssuedKey, KeyQuery
from infrastructure.keys import MAX_GRACE, SCOPES

KEYS = "/dashboard/api-keys"
SCOPE_HINTS = {
    "admin": "everything, this dashboard too",
    "read": "read-only: listings, usage, invoices",
    "ingest": "sending events only (POST /events/ingest)",
}
GRACE_CHOICES = (  # how long a rotated key keeps working, in seconds
    (0, "No grace: the old key stops now"),
    (3600, "1 hour"),
    (86400, "1 day"),
    (7 * 86400, "7 days"),
    (int(MAX_GRACE.total_seconds()), "30 days"),
)


def field_of(error: InvalidRequestError) -> str:
    """The form field an error of the key store names (``$.name`` -> ``name``); else ``""``."""
    where = str(error.detail.get("param") or error.detail.get("path") or "")
    return where.removeprefix("$.") if where.removeprefix("$.") in {"name", "scope"} else ""


@get("/api-keys", sync_to_thread=True)
def keys_page(request: Request[Any, Any, Any]) -> Template:
    container = container_of(request)
    now = container.clock()
    inactive = request.query_params.get("inactive") == "1"
    number = page_number(request)
    query = KeyQuery(business(request), now, inactive, PAGE_SIZE, number * PAGE_SIZE)
    found = container.keys.keys(query)
    return render(
        request,
        "dashboard/api_keys/list.html",
        keys=found,
        now=now,
        inactive=inactive,
        page=pager(request, len(found)),
        own=principal_of(request).key_id,
    )


def _new_page(
    request: Request[Any, Any, Any],
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> Template:
    return render(
        request,
        "dashboard/api_keys/new.html",
        status_code=status_code,
        values=values,
        errors=errors,
        scopes=SCOPES,
        hints=SCOPE_HINTS,
    )


@get("/api-keys/new", sync_to_thread=False)
def new_key_form(request: Request[Any, Any, Any]) -> Template:
    return _new_page(request, {"name": "", "scope": "ingest"}, {})


def _created_page(request: Request[Any, Any, Any], issued: IssuedKey, title: str) -> Template:
    return render(
        request,
        "dashboard/api_keys/created.html",
        issued=issued,
        record=issued.record,
        title=title,
        now=container_of(request).clock(),
    )


@post("/api-keys/new", sync_to_thread=True)
def create_key(request: Request[Any, Any, Any], data: FormBody) -> Template:
    container = container_of(request)
    values = {"name": data.get("name", "").strip(), "scope": data.get("scope", "")}
    scope = next((s for s in SCOPES if s == values["scope"]), None)
    if scope is None:
        errors = {"scope": f"Choose a scope: one of {', '.join(SCOPES)}."}
        return _new_page(request, values, errors, 422)
    try:
        issued = container.keys.issue(
            business(request),
            scope,
            container.clock(),
            name=values["name"] or None,
            actor=principal_of(request).key_id,
        )
    except InvalidRequestError as error:
        return _new_page(request, values, {field_of(error): error.message}, 422)
    return _created_page(request, issued, "API key created")


def _key_page(
    request: Request[Any, Any, Any],
    key_id: str,
    *,
    action: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    container = container_of(request)
    record = container.keys.get(business(request), key_id)
    trail = container.keys.audit(AuditQuery(business(request), key_id, 50, 0))
    return render(
        request,
        "dashboard/api_keys/key.html",
        status_code=status_code,
        record=record,
        trail=trail,
        now=container.clock(),
        action=action,
        errors=errors or {},
        own=principal_of(request).key_id,
        graces=GRACE_CHOICES,
    )


@get("/api-keys/audit", sync_to_thread=True)
def audit_page(request: Request[Any, Any, Any]) -> Template:
    container = container_of(request)
    number = page_number(request)
    query = AuditQuery(business(request), None, PAGE_SIZE, number * PAGE_SIZE)
    trail = container.keys.audit(query)
    return render(
        request, "dashboard/api_keys/audit.html", trail=trail, page=pager(request, len(trail))
    )


@get("/api-keys/{key_id:str}", sync_to_thread=True)
def key_page(request: Request[Any, Any, Any], key_id: FromPath[str]) -> Template:
    return _key_page(request, key_id)


@get("/api-keys/{key_id:str}/revoke", sync_to_thread=True)
def revoke_confirmation(request: Request[Any, Any, Any], key_id: FromPath[str]) -> Template:
    return _key_page(request, key_id, action="revoke")


@post("/api-keys/{key_id:str}/revoke", sync_to_thread=True)
def revoke_key(request: Request[Any, Any, Any], key_id: FromPath[str]) -> Template | Redirect:
    container = container_of(request)
    actor = principal_of(request).key_id
    try:
        container.keys.revoke(business(request), key_id, actor, container.clock())
    except InvalidRequestError as error:  # its own key, say: the store refuses
        return _key_page(
            request, key_id, action="revoke", errors={"": error.message}, status_code=422
        )
    flash(request, f"API key {key_id} revoked")
    return Redirect(KEYS, status_code=303)


@get("/api-keys/{key_id:str}/rotate", sync_to_thread=True)
def rotate_confirmation(request: Request[Any, Any, Any], key_id: FromPath[str]) -> Template:
    return _key_page(request, key_id, action="rotate")


@post("/api-keys/{key_id:str}/rotate", sync_to_thread=True)
def rotate_key(request: Request[Any, Any, Any], key_id: FromPath[str], data: FormBody) -> Template:
    container = container_of(request)
    grace = digits(data.get("grace_seconds", ""), 12)
    if grace is None:
        errors = {"grace_seconds": "Choose how long the old key keeps working."}
        return _key_page(request, key_id, action="rotate", errors=errors, status_code=422)
    try:
        new, _ = container.keys.rotate(
            business(request),
            key_id,
            timedelta(seconds=grace),
            principal_of(request).key_id,
            container.clock(),
        )
    except InvalidRequestError as error:
        where = "grace_seconds" if "grace" in str(error.detail.get("path", "")) else ""
        errors = {where: error.message}
        return _key_page(request, key_id, action="rotate", errors=errors, status_code=422)
    return _created_page(request, new, f"API key {key_id} rotated")


HANDLERS: tuple[HTTPRouteHandler, ...] = (
    keys_page,
    new_key_form,
    create_key,
    audit_page,
    key_page,
    revoke_confirmation,
    revoke_key,
    rotate_confirmation,
    rotate_key,
)

"""The dashboard's usage events: browse them with the API's filters, void one with a reason.

The list reads ``application.listings.events`` as ``GET /events`` does; the void
calls ``Ledger.void_usage_event`` as ``POST /events/{event_id}/void`` does, after
a confirmation page (no JavaScript needed). An event id may hold ``/``: the
path parameter takes the rest of the path and the last ``/void`` is the action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from api.dashboard.pages import PAGE_SIZE, business, flash, page_number, pager, render
from api.dashboard.session import FormBody
from api.routes.common import container_of
from application import listings
from application.errors import LedgerError, NotFoundError
from application.views import EventQuery, UsageEventView
from domain.errors import DomainError
from domain.metadata import MetadataValue
from domain.usage import parse_timestamp

EVENTS = "/dashboard/events"
VOIDED = {"all": None, "not": False, "only": True}  # the filter's choices, as EventQuery wants
FILTERS = ("customer_id", "event_name", "start", "end", "voided")


@dataclass(frozen=True, slots=True)
class EventFilters:
    """The filter bar as entered (strings, shown back) and the errors it has."""

    values: dict[str, str]
    errors: dict[str, str]

    @property
    def any(self) -> bool:
        return any(v for k, v in self.values.items() if k != "voided") or (
            self.values["voided"] != "all"
        )


def form_moment(raw: str, field: str) -> datetime:
    """A time from the filter bar: ``2026-11-25T12:00`` (a browser's datetime-local) is UTC;
    a full ISO 8601 time with its zone is taken as written."""
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise DomainError(
            f"{field}: {raw[:40]!r} is not a date and time; "
            "write 2026-11-25T12:00 (UTC) or 2026-11-25T12:00:00+01:00"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parse_timestamp(raw)


def read_filters(params: Mapping[str, str]) -> tuple[EventFilters, dict[str, Any]]:
    """The filters shown back, their errors, and the ``EventQuery`` fields they give."""
    values = {name: params.get(name, "").strip() for name in FILTERS}
    values["voided"] = values["voided"] if values["voided"] in VOIDED else "all"
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {
        "customer_id": values["customer_id"] or None,
        "event_name": values["event_name"] or None,
        "voided": VOIDED[values["voided"]],
    }
    for name in ("start", "end"):
        try:
            fields[name] = form_moment(values[name], name) if values[name] else None
        except DomainError as error:
            errors[name] = error.message
    if not errors and fields["start"] and fields["end"] and fields["start"] >= fields["end"]:
        errors["end"] = "end: must be after start"
    return EventFilters(values, errors), fields


def metadata_text(value: MetadataValue) -> str:
    """A metadata value as the wire spells it: ``true``, ``0.1``, ``text``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f") if value == value.to_integral_value() else str(value)
    return str(value)


@get("/events", sync_to_thread=True)
def events_page(request: Request[Any, Any, Any]) -> Template:
    container = container_of(request)
    filters, fields = read_filters(request.query_params)
    found: list[UsageEventView] = []
    if not filters.errors:
        query = EventQuery(
            business_id=business(request),
            page_number=page_number(request),
            page_size=PAGE_SIZE,
            **fields,
        )
        found = listings.events(container.ledger, container.reads, query)
    return render(
        request,
        "dashboard/events/list.html",
        status_code=422 if filters.errors else 200,
        events=found,
        filters=filters.values,
        filtered=filters.any,
        errors=filters.errors,
        page=pager(request, len(found)),
        meta=metadata_text,
    )


def _void_target(event_id: str | None) -> str:
    """The event a void page is about: its id travels as a query or form value, never in
    the path (an id may hold ``/``, ``..`` or ``%41``, which a path would change)."""
    if not event_id:
        raise NotFoundError("There is no such event.")
    return event_id


def _void_page(
    request: Request[Any, Any, Any],
    found: UsageEventView,
    *,
    reason: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    return render(
        request,
        "dashboard/events/void.html",
        status_code=status_code,
        event=found,
        reason=reason,
        errors=errors or {},
        meta=metadata_text,
    )


@get("/events/void", sync_to_thread=True)
def void_confirmation(
    request: Request[Any, Any, Any], event_id: FromQuery[str | None] = None
) -> Template:
    container = container_of(request)
    found = container.ledger.usage_event(business(request), _void_target(event_id))
    return _void_page(request, found)


@post("/events/void", sync_to_thread=True)
def void_event(request: Request[Any, Any, Any], data: FormBody) -> Template | Redirect:
    container = container_of(request)
    target, reason = _void_target(data.get("event_id")), data.get("reason", "").strip()
    found = container.ledger.usage_event(business(request), target)
    if found.voided:
        flash(request, already_voided(found))
        return Redirect(EVENTS, status_code=303)
    if not reason:
        errors = {"reason": "Enter a reason: it is kept with the void, for whoever asks later."}
        return _void_page(request, found, errors=errors, status_code=422)
    try:
        container.ledger.void_usage_event(
            business(request), target, reason=reason, now=container.clock()
        )
    except (DomainError, LedgerError) as error:
        if isinstance(error, NotFoundError):
            raise
        errors = {"reason": error.message}
        return _void_page(request, found, reason=reason, errors=errors, status_code=422)
    flash(request, "Event voided")
    return Redirect(EVENTS, status_code=303)


def already_voided(found: UsageEventView) -> str:
    assert found.voided_at is not None
    why = f" ({found.void_reason})" if found.void_reason else ""
    when = found.voided_at.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")
    return f"Event {found.event_id} was voided already on {when}{why}: the first void stands."


HANDLERS: tuple[HTTPRouteHandler, ...] = (events_page, void_confirmation, void_event)

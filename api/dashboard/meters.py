"""The dashboard's meters pages: the list, create and edit with the filter builder, the meter page.

Meters are written and read through the same application services as
``api.routes.meters``: ``Ledger.create_meter`` / ``update_meter`` take the wire
shapes the API decodes, so a bad definition is refused with the domain's own
message, shown next to the field its path names. The meter page reads its usage
with ``listings.meter_usage`` (``GET /meters/{id}/usage``), its top customers with
``usage_groups.grouped_usage`` (``group_by=customer_id``) and its events with
``listings.events`` (``GET /events?meter_id=``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from api.dashboard import filter_form
from api.dashboard.filter_form import FilterFormError, GroupForm, WireFilter
from api.dashboard.pages import PAGE_SIZE, business, flash, page_number, pager, render
from api.dashboard.session import FormBody
from api.routes.common import container_of
from application import listings
from application.errors import InvalidRequestError
from application.usage_groups import CUSTOMER, GroupQuery, usage_and_top_customers
from application.usage_report import Window
from application.views import EventQuery, MeterQuery, MeterView
from domain.errors import DomainError
from domain.meter import AggregationKind
from infrastructure.bootstrap import Container

FIELDS = ("name", "event_name", "aggregation", "aggregation_key", "measurement_unit", "description")
AGGREGATIONS = tuple(kind.value for kind in AggregationKind)
FIELD_OF_PATH = {  # a domain error's path -> the form field it concerns
    "name": "name",
    "event_name": "event_name",
    "measurement_unit": "measurement_unit",
    "description": "description",
    "aggregation": "aggregation",
    "aggregation.type": "aggregation",
    "aggregation.key": "aggregation_key",
}
SPANS = {Window.HOUR: 24, Window.DAY: 30, Window.MONTH: 12}  # a tab's default range, in windows
TOP_CUSTOMERS = 10
INPUT_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> shows and sends


def _path(meter_id: str) -> str:
    return f"/dashboard/meters/{meter_id}"


@get("/meters", name="dashboard:meters", sync_to_thread=True)
def meter_list(request: Request[Any, Any, Any], archived: FromQuery[bool] = False) -> Template:
    query = MeterQuery(business(request), archived, page_number(request), PAGE_SIZE)
    found = listings.meters(container_of(request).reads, query)
    return render(
        request,
        "dashboard/meters/list.html",
        meters=found,
        archived=archived,
        page=pager(request, len(found)),
    )


def _form(
    request: Request[Any, Any, Any],
    values: Mapping[str, str],
    tree: GroupForm,
    errors: Mapping[str, str],
    meter: MeterView | None = None,
) -> Template:
    return render(
        request,
        "dashboard/meters/form.html",
        status_code=422 if errors else 200,
        meter=meter,
        values=values,
        builder=filter_form.layout(tree),
        errors=errors,
        aggregations=AGGREGATIONS,
        operators=filter_form.OPERATORS,
        kinds=filter_form.KINDS,
    )


@get("/meters/new", name="dashboard:meter-new", sync_to_thread=False)
def new_meter(request: Request[Any, Any, Any]) -> Template:
    values = dict.fromkeys(FIELDS, "") | {"aggregation": "count"}
    return _form(request, values, filter_form.BLANK, {})


def _step(data: Mapping[str, str]) -> tuple[dict[str, str], GroupForm, dict[str, str], bool]:
    """The form's values, its tree after the button pressed, errors, and whether to save."""
    values = {field: data.get(field, "") for field in FIELDS}
    try:
        tree = filter_form.parse(data)
    except FilterFormError as error:  # a tree the builder cannot draw: say so above it
        return values, filter_form.BLANK, {"filter": error.message}, False
    action = data.get("action", "save")
    if action == "save":
        return values, tree, {}, True
    try:
        return values, filter_form.apply(tree, action), {}, False
    except FilterFormError as error:
        return values, tree, {error.field: error.message}, False


def _definition(values: Mapping[str, str], tree: GroupForm) -> tuple[dict[str, Any], WireFilter]:
    """The meter's fields in the API's wire shapes (``FilterFormError`` for a bad value)."""
    wire = filter_form.to_wire(tree)
    fields = {
        "name": values["name"],
        "description": values["description"] or None,
        "measurement_unit": values["measurement_unit"],
        "event_name": values["event_name"],
        "aggregation": {
            "type": values["aggregation"],
            "key": values["aggregation_key"].strip() or None,
        },
        "filter": wire.filter,
    }
    return fields, wire


def _refusal(error: DomainError, wire: WireFilter) -> dict[str, str]:
    """The domain's message, keyed by the form field its path names ("" for the form)."""
    path = str(error.detail.get("path", ""))
    message = error.message.removeprefix(f"{path}: ") if path else error.message
    if path.startswith("filter"):
        return {wire.field_of(path): message}
    return {FIELD_OF_PATH.get(path, ""): message}


@post("/meters/new", name="dashboard:meter-create", sync_to_thread=True)
def create_meter(request: Request[Any, Any, Any], data: FormBody) -> Template | Redirect:
    values, tree, errors, save = _step(data)
    if not save:
        return _form(request, values, tree, errors)
    try:
        fields, wire = _definition(values, tree)
    except FilterFormError as error:
        return _form(request, values, tree, {error.field: error.message})
    container = container_of(request)
    try:
        view = container.ledger.create_meter(
            business(request),
            name=fields["name"],
            description=fields["description"],
            measurement_unit=fields["measurement_unit"],
            event_name=fields["event_name"],
            aggregation=fields["aggregation"],
            filter_=fields["filter"],
            now=container.clock(),
        )
    except DomainError as error:
        return _form(request, values, tree, _refusal(error, wire))
    flash(request, "Meter created")
    return Redirect(_path(view.meter_id), status_code=303)


def _values_of(meter: MeterView) -> dict[str, str]:
    return {
        "name": meter.name,
        "event_name": meter.event_name,
        "aggregation": str(meter.aggregation.get("type", "")),
        "aggregation_key": str(meter.aggregation.get("key") or ""),
        "measurement_unit": meter.measurement_unit,
        "description": meter.description or "",
    }


@get("/meters/{meter_id:str}/edit", name="dashboard:meter-edit", sync_to_thread=True)
def edit_meter(request: Request[Any, Any, Any], meter_id: FromPath[str]) -> Template:
    meter = container_of(request).ledger.meter(business(request), meter_id)
    return _form(request, _values_of(meter), filter_form.from_wire(meter.filter), {}, meter)


@post("/meters/{meter_id:str}/edit", name="dashboard:meter-update", sync_to_thread=True)
def update_meter(
    request: Request[Any, Any, Any], meter_id: FromPath[str], data: FormBody
) -> Template | Redirect:
    container = container_of(request)
    meter = container.ledger.meter(business(request), meter_id)
    values, tree, errors, save = _step(data)
    if not save:
        return _form(request, values, tree, errors, meter)
    try:
        changes, wire = _definition(values, tree)
    except FilterFormError as error:
        return _form(request, values, tree, {error.field: error.message}, meter)
    try:
        container.ledger.update_meter(
            business(request), meter_id, changes=changes, now=container.clock()
        )
    except DomainError as error:
        return _form(request, values, tree, _refusal(error, wire), meter)
    flash(request, "Meter saved")
    return Redirect(_path(meter_id), status_code=303)


@post("/meters/{meter_id:str}/archive", name="dashboard:meter-archive", sync_to_thread=True)
def archive_meter(request: Request[Any, Any, Any], meter_id: FromPath[str]) -> Redirect:
    container = container_of(request)
    container.ledger.archive_meter(business(request), meter_id, container.clock())
    flash(request, "Meter archived: it no longer meters new usage")
    return Redirect(_path(meter_id), status_code=303)


@post("/meters/{meter_id:str}/unarchive", name="dashboard:meter-unarchive", sync_to_thread=True)
def unarchive_meter(request: Request[Any, Any, Any], meter_id: FromPath[str]) -> Redirect:
    container = container_of(request)
    container.ledger.unarchive_meter(business(request), meter_id, container.clock())
    flash(request, "Meter unarchived")
    return Redirect(_path(meter_id), status_code=303)


def default_range(window: Window, now: datetime) -> tuple[datetime, datetime]:
    """A tab's range: the last 24 hours, 30 days or 12 months, the current one included."""
    end = window.next(window.floor(now))
    start = window.floor(now)
    for _ in range(SPANS[window] - 1):
        start = window.floor(start - timedelta(seconds=1))
    return start, end


def _moment(raw: str) -> datetime:
    """A date or datetime of the range form; without a zone it is UTC."""
    value = datetime.fromisoformat(raw.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _range(
    window: Window, start: str | None, end: str | None, now: datetime
) -> tuple[datetime, datetime, dict[str, str]]:
    begin, finish = default_range(window, now)
    errors: dict[str, str] = {}
    for field, raw in (("start", start), ("end", end)):
        if not raw:
            continue
        try:
            moment = _moment(raw)
        except (ValueError, OverflowError):  # year 1 at +01:00 is before year 1 in UTC
            errors[field] = f"{raw[:40]!r} is not a date (2026-11-25) or a time (2026-11-25T12:00)"
            continue
        begin, finish = (moment, finish) if field == "start" else (begin, moment)
    return (*default_range(window, now), errors) if errors else (begin, finish, errors)


def _usage(
    container: Container,
    business_id: str,
    meter_id: str,
    window: Window,
    span: tuple[datetime, datetime],
) -> tuple[Any, Any]:
    """The meter's usage per window over ``span`` and its top customers there."""
    query = GroupQuery(
        business_id, meter_id, None, span[0], span[1], window, CUSTOMER, TOP_CUSTOMERS
    )
    return usage_and_top_customers(container.ledger, container.reads, query)


def _customer_names(container: Container, business_id: str, ids: list[str]) -> dict[str, str]:
    return listings.customer_names(container.reads, business_id, ids)


@get("/meters/{meter_id:str}", name="dashboard:meter", sync_to_thread=True)
def meter_page(
    request: Request[Any, Any, Any],
    meter_id: FromPath[str],
    window: FromQuery[str] = "day",
    start: FromQuery[str | None] = None,
    end: FromQuery[str | None] = None,
) -> Template:
    container, business_id = container_of(request), business(request)
    meter = container.ledger.meter(business_id, meter_id)
    now = container.clock()
    per = Window(window) if window in Window._value2member_map_ else Window.DAY
    begin, finish, errors = _range(per, start, end, now)
    try:
        report, grouped = _usage(container, business_id, meter_id, per, (begin, finish))
    except InvalidRequestError as error:
        errors["end"] = error.message
        begin, finish = default_range(per, now)
        report, grouped = _usage(container, business_id, meter_id, per, (begin, finish))
    top = [str(g.group) for g in grouped.groups if g.group is not None]
    query = EventQuery(business_id, page_number=page_number(request), page_size=PAGE_SIZE)
    counted = listings.events(container.ledger, container.reads, query, meter_id)
    return render(
        request,
        "dashboard/meters/page.html",
        status_code=422 if errors else 200,
        meter=meter,
        window=per.value,
        windows=[w.value for w in Window],
        start_input=begin.strftime(INPUT_FORMAT),
        end_input=finish.strftime(INPUT_FORMAT),
        report=report,
        grouped=grouped,
        names=_customer_names(container, business_id, top),
        events=counted,
        page=pager(request, len(counted)),
        errors=errors,
        now=now,
    )


HANDLERS: tuple[HTTPRouteHandler, ...] = (
    meter_list,
    new_meter,
    create_meter,
    edit_meter,
    update_meter,
    archive_meter,
    unarchive_meter,
    meter_page,
)

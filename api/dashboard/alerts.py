"""The dashboard's alerts pages: list, create, and delete after a confirmation page.

Through ``application.alerts``, as ``api.routes.alerts``: the form's fields are
the API's, and a refusal (``InvalidAlertError``, whose message starts with the
field it concerns) is shown next to that field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from api.dashboard.pages import PAGE_SIZE, business, flash, page_number, pager, render
from api.dashboard.session import FormBody
from api.routes.common import container_of
from application import alerts, listings
from application.errors import NotFoundError
from application.views import MeterQuery, MeterView
from domain.alert import PERIODS, InvalidAlertError
from infrastructure.bootstrap import Container

FIELDS = ("meter_id", "customer_id", "threshold", "period", "name")
MAX_METER_CHOICES = 500  # meters offered in the form's select
LIST = "/dashboard/alerts"


def _meter_names(container: Container, business_id: str, ids: set[str]) -> dict[str, str]:
    names = {}
    for meter_id in ids:
        try:
            names[meter_id] = container.ledger.meter(business_id, meter_id).name
        except NotFoundError:
            names[meter_id] = meter_id
    return names


@get("/alerts", name="dashboard:alerts", sync_to_thread=True)
def alert_list(request: Request[Any, Any, Any], meter_id: FromQuery[str | None] = None) -> Template:
    container, business_id = container_of(request), business(request)
    meter = None if meter_id is None else container.ledger.meter(business_id, meter_id)
    found = alerts.list_alerts(container.reads, business_id)
    if meter is not None:
        found = [alert for alert in found if alert.meter_id == meter.meter_id]
    number = page_number(request)
    shown = found[number * PAGE_SIZE : (number + 1) * PAGE_SIZE]
    return render(
        request,
        "dashboard/alerts/list.html",
        alerts=shown,
        meter=meter,
        names=_meter_names(container, business_id, {alert.meter_id for alert in shown}),
        page=pager(request, len(shown)),
    )


def _meters(container: Container, business_id: str) -> list[MeterView]:
    query = MeterQuery(business_id, page_size=MAX_METER_CHOICES)
    return listings.meters(container.reads, query)


def _form(
    request: Request[Any, Any, Any], values: Mapping[str, str], errors: Mapping[str, str]
) -> Template:
    container = container_of(request)
    return render(
        request,
        "dashboard/alerts/form.html",
        status_code=422 if errors else 200,
        values=values,
        errors=errors,
        meters=_meters(container, business(request)),
        periods=PERIODS,
    )


@get("/alerts/new", name="dashboard:alert-new", sync_to_thread=True)
def new_alert(request: Request[Any, Any, Any], meter_id: FromQuery[str | None] = None) -> Template:
    values = dict.fromkeys(FIELDS, "") | {"meter_id": meter_id or "", "period": "cycle"}
    return _form(request, values, {})


def _fields(values: Mapping[str, str]) -> dict[str, Any]:
    """The API's fields from the form's: blanks are absent (the customer: every customer)."""
    fields: dict[str, Any] = {"meter_id": values["meter_id"], "period": values["period"] or None}
    for name in ("customer_id", "threshold", "name"):
        if values[name].strip():
            fields[name] = values[name].strip()
    return fields


@post("/alerts/new", name="dashboard:alert-create", sync_to_thread=True)
def create_alert(request: Request[Any, Any, Any], data: FormBody) -> Template | Redirect:
    values = {field: data.get(field, "") for field in FIELDS}
    container = container_of(request)
    try:
        alerts.create_alert(container.ledger, business(request), _fields(values), container.clock())
    except InvalidAlertError as error:
        field, _, message = error.message.partition(": ")
        refusal = {field: message} if field in FIELDS and message else {"": error.message}
        return _form(request, values, refusal)
    flash(request, "Alert created")
    return Redirect(f"{LIST}?meter_id={quote(values['meter_id'], safe='')}", status_code=303)


@get("/alerts/{alert_id:str}/delete", name="dashboard:alert-delete-confirm", sync_to_thread=True)
def confirm_delete(request: Request[Any, Any, Any], alert_id: FromPath[str]) -> Template:
    container, business_id = container_of(request), business(request)
    alert = alerts.get_alert(container.ledger, business_id, alert_id)
    meter = _meter_names(container, business_id, {alert.meter_id})[alert.meter_id]
    return render(request, "dashboard/alerts/delete.html", alert=alert, meter_name=meter)


@post("/alerts/{alert_id:str}/delete", name="dashboard:alert-delete", sync_to_thread=True)
def delete_alert(request: Request[Any, Any, Any], alert_id: FromPath[str]) -> Redirect:
    container = container_of(request)
    alerts.delete_alert(container.ledger, business(request), alert_id, container.clock())
    flash(request, "Alert deleted")
    return Redirect(LIST, status_code=303)


HANDLERS: tuple[HTTPRouteHandler, ...] = (
    alert_list,
    new_alert,
    create_alert,
    confirm_delete,
    delete_alert,
)

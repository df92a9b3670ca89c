"""The dashboard's customers: the list with search, create and edit, and the customer page
(this cycle's usage and invoice so far, credits, subscriptions, invoices, a portal link)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from api.dashboard.pages import PAGE_SIZE, business, flash, page_number, pager, render
from api.dashboard.session import FormBody
from api.routes.common import container_of
from application import listings
from application.customer_page import customer_page
from application.customers import update_customer
from application.errors import LedgerError
from application.portal import open_portal_session
from application.views import CustomerQuery
from domain.errors import DomainError

FIELDS = ("name", "email", "phone_number")


def error_field(error: LedgerError | DomainError, fields: Mapping[str, str]) -> str:
    """The form field an error concerns: its ``param`` or ``path``, else the name its message
    begins with (``"email 'x' is not a valid address"``); ``""``: the form as a whole."""
    named = str(error.detail.get("param") or error.detail.get("path") or "")
    named = named.removeprefix("$.").split(".")[0]
    if named in fields:
        return fields[named]
    first = error.message.split(" ", 1)[0].strip(":'\"")
    return fields.get(first, "")


def _customer_form(data: Mapping[str, str]) -> dict[str, str]:
    return {name: data.get(name, "").strip() for name in FIELDS}


def _form_page(
    request: Request[Any, Any, Any],
    *,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    customer_id: str | None,
    status_code: int = 200,
) -> Template:
    return render(
        request,
        "dashboard/customers/form.html",
        status_code=status_code,
        values=values,
        errors=errors,
        customer_id=customer_id,
    )


@get("/customers", name="dashboard:customers", sync_to_thread=True)
def customers_page(request: Request[Any, Any, Any], q: FromQuery[str | None] = None) -> Template:
    search = (q or "").strip()
    query = CustomerQuery(
        business(request),
        email=search if "@" in search else None,
        name=search if search and "@" not in search else None,
        page_number=page_number(request),
        page_size=PAGE_SIZE,
    )
    found = listings.customers(container_of(request).reads, query)
    return render(
        request,
        "dashboard/customers/list.html",
        customers=found,
        search=search,
        page=pager(request, len(found)),
    )


@get("/customers/new", name="dashboard:customer-new", sync_to_thread=False)
def new_customer_page(request: Request[Any, Any, Any]) -> Template:
    return _form_page(request, values=dict.fromkeys(FIELDS, ""), errors={}, customer_id=None)


@post("/customers/new", name="dashboard:customer-create", sync_to_thread=True)
def create_customer(request: Request[Any, Any, Any], data: FormBody) -> Template | Redirect:
    values = _customer_form(data)
    container = container_of(request)
    errors = {} if values["name"] else {"name": "Enter the customer's name."}
    if not values["email"]:
        errors["email"] = "Enter the customer's email address."
    if not errors:
        try:
            view = container.ledger.register_customer(
                business(request),
                email=values["email"],
                name=values["name"],
                phone_number=values["phone_number"] or None,
                metadata=None,
                now=container.clock(),
            )
        except (LedgerError, DomainError) as error:
            errors = {error_field(error, {n: n for n in FIELDS}): error.message}
        else:
            flash(request, "Customer created")
            return Redirect(f"/dashboard/customers/{view.customer_id}", status_code=303)
    return _form_page(request, values=values, errors=errors, customer_id=None, status_code=422)


@get("/customers/{customer_id:str}/edit", name="dashboard:customer-edit", sync_to_thread=True)
def edit_customer_page(request: Request[Any, Any, Any], customer_id: FromPath[str]) -> Template:
    view = container_of(request).ledger.customer(business(request), customer_id)
    values = {"name": view.name, "email": view.email, "phone_number": view.phone_number or ""}
    return _form_page(request, values=values, errors={}, customer_id=customer_id)


@post("/customers/{customer_id:str}/edit", name="dashboard:customer-update", sync_to_thread=True)
def update_customer_form(
    request: Request[Any, Any, Any], customer_id: FromPath[str], data: FormBody
) -> Template | Redirect:
    values = _customer_form(data)
    container = container_of(request)
    container.ledger.customer(business(request), customer_id)  # another business's: 404
    changes = {**values, "phone_number": values["phone_number"] or None}
    try:
        update_customer(
            container.ledger,
            business(request),
            customer_id,
            changes=changes,
            now=container.clock(),
        )
    except (LedgerError, DomainError) as error:
        errors = {error_field(error, {n: n for n in FIELDS}): error.message}
        return _form_page(
            request, values=values, errors=errors, customer_id=customer_id, status_code=422
        )
    flash(request, "Customer updated")
    return Redirect(f"/dashboard/customers/{customer_id}", status_code=303)


def _customer(
    request: Request[Any, Any, Any], customer_id: str, portal_link: str | None = None
) -> Template:
    container = container_of(request)
    page = customer_page(
        container.ledger, container.reads, business(request), customer_id, container.clock()
    )
    return render(request, "dashboard/customers/page.html", page=page, portal_link=portal_link)


@get("/customers/{customer_id:str}", name="dashboard:customer", sync_to_thread=True)
def customer_detail(request: Request[Any, Any, Any], customer_id: FromPath[str]) -> Template:
    return _customer(request, customer_id)


@post(
    "/customers/{customer_id:str}/portal-link",
    name="dashboard:customer-portal-link",
    status_code=200,
    sync_to_thread=True,
)
def portal_link(request: Request[Any, Any, Any], customer_id: FromPath[str]) -> Template:
    """A new portal link, shown once on the customer page (this answer is not stored)."""
    container = container_of(request)
    token = open_portal_session(
        container.ledger,
        container.portal,
        business(request),
        customer_id,
        return_url=None,
        send_email=None,
        now=container.clock(),
    )
    link = f"{str(request.base_url).rstrip('/')}/portal/{token}"
    return _customer(request, customer_id, portal_link=link)


HANDLERS: tuple[HTTPRouteHandler, ...] = (
    customers_page,
    new_customer_page,
    create_customer,
    edit_customer_page,
    update_customer_form,
    customer_detail,
    portal_link,
)

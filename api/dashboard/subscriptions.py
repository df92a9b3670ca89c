"""The dashboard's subscriptions: the list with filters, subscribing a customer to a product,
the subscription page, and cancelling at the next billing date (with a confirmation step)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from api.dashboard.customers import error_field
from api.dashboard.pages import PAGE_SIZE, business, digits, flash, page_number, pager, render
from api.dashboard.session import FormBody
from api.routes.common import container_of
from application import listings
from application.customer_page import subscription_page
from application.errors import LedgerError
from application.subscription_reads import list_subscriptions
from application.subscriptions import create_subscription, set_cancel_at_period_end
from application.views import CustomerQuery, ProductQuery, SubscriptionQuery
from domain.errors import DomainError

STATUSES = ("active", "cancelled", "expired")  # the statuses this ledger's subscriptions take
MAX_CHOICES = 100  # customers offered in a select; past that, the form asks for an id
FIELDS = {  # what an error's message begins with -> the form field it concerns
    "customer": "customer_id",
    "customer_id": "customer_id",
    "product": "product_id",
    "product_id": "product_id",
    "start_date": "start_date",
    "quantity": "quantity",
    "billing": "country",
    "country": "country",
}


@get("/subscriptions", name="dashboard:subscriptions", sync_to_thread=True)
def subscriptions_page(
    request: Request[Any, Any, Any],
    status: FromQuery[str | None] = None,
    customer_id: FromQuery[str | None] = None,
    product_id: FromQuery[str | None] = None,
) -> Template:
    container = container_of(request)
    filters = {
        "status": status if status in STATUSES else "",
        "customer_id": (customer_id or "").strip(),
        "product_id": (product_id or "").strip(),
    }
    query = SubscriptionQuery(
        business(request),
        customer_id=filters["customer_id"] or None,
        product_id=filters["product_id"] or None,
        status=filters["status"] or None,
        page_number=page_number(request),
        page_size=PAGE_SIZE,
    )
    found = list_subscriptions(container.reads, query, container.clock())
    products = listings.products(
        container.reads, ProductQuery(business(request), page_size=MAX_CHOICES)
    )
    return render(
        request,
        "dashboard/subscriptions/list.html",
        subscriptions=found,
        filters=filters,
        statuses=STATUSES,
        products=products,
        page=pager(request, len(found)),
    )


def _form_page(
    request: Request[Any, Any, Any],
    values: Mapping[str, str],
    errors: Mapping[str, str],
    status_code: int = 200,
) -> Template:
    reads = container_of(request).reads
    customers = listings.customers(
        reads, CustomerQuery(business(request), page_size=MAX_CHOICES + 1)
    )
    products = listings.products(reads, ProductQuery(business(request), page_size=MAX_CHOICES))
    return render(
        request,
        "dashboard/subscriptions/form.html",
        status_code=status_code,
        values=values,
        errors=errors,
        customers=customers if len(customers) <= MAX_CHOICES else None,
        products=products,
    )


@get("/subscriptions/new", name="dashboard:subscription-new", sync_to_thread=True)
def new_subscription_page(
    request: Request[Any, Any, Any], customer_id: FromQuery[str | None] = None
) -> Template:
    values = {
        "customer_id": customer_id or "",
        "product_id": "",
        "start_date": "",
        "quantity": "1",
        "country": "US",
    }
    return _form_page(request, values, {})


def start_of(raw: str) -> datetime | None:
    """A ``datetime-local`` value, read as UTC; empty: now. ``ValueError`` if unreadable."""
    if not raw:
        return None
    moment = datetime.fromisoformat(raw)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _check(values: Mapping[str, str]) -> dict[str, str]:
    errors = {}
    if not values["customer_id"]:
        errors["customer_id"] = "Choose the customer to subscribe."
    if not values["product_id"]:
        errors["product_id"] = "Choose the product to subscribe to."
    if not digits(values["quantity"]):
        errors["quantity"] = "Enter a whole number of at least 1."
    if not values["country"]:
        errors["country"] = "Enter the billing country (a two-letter code such as US)."
    try:
        start_of(values["start_date"])
    except (ValueError, OverflowError):
        errors["start_date"] = "Enter a date and time such as 2026-12-01T00:00 (UTC)."
    return errors


@post("/subscriptions/new", name="dashboard:subscription-create", sync_to_thread=True)
def create_subscription_form(
    request: Request[Any, Any, Any], data: FormBody
) -> Template | Redirect:
    names = ("customer_id", "product_id", "start_date", "quantity", "country")
    values = {name: data.get(name, "").strip() for name in names}
    errors = _check(values)
    if not errors:
        container = container_of(request)
        try:
            view = create_subscription(
                container.ledger,
                business(request),
                customer_id=values["customer_id"],
                product_id=values["product_id"],
                quantity=digits(values["quantity"]) or 1,
                billing={"country": values["country"].upper()},
                metadata=None,
                payment={},
                start_date=start_of(values["start_date"]),
                now=container.clock(),
            )
        except (LedgerError, DomainError) as error:
            errors = {error_field(error, FIELDS): error.message}
        else:
            flash(request, "Subscription created")
            return Redirect(f"/dashboard/subscriptions/{view.subscription_id}", status_code=303)
    return _form_page(request, values, errors, status_code=422)


def _subscription(
    request: Request[Any, Any, Any], subscription_id: str, template: str, **context: Any
) -> Template:
    container = container_of(request)
    page = subscription_page(
        container.ledger, container.reads, business(request), subscription_id, container.clock()
    )
    return render(request, template, page=page, **context)


@get("/subscriptions/{subscription_id:str}", name="dashboard:subscription", sync_to_thread=True)
def subscription_detail(
    request: Request[Any, Any, Any], subscription_id: FromPath[str]
) -> Template:
    return _subscription(request, subscription_id, "dashboard/subscriptions/page.html")


@get(
    "/subscriptions/{subscription_id:str}/cancel",
    name="dashboard:subscription-cancel-confirm",
    sync_to_thread=True,
)
def cancel_page(request: Request[Any, Any, Any], subscription_id: FromPath[str]) -> Template:
    """The confirmation step: what cancelling does, and the form that does it."""
    return _subscription(
        request, subscription_id, "dashboard/subscriptions/cancel.html", comment="", errors={}
    )


@post(
    "/subscriptions/{subscription_id:str}/cancel",
    name="dashboard:subscription-cancel",
    sync_to_thread=True,
)
def cancel(
    request: Request[Any, Any, Any], subscription_id: FromPath[str], data: FormBody
) -> Template | Redirect:
    return _set_cancel(request, subscription_id, data, cancel=True)


@post(
    "/subscriptions/{subscription_id:str}/resume",
    name="dashboard:subscription-resume",
    sync_to_thread=True,
)
def resume(
    request: Request[Any, Any, Any], subscription_id: FromPath[str], data: FormBody
) -> Template | Redirect:
    return _set_cancel(request, subscription_id, data, cancel=False)


def _set_cancel(
    request: Request[Any, Any, Any], subscription_id: str, data: Mapping[str, str], *, cancel: bool
) -> Template | Redirect:
    container = container_of(request)
    comment = data.get("comment", "").strip()
    try:
        set_cancel_at_period_end(
            container.ledger,
            business(request),
            subscription_id,
            cancel=cancel,
            comment=comment or None,
            now=container.clock(),
        )
    except DomainError as error:
        return _subscription(
            request,
            subscription_id,
            "dashboard/subscriptions/cancel.html",
            status_code=422,
            comment=comment,
            errors={"": error.message},
        )
    flash(
        request,
        "The subscription ends at its next billing date" if cancel else "Cancellation withdrawn",
    )
    return Redirect(f"/dashboard/subscriptions/{subscription_id}", status_code=303)


HANDLERS: tuple[HTTPRouteHandler, ...] = (
    subscriptions_page,
    new_subscription_page,
    create_subscription_form,
    subscription_detail,
    cancel_page,
    cancel,
    resume,
)

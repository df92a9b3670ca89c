"""The dashboard's credit entitlements: list, create, edit, delete (soft, after a
confirmation page), each one's customer balances, and manual grants and debits.

Writes go through ``application.credits`` as the API's do; a refused field is
shown next to its input with the domain's message (which starts with the field's
wire name, as ``rollover_percentage must be ...``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from api.dashboard import price_form
from api.dashboard.pages import PAGE_SIZE, business, flash, page_number, pager, render
from api.dashboard.price_form import FormError
from api.dashboard.session import FormBody
from api.routes.common import container_of
from application import credits, listings
from application.credit_balances import BalanceQuery
from application.errors import IdempotencyKeyReusedError, NotFoundError
from application.views import EntitlementQuery, EntitlementView
from domain.credit_entitlement import OVERAGE_CHOICES, CreditEntitlement
from domain.errors import DomainError

BASE = "/dashboard/credits"
FLAGS = ("overage_enabled", "rollover_enabled")
COUNTS = (
    ("overage_limit", "Overage limit"),
    ("rollover_percentage", "Rollover percentage"),
    ("max_rollover_count", "Rollover at most"),
    ("rollover_timeframe_count", "Rolled-over credit lasts"),
    ("expires_after_days", "Expires after days"),
)
TEXTS = (
    "name",
    "description",
    "unit",
    "currency",
    "overage_behavior",
    "rollover_timeframe_interval",
)
FIELDS = frozenset({*FLAGS, *(name for name, _ in COUNTS), *TEXTS, "precision", "price_per_unit"})
_LEADING_NAME = re.compile(r"[a-z_]+")
DEFAULTS = {"precision": "0", "overage_behavior": "forgive_at_reset"}
FORM_MARKER = "credit"  # the hidden ``form`` field every rendered entitlement form sends
INCOMPLETE = (
    "The form was not sent whole (a field it always sends is missing): nothing was saved. "
    "Open the form again and submit it from the page."
)


def incomplete(form: Mapping[str, str], creating: bool) -> bool:
    """Whether the POST lacks a field the rendered form always sends (its checkboxes
    aside): a hand-made request is refused, not read as flags off and numbers cleared."""
    sent = {*TEXTS, *(name for name, _ in COUNTS), "price_per_unit"}
    if creating:
        sent.add("precision")
    return form.get("form") != FORM_MARKER or any(name not in form for name in sent)


def _wire(form: Mapping[str, str], creating: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The entitlement's wire fields from the form, and the inputs that could not be read."""
    if incomplete(form, creating):
        return {}, {"": INCOMPLETE}
    errors: dict[str, str] = {}
    wire: dict[str, Any] = {flag: form.get(flag) == "on" for flag in FLAGS}
    for name in TEXTS:
        wire[name] = form.get(name, "").strip() or None
    wire["name"] = wire["name"] or ""
    wire["unit"] = wire["unit"] or ""
    numbers = [*COUNTS, ("precision", "Precision")] if creating else COUNTS
    for name, label in numbers:
        text = form.get(name, "").strip()
        try:
            wire[name] = price_form.integer(text, name, label) if text else None
        except FormError as error:
            errors[name] = error.message
    price = form.get("price_per_unit", "").strip()
    wire["price_per_unit"] = None
    if price and not wire["currency"]:
        errors["currency"] = "Choose the currency of the price per credit"
    elif price:
        exponent = price_form.exponent_of(wire["currency"])
        try:
            wire["price_per_unit"] = price_form.minor_price(
                price, exponent, "price_per_unit", "Price per credit"
            )
        except FormError as error:
            errors[error.name] = error.message
    return wire, errors


def field_of(message: str) -> str:
    found = _LEADING_NAME.match(message)
    name = found.group(0) if found else ""
    return name if name in FIELDS else ""


def form_of(settings: Mapping[str, Any]) -> dict[str, str]:
    """The form that edits an entitlement as it is."""
    form = {k: "" if v is None else str(v) for k, v in settings.items() if k in FIELDS}
    for flag in FLAGS:
        form[flag] = "on" if settings.get(flag) else ""
    if settings.get("price_per_unit") is not None and settings.get("currency"):
        form["price_per_unit"] = price_form.major(settings["price_per_unit"], settings["currency"])
    return form


def _form_page(
    request: Request[Any, Any, Any],
    form: Mapping[str, str],
    entitlement: EntitlementView | None,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    return render(
        request,
        "dashboard/credits/form.html",
        status_code=status_code,
        form={**DEFAULTS, **form},
        errors=dict(errors or {}),
        entitlement=entitlement,
        currencies=price_form.CURRENCIES,
        behaviors=OVERAGE_CHOICES,
        intervals=price_form.INTERVALS,
    )


def _view(found: CreditEntitlement) -> EntitlementView:
    return EntitlementView(
        found.business_id,
        found.entitlement_id,
        found.settings,
        found.created_at,
        found.updated_at,
        found.is_deleted,
    )


def _load(request: Request[Any, Any, Any], entitlement_id: str) -> EntitlementView:
    ledger = container_of(request).ledger
    return _view(credits.load_entitlement(ledger, business(request), entitlement_id))


@get("/credits", name="dashboard:credits", sync_to_thread=True)
def entitlement_list(request: Request[Any, Any, Any], deleted: FromQuery[bool] = False) -> Template:
    query = EntitlementQuery(business(request), page_number(request), PAGE_SIZE, deleted)
    found = credits.entitlements(container_of(request).reads, query)
    return render(
        request,
        "dashboard/credits/list.html",
        entitlements=found,
        deleted=deleted,
        page=pager(request, len(found)),
    )


@get("/credits/new", name="dashboard:credit-new", sync_to_thread=True)
def new_entitlement(request: Request[Any, Any, Any]) -> Template:
    return _form_page(request, {}, None)


@post("/credits/new", name="dashboard:credit-create", sync_to_thread=True)
def create_entitlement(request: Request[Any, Any, Any], data: FormBody) -> Response[Any]:
    container = container_of(request)
    wire, errors = _wire(data, creating=True)
    if not errors:
        try:
            made = credits.create_entitlement(
                container.ledger, business(request), wire, container.clock()
            )
        except DomainError as error:
            errors = {field_of(error.message): error.message}
        else:
            flash(request, "Credit entitlement created")
            return Redirect(f"{BASE}/{made.entitlement_id}", status_code=303)
    return _form_page(request, data, None, errors, 422)


def _page(
    request: Request[Any, Any, Any],
    entitlement: EntitlementView,
    grant: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    container = container_of(request)
    query = BalanceQuery(
        business(request),
        entitlement.entitlement_id,
        page_number=page_number(request),
        page_size=PAGE_SIZE,
    )
    balances = listings.balances(container.reads, query)
    return render(
        request,
        "dashboard/credits/page.html",
        status_code=status_code,
        entitlement=entitlement,
        settings=entitlement.settings,
        price_per_credit=_price_of(entitlement.settings),
        balances=balances,
        page=pager(request, len(balances)),
        grant={"entry_type": "credit", **(grant or {}), "idempotency_key": secrets.token_hex(12)},
        errors=dict(errors or {}),
    )


def _price_of(settings: Mapping[str, Any]) -> Decimal | None:
    """The price of one credit in minor units, when the entitlement has one."""
    price = settings.get("price_per_unit")
    return None if price is None or not settings.get("currency") else Decimal(price)


@get("/credits/{entitlement_id:str}", name="dashboard:credit", sync_to_thread=True)
def entitlement_page(request: Request[Any, Any, Any], entitlement_id: FromPath[str]) -> Template:
    return _page(request, _load(request, entitlement_id))


@post("/credits/{entitlement_id:str}/entries", name="dashboard:credit-entry", sync_to_thread=True)
def add_entry(
    request: Request[Any, Any, Any], entitlement_id: FromPath[str], data: FormBody
) -> Response[Any]:
    """A manual grant (a credit) or debit for one customer, idempotent by the form's key."""
    container = container_of(request)
    entitlement = _load(request, entitlement_id)  # another business's: 404
    customer_id = data.get("customer_id", "").strip()
    entry_type = data.get("entry_type", "credit")
    try:
        credits.add_ledger_entry(
            container.ledger,
            business(request),
            entitlement_id,
            customer_id,
            amount=data.get("amount", "").strip(),
            entry_type=entry_type,
            reason=data.get("reason", "").strip() or None,
            metadata=None,
            idempotency_key=data.get("idempotency_key") or None,
            expires_at=None,
            now=container.clock(),
        )
    except NotFoundError as error:
        errors = {"customer_id": error.message}
    except (DomainError, IdempotencyKeyReusedError) as error:
        name = field_of(error.message)
        errors = {name if name in ("amount", "reason", "entry_type") else "amount": error.message}
    else:
        flash(request, f"{'Granted' if entry_type == 'credit' else 'Debited'} credits")
        return Redirect(f"{BASE}/{entitlement_id}", status_code=303)
    return _page(request, entitlement, data, errors, 422)


@get("/credits/{entitlement_id:str}/edit", name="dashboard:credit-edit", sync_to_thread=True)
def edit_entitlement(request: Request[Any, Any, Any], entitlement_id: FromPath[str]) -> Template:
    entitlement = _load(request, entitlement_id)
    return _form_page(request, form_of(entitlement.settings), entitlement)


@post("/credits/{entitlement_id:str}/edit", name="dashboard:credit-update", sync_to_thread=True)
def update_entitlement(
    request: Request[Any, Any, Any], entitlement_id: FromPath[str], data: FormBody
) -> Response[Any]:
    container = container_of(request)
    entitlement = _load(request, entitlement_id)
    wire, errors = _wire(data, creating=False)
    if not errors:
        try:
            credits.update_entitlement(
                container.ledger, business(request), entitlement_id, wire, container.clock()
            )
        except DomainError as error:
            errors = {field_of(error.message): error.message}
        else:
            flash(request, "Credit entitlement saved")
            return Redirect(f"{BASE}/{entitlement_id}", status_code=303)
    return _form_page(request, data, entitlement, errors, 422)


@get("/credits/{entitlement_id:str}/delete", name="dashboard:credit-delete", sync_to_thread=True)
def confirm_delete(request: Request[Any, Any, Any], entitlement_id: FromPath[str]) -> Template:
    return render(
        request, "dashboard/credits/delete.html", entitlement=_load(request, entitlement_id)
    )


@post("/credits/{entitlement_id:str}/delete", name="dashboard:credit-deleted", sync_to_thread=True)
def delete_entitlement(request: Request[Any, Any, Any], entitlement_id: FromPath[str]) -> Redirect:
    container = container_of(request)
    credits.delete_entitlement(
        container.ledger, business(request), entitlement_id, container.clock()
    )
    flash(request, "Credit entitlement deleted: what attaches it keeps using it")
    return Redirect(f"{BASE}/{entitlement_id}", status_code=303)


@post(
    "/credits/{entitlement_id:str}/undelete", name="dashboard:credit-undelete", sync_to_thread=True
)
def undelete_entitlement(
    request: Request[Any, Any, Any], entitlement_id: FromPath[str]
) -> Redirect:
    container = container_of(request)
    credits.undelete_entitlement(
        container.ledger, business(request), entitlement_id, container.clock()
    )
    flash(request, "Credit entitlement undeleted")
    return Redirect(f"{BASE}/{entitlement_id}", status_code=303)


HANDLERS: tuple[HTTPRouteHandler, ...] = (
    entitlement_list,
    new_entitlement,
    create_entitlement,
    entitlement_page,
    add_entry,
    edit_entitlement,
    update_entitlement,
    confirm_delete,
    delete_entitlement,
    undelete_entitlement,
)

"""The dashboard's products: list, create and edit usage-based prices, archive, and the
worked example of each meter price, computed by the code that bills
(``application.price_example``).

The form works without JavaScript: its row buttons (``action``: add a meter price,
a tier, a per-value price, a credit entitlement, remove one) and "Preview price"
re-render it with what was typed; only "Create product" (``action=save``) writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from api.dashboard import price_form, price_rows
from api.dashboard.pages import PAGE_SIZE, business, flash, page_number, pager, render
from api.dashboard.price_form import ProductWire
from api.dashboard.price_rows import ProductForm
from api.dashboard.session import FormBody
from api.routes.common import container_of
from application import credits, listings
from application.errors import InvalidRequestError, NotFoundError
from application.price_example import DEFAULT_QUANTITY, MAX_QUANTITY, PriceExample, price_examples
from application.products import archive_product, product_subscriptions, unarchive_product
from application.views import EntitlementQuery, MeterQuery, MeterView, ProductQuery, ProductView
from domain.credit_entitlement import OVERAGE_CHOICES
from domain.errors import DomainError

BASE = "/dashboard/products"
OPTIONS_LIMIT = 100  # meters and entitlements offered in a form's selects
INCOMPLETE = (
    "The form was not sent whole (a field it always sends is missing): nothing was saved. "
    "Open the form again and submit it from the page."
)
_QUANTITY = re.compile(r"[0-9]{1,15}(\.[0-9]{1,12})?")


@dataclass(frozen=True, slots=True)
class Examples:
    """The worked example of each meter row of a form (by row), or why there is none."""

    quantity: str
    by_row: Mapping[int, PriceExample]
    error: str = ""


def _quantity(text: str) -> Decimal | None:
    if _QUANTITY.fullmatch(text) is None or Decimal(text) > MAX_QUANTITY:
        return None
    return Decimal(text)


def _examples(
    request: Request[Any, Any, Any], price: Mapping[str, Any], quantity: str
) -> tuple[tuple[PriceExample, ...], str]:
    """The examples of ``price`` at ``quantity``, or the message saying why there are none."""
    units = _quantity(quantity)
    if units is None:
        return (), f"Example quantity must be a number of units such as 2500, not {quantity!r}"
    try:
        found = price_examples(container_of(request).ledger, business(request), price, units)
    except DomainError as error:
        return (), error.message
    return found, ""


@get("/products", name="dashboard:products", sync_to_thread=True)
def product_list(request: Request[Any, Any, Any], archived: FromQuery[bool] = False) -> Template:
    query = ProductQuery(business(request), page_number(request), PAGE_SIZE, archived=archived)
    found = listings.products(container_of(request).reads, query)
    return render(
        request,
        "dashboard/products/list.html",
        products=found,
        archived=archived,
        page=pager(request, len(found)),
    )


def _options(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What the form's selects offer: the business's meters and credit entitlements."""
    container = container_of(request)
    meters = listings.meters(
        container.reads, MeterQuery(business(request), page_size=OPTIONS_LIMIT)
    )
    found = credits.entitlements(
        container.reads, EntitlementQuery(business(request), page_size=OPTIONS_LIMIT)
    )
    return {
        "meter_options": [(m.meter_id, f"{m.name} ({m.measurement_unit})") for m in meters],
        "entitlement_options": [
            (e.entitlement_id, f"{e.settings['name']} ({e.settings['unit']})") for e in found
        ],
        "currencies": price_form.CURRENCIES,
        "intervals": price_form.INTERVALS,
        "models": price_form.MODELS,
        "taxes": price_form.TAXES,
        "overage_behaviors": OVERAGE_CHOICES,
    }


def _form_page(
    request: Request[Any, Any, Any],
    form: ProductForm,
    *,
    product: ProductView | None,
    errors: Mapping[str, str] | None = None,
    examples: Examples | None = None,
    status_code: int = 200,
    refused: bool | None = None,
) -> Template:
    return render(
        request,
        "dashboard/products/form.html",
        status_code=status_code,
        form=form,
        product=product,
        errors=dict(errors or {}),
        examples=examples,
        refused=status_code == 422 if refused is None else refused,
        **_options(request),
    )


@get("/products/new", name="dashboard:product-new", sync_to_thread=True)
def new_product(request: Request[Any, Any, Any]) -> Template:
    return _form_page(request, ProductForm(), product=None)


def _submitted(
    request: Request[Any, Any, Any],
    data: Mapping[str, str],
    product: ProductView | None,
    write: Callable[[ProductWire], ProductView],
) -> Response[Any]:
    """A row button or a preview re-renders the form; ``save`` writes, or answers 422.
    A POST lacking a field the form always sends is refused, never read with defaults
    (they would replace the product's price)."""
    form = price_rows.parse_form(data)
    action = data.get("action", "save")
    if price_rows.incomplete(data, rows=action == "save"):
        errors = {"": INCOMPLETE}
        return _form_page(request, form, product=product, errors=errors, status_code=422)
    if action not in ("save", "preview"):
        price_rows.apply_action(form, action)
        return _form_page(request, form, product=product)
    if action == "preview" and price_rows.fill_tiers(form):
        return _form_page(request, form, product=product)  # a model changed: its fields first
    wire, errors = price_form.product_wire(form)
    if action == "preview":
        examples = _preview(request, form, wire) if not errors else None
        if examples is not None and examples.error:
            name = price_form.field_of(examples.error, form)
            if examples.error.startswith("Example quantity"):
                name = "example_quantity"
            errors = {name: examples.error} if name else {}
        status = 422 if errors or (examples is not None and examples.error) else 200
        return _form_page(
            request,
            form,
            product=product,
            errors=errors,
            examples=examples,
            status_code=status,
            refused=False,
        )
    if not errors:
        try:
            saved = write(wire)
        except (DomainError, InvalidRequestError) as error:
            errors = {price_form.field_of(error.message, form): error.message}
        else:
            flash(request, "Product created" if product is None else "Product saved")
            return Redirect(f"{BASE}/{saved.product_id}", status_code=303)
    return _form_page(request, form, product=product, errors=errors, status_code=422)


def _preview(request: Request[Any, Any, Any], form: ProductForm, wire: ProductWire) -> Examples:
    found, error = _examples(request, wire.price, form.example_quantity)
    rows = dict(zip(price_form.sent_rows(form), found, strict=False))
    return Examples(form.example_quantity, rows, error)


@post("/products/new", name="dashboard:product-create", sync_to_thread=True)
def create_product(request: Request[Any, Any, Any], data: FormBody) -> Response[Any]:
    container = container_of(request)

    def write(wire: ProductWire) -> ProductView:
        return container.ledger.create_product(
            business(request),
            name=wire.name,
            description=wire.description,
            tax_category=wire.tax_category,
            metadata=None,
            price=wire.price,
            now=container.clock(),
            credit_entitlements=wire.credit_entitlements or None,
        )

    return _submitted(request, data, None, write)


@get("/products/{product_id:str}", name="dashboard:product", sync_to_thread=True)
def product_page(
    request: Request[Any, Any, Any],
    product_id: FromPath[str],
    quantity: FromQuery[str | None] = None,
) -> Template:
    container = container_of(request)
    view = container.ledger.product(business(request), product_id)
    shown = quantity or format(DEFAULT_QUANTITY, "f")
    examples, error = _examples(request, view.price, shown)
    return render(
        request,
        "dashboard/products/page.html",
        product=view,
        price=view.price,
        meters=_meters_of(request, view),
        unit_prices={
            m["meter_id"]: Decimal(m["price_per_unit"])
            for m in view.price.get("meters", [])
            if "price_per_unit" in m
        },
        examples=examples,
        quantity=shown,
        quantity_error=error,
        subscriptions=product_subscriptions(
            container.reads, business(request), product_id, container.clock()
        ),
    )


def _meters_of(request: Request[Any, Any, Any], view: ProductView) -> dict[str, MeterView]:
    ledger = container_of(request).ledger
    found = {}
    for meter in view.price.get("meters", []):
        try:
            found[meter["meter_id"]] = ledger.meter(business(request), meter["meter_id"])
        except NotFoundError:
            continue
    return found


@get("/products/{product_id:str}/edit", name="dashboard:product-edit", sync_to_thread=True)
def edit_product(request: Request[Any, Any, Any], product_id: FromPath[str]) -> Template:
    view = container_of(request).ledger.product(business(request), product_id)
    form = price_form.product_form(view.name, view.description, view.tax_category, view.price)
    return _form_page(request, form, product=view)


@post("/products/{product_id:str}/edit", name="dashboard:product-update", sync_to_thread=True)
def update_product(
    request: Request[Any, Any, Any], product_id: FromPath[str], data: FormBody
) -> Response[Any]:
    container = container_of(request)
    view = container.ledger.product(business(request), product_id)

    def write(wire: ProductWire) -> ProductView:
        changes = {
            "name": wire.name,
            "description": wire.description,
            "tax_category": wire.tax_category,
            "price": wire.price,
            "credit_entitlements": wire.credit_entitlements,
        }
        return container.ledger.update_product(
            business(request), product_id, changes=changes, now=container.clock()
        )

    return _submitted(request, data, view, write)


@post("/products/{product_id:str}/archive", name="dashboard:product-archive", sync_to_thread=True)
def archive(request: Request[Any, Any, Any], product_id: FromPath[str]) -> Redirect:
    container = container_of(request)
    archive_product(container.ledger, business(request), product_id, container.clock())
    flash(request, "Product archived: it takes no new subscriptions")
    return Redirect(f"{BASE}/{product_id}", status_code=303)


@post(
    "/products/{product_id:str}/unarchive", name="dashboard:product-unarchive", sync_to_thread=True
)
def unarchive(request: Request[Any, Any, Any], product_id: FromPath[str]) -> Redirect:
    container = container_of(request)
    unarchive_product(container.ledger, business(request), product_id, container.clock())
    flash(request, "Product unarchived: it takes new subscriptions again")
    return Redirect(f"{BASE}/{product_id}", status_code=303)


HANDLERS: tuple[HTTPRouteHandler, ...] = (
    product_list,
    new_product,
    create_product,
    product_page,
    edit_product,
    update_product,
    archive,
    unarchive,
)

"""The dashboard's invoices: the list, the invoice page (lines, credits drawn, adjustments,
SHA-256 and cut), its explanation, and a re-fold from the log as ``ledger audit verify``
does it. Invoice ids are the API's (``GET /invoices/{invoice_id}``)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from api.dashboard.pages import PAGE_SIZE, business, page_number, pager, render
from api.routes.common import container_of
from application.invoice_page import (
    Refold,
    explain_page,
    invoice_list,
    invoice_page,
    refold_invoice,
)
from application.views import InvoiceQuery


@get("/invoices", name="dashboard:invoices", sync_to_thread=True)
def invoices_page(
    request: Request[Any, Any, Any],
    customer_id: FromQuery[str | None] = None,
    subscription_id: FromQuery[str | None] = None,
) -> Template:
    filters = {
        "customer_id": (customer_id or "").strip(),
        "subscription_id": (subscription_id or "").strip(),
    }
    query = InvoiceQuery(
        business(request),
        filters["customer_id"] or None,
        filters["subscription_id"] or None,
        page_number(request),
        PAGE_SIZE,
    )
    found = invoice_list(container_of(request).reads, query)
    return render(
        request,
        "dashboard/invoices/list.html",
        invoices=found,
        filters=filters,
        page=pager(request, len(found)),
    )


def _invoice(
    request: Request[Any, Any, Any], invoice_id: str, refold: Refold | None = None
) -> Template:
    container = container_of(request)
    page = invoice_page(container.ledger, container.reads, business(request), invoice_id)
    return render(request, "dashboard/invoices/page.html", page=page, refold=refold)


@get("/invoices/{invoice_id:str}", name="dashboard:invoice", sync_to_thread=True)
def invoice_detail(request: Request[Any, Any, Any], invoice_id: FromPath[str]) -> Template:
    return _invoice(request, invoice_id)


@post(
    "/invoices/{invoice_id:str}/refold",
    name="dashboard:invoice-refold",
    status_code=200,
    sync_to_thread=True,
)
def refold(request: Request[Any, Any, Any], invoice_id: FromPath[str]) -> Template:
    """Fold the invoice again, flat from the log at its cut, and say whether it matches."""
    container = container_of(request)
    found = refold_invoice(container.ledger, container.reads, business(request), invoice_id)
    return _invoice(request, invoice_id, refold=found)


@get("/invoices/{invoice_id:str}/explain", name="dashboard:invoice-explain", sync_to_thread=True)
def explain(
    request: Request[Any, Any, Any],
    invoice_id: FromPath[str],
    meter_id: FromQuery[str | None] = None,
) -> Template:
    container = container_of(request)
    page = explain_page(
        container.ledger,
        container.reads,
        business(request),
        invoice_id,
        meter_id=meter_id,
        page_number=page_number(request),
        page_size=PAGE_SIZE,
    )
    return render(
        request,
        "dashboard/invoices/explain.html",
        page=page,
        invoice_id=invoice_id,
        sample_page=pager(request, len(page.sample)),
    )


HANDLERS: tuple[HTTPRouteHandler, ...] = (invoices_page, invoice_detail, refold, explain)

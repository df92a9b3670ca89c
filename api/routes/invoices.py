"""Finalized invoices: ``GET /invoices`` (by customer or subscription), ``GET /invoices/{id}``."""

from __future__ import annotations

import json
from typing import Any

from litestar import Controller, Request, get
from litestar.params import FromPath, FromQuery

from api.response import ExactJSONResponse
from api.routes.common import PageNumber, PageSize, business_of, container_of
from application import listings
from application.billing import invoice_record
from application.catalogue import invoice_view
from application.explain import explain_invoice
from application.views import InvoiceQuery, InvoiceView
from infrastructure.keys import Principal


def invoice_read(view: InvoiceView) -> dict[str, Any]:
    """Who and when, and the canonical invoice with the SHA-256 of its exact bytes."""
    return {
        "invoice_id": view.invoice_id,
        "business_id": view.business_id,
        "subscription_id": view.subscription_id,
        "customer_id": view.customer_id,
        "cycle_index": view.cycle_index,
        "cycle_start": view.cycle_start,
        "cycle_end": view.cycle_end,
        "cut": view.cut,
        "currency": view.currency,
        "total_minor": view.total_minor,
        "finalized_at": view.finalized_at,
        "sha256": view.sha256,
        "invoice": json.loads(view.document),
    }


class InvoiceController(Controller):
    path = "/invoices"
    tags = ["invoices"]  # noqa: RUF012

    @get("/{invoice_id:str}", summary="A finalized invoice", sync_to_thread=True)
    def retrieve(
        self, request: Request[Principal, Any, Any], invoice_id: FromPath[str]
    ) -> ExactJSONResponse:
        record = invoice_record(container_of(request).ledger, business_of(request), invoice_id)
        return ExactJSONResponse(invoice_read(invoice_view(record)))

    @get(
        "/{invoice_id:str}/explain",
        summary="Why a finalized invoice says what it says (our extension)",
        description=(
            "Per line: the meter, its filter and aggregation, the events it counted at the "
            "invoice's cut and what they measure (recomputed from the events), the decisive "
            "event of a max, min or last meter (max/min: the earliest (timestamp, event_id) "
            "among equal values; last: the greatest (timestamp, event_id)), the credit grants "
            "drawn in drawdown order and the line as billed; and the adjustments it carries."
        ),
        sync_to_thread=True,
    )
    def explain(
        self, request: Request[Principal, Any, Any], invoice_id: FromPath[str]
    ) -> ExactJSONResponse:
        container = container_of(request)
        explained = explain_invoice(
            container.ledger, container.reads, business_of(request), invoice_id
        )
        return ExactJSONResponse(explained)

    @get("/", summary="Finalized invoices, newest cycle first", sync_to_thread=True)
    def list_invoices(
        self,
        request: Request[Principal, Any, Any],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        customer_id: FromQuery[str | None] = None,
        subscription_id: FromQuery[str | None] = None,
    ) -> ExactJSONResponse:
        container = container_of(request)
        query = InvoiceQuery(
            business_of(request), customer_id, subscription_id, page_number, page_size
        )
        items = [invoice_read(v) for v in listings.invoices(container.reads, query)]
        return ExactJSONResponse({"items": items})

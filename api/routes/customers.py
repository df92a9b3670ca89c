"""Customers: ``POST /customers``, ``GET /customers/{id}``, ``GET /customers``."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery

from api.routes.common import PageNumber, PageSize, business_of, container_of, moment
from api.schemas import CustomerCreate, CustomerRead, Page, decode
from application import listings
from application.views import CustomerQuery, CustomerView
from infrastructure.keys import Principal


def customer_read(view: CustomerView) -> CustomerRead:
    return CustomerRead(
        business_id=view.business_id,
        created_at=view.created_at,
        customer_id=view.customer_id,
        email=view.email,
        name=view.name,
        phone_number=view.phone_number,
        metadata=view.metadata,
    )


class CustomerController(Controller):
    path = "/customers"
    tags = ["customers"]  # noqa: RUF012

    @post("/", status_code=200, summary="Create a customer")
    async def create(self, request: Request[Principal, Any, Any]) -> CustomerRead:
        data = decode(await request.body(), CustomerCreate)
        container = container_of(request)
        view = await anyio.to_thread.run_sync(
            lambda: container.ledger.register_customer(
                business_of(request),
                email=data.email,
                name=data.name,
                phone_number=data.phone_number,
                metadata=data.metadata,
                now=container.clock(),
            )
        )
        return customer_read(view)

    @get("/{customer_id:str}", summary="Retrieve a customer", sync_to_thread=True)
    def retrieve(
        self, request: Request[Principal, Any, Any], customer_id: FromPath[str]
    ) -> CustomerRead:
        view = container_of(request).ledger.customer(business_of(request), customer_id)
        return customer_read(view)

    @get("/", summary="List customers, newest first", sync_to_thread=True)
    def list_customers(
        self,
        request: Request[Principal, Any, Any],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        email: FromQuery[str | None] = None,
        name: FromQuery[str | None] = None,
        created_at_gte: FromQuery[str | None] = None,
        created_at_lte: FromQuery[str | None] = None,
    ) -> Page[CustomerRead]:
        container = container_of(request)
        query = CustomerQuery(
            business_id=business_of(request),
            email=email,
            name=name,
            created_at_gte=moment(created_at_gte),
            created_at_lte=moment(created_at_lte),
            page_number=page_number,
            page_size=page_size,
        )
        return Page(items=[customer_read(v) for v in listings.customers(container.reads, query)])

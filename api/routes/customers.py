"""Customers: create, retrieve, list, update, their credit under each entitlement, and
a link to their portal."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.params import FromPath, FromQuery

from api.routes.common import PageNumber, PageSize, business_of, container_of, moment
from api.routes.portal import CustomerPortalSessionRead
from api.schemas import CustomerCreate, CustomerRead, Page, decode
from application import listings
from application.customers import CustomerCredit, customer_credits, update_customer
from application.errors import InvalidRequestError
from application.portal import open_portal_session
from application.views import CustomerQuery, CustomerView
from infrastructure.keys import Principal


class CustomerUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The SDK's ``CustomerUpdateParams``: a field left out stays as it is."""

    email: str | msgspec.UnsetType | None = msgspec.UNSET
    name: str | msgspec.UnsetType | None = msgspec.UNSET
    phone_number: str | msgspec.UnsetType | None = msgspec.UNSET  # null: removed
    metadata: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET  # null: emptied
    preferred_locale: str | msgspec.UnsetType | None = msgspec.UNSET  # accepted, not kept


class CustomerCreditRead(msgspec.Struct):
    """An item of the SDK's ``CustomerListCreditEntitlementsResponse``."""

    balance: str
    credit_entitlement_id: str
    name: str
    overage: str
    unit: str
    description: str | None = None


def customer_credit_read(credit: CustomerCredit) -> CustomerCreditRead:
    return CustomerCreditRead(
        balance=credit.balance,
        credit_entitlement_id=credit.entitlement_id,
        name=credit.name,
        overage=credit.overage,
        unit=credit.unit,
        description=credit.description,
    )


def customer_changes(data: CustomerUpdate) -> dict[str, Any]:
    """The fields sent, with a clear 422 for a required one sent as null."""
    changes = {
        field: value
        for field in ("email", "name", "phone_number", "metadata")
        if (value := getattr(data, field)) is not msgspec.UNSET
    }
    for required in ("email", "name"):
        if required in changes and changes[required] is None:
            raise InvalidRequestError(f"{required} cannot be null", path=f"$.{required}")
    if "metadata" in changes and changes["metadata"] is None:
        changes["metadata"] = {}
    return changes


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

    @patch("/{customer_id:str}", summary="Update a customer's email, name, phone or metadata")
    async def update(
        self, request: Request[Principal, Any, Any], customer_id: FromPath[str]
    ) -> CustomerRead:
        changes = customer_changes(decode(await request.body(), CustomerUpdate))
        container = container_of(request)
        view = await anyio.to_thread.run_sync(
            lambda: update_customer(
                container.ledger,
                business_of(request),
                customer_id,
                changes=changes,
                now=container.clock(),
            )
        )
        return customer_read(view)

    @get(
        "/{customer_id:str}/credit-entitlements",
        summary="The customer's credit entitlements, with balances",
        sync_to_thread=True,
    )
    def list_credit_entitlements(
        self, request: Request[Principal, Any, Any], customer_id: FromPath[str]
    ) -> Page[CustomerCreditRead]:
        found = customer_credits(container_of(request).reads, business_of(request), customer_id)
        return Page(items=[customer_credit_read(c) for c in found])

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

    @post(
        "/{customer_id:str}/customer-portal/session",
        status_code=200,
        summary="A signed link to the customer's read-only portal page",
        description=(
            "The link expires after LEDGER_PORTAL_LINK_SECONDS (an hour by default). "
            "return_url (http or https) is shown on the page as a way back; this ledger "
            "sends no email, so send_email=true is refused with 422."
        ),
        opt={"scope": "admin"},  # the link opens the customer's invoices to whoever holds it
    )
    async def create_portal_session(
        self,
        request: Request[Principal, Any, Any],
        customer_id: FromPath[str],
        return_url: FromQuery[str | None] = None,
        send_email: FromQuery[bool | None] = None,
    ) -> CustomerPortalSessionRead:
        container = container_of(request)
        token = await anyio.to_thread.run_sync(
            lambda: open_portal_session(
                container.ledger,
                container.portal,
                business_of(request),
                customer_id,
                return_url=return_url,
                send_email=send_email,
                now=container.clock(),
            )
        )
        return CustomerPortalSessionRead(link=f"{str(request.base_url).rstrip('/')}/portal/{token}")

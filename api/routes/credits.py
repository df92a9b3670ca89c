"""Credit entitlements, and each customer's balance, grants and ledger under one.

Writes go to the log (``application.credits``); balances, grants and ledger
entries are read from the balance projection, after it has caught up with the
log (read-your-writes, as the other listings).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, FromQuery

from api.credit_schemas import (
    CreditBalanceRead,
    CreditEntitlementRead,
    CreditGrantRead,
    CreditLedgerEntryRead,
    LedgerEntryCreate,
    LedgerEntryCreated,
)
from api.routes.common import PageNumber, PageSize, business_of, container_of, moment
from api.schemas import Page, decode
from application import credits, listings
from application.credit_balances import BalanceQuery, GrantQuery, LedgerQuery
from application.errors import InvalidRequestError, NotFoundError
from application.views import EntitlementQuery, EntitlementView
from domain.credit_entitlement import CreditEntitlement
from infrastructure.keys import Principal

GRANT_STATUSES = ("active", "expired", "depleted")
TRANSACTION_TYPES = (
    "credit_added",
    "credit_deducted",
    "credit_expired",
    "credit_rolled_over",
    "rollover_forfeited",
    "overage_charged",
    "overage_reset",
    "auto_top_up",
    "manual_adjustment",
    "refund",
)


def entitlement_read(entitlement: CreditEntitlement | EntitlementView) -> CreditEntitlementRead:
    settings = entitlement.settings
    return CreditEntitlementRead(
        id=entitlement.entitlement_id,
        business_id=entitlement.business_id,
        created_at=entitlement.created_at,
        updated_at=entitlement.updated_at or entitlement.created_at,
        **settings,
    )


class CreditEntitlementController(Controller):
    path = "/credit-entitlements"
    tags = ["credits"]  # noqa: RUF012

    @post("/", status_code=200, summary="Create a credit entitlement")
    async def create(self, request: Request[Principal, Any, Any]) -> CreditEntitlementRead:
        raw = decode(await request.body(), dict[str, Any])
        container = container_of(request)
        entitlement = await anyio.to_thread.run_sync(
            lambda: credits.create_entitlement(
                container.ledger, business_of(request), raw, container.clock()
            )
        )
        return entitlement_read(entitlement)

    @get("/", summary="List credit entitlements, newest first", sync_to_thread=True)
    def list_entitlements(
        self,
        request: Request[Principal, Any, Any],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        deleted: FromQuery[bool] = False,
    ) -> Page[CreditEntitlementRead]:
        query = EntitlementQuery(business_of(request), page_number, page_size, deleted)
        found = credits.entitlements(container_of(request).reads, query)
        return Page(items=[entitlement_read(e) for e in found])

    @patch("/{entitlement_id:str}", summary="Change a credit entitlement's rules")
    async def update(
        self, request: Request[Principal, Any, Any], entitlement_id: FromPath[str]
    ) -> CreditEntitlementRead:
        raw = decode(await request.body(), dict[str, Any])
        container = container_of(request)
        entitlement = await anyio.to_thread.run_sync(
            lambda: credits.update_entitlement(
                container.ledger, business_of(request), entitlement_id, raw, container.clock()
            )
        )
        return entitlement_read(entitlement)

    @delete(
        "/{entitlement_id:str}",
        status_code=204,
        summary="Delete a credit entitlement (soft: what attaches it keeps it)",
        sync_to_thread=True,
    )
    def remove(self, request: Request[Principal, Any, Any], entitlement_id: FromPath[str]) -> None:
        container = container_of(request)
        credits.delete_entitlement(
            container.ledger, business_of(request), entitlement_id, container.clock()
        )

    @post(
        "/{entitlement_id:str}/undelete",
        status_code=200,
        summary="Undelete a credit entitlement",
        sync_to_thread=True,
    )
    def undelete(
        self, request: Request[Principal, Any, Any], entitlement_id: FromPath[str]
    ) -> CreditEntitlementRead:
        container = container_of(request)
        return entitlement_read(
            credits.undelete_entitlement(
                container.ledger, business_of(request), entitlement_id, container.clock()
            )
        )

    @get("/{entitlement_id:str}", summary="Retrieve a credit entitlement", sync_to_thread=True)
    def retrieve(
        self, request: Request[Principal, Any, Any], entitlement_id: FromPath[str]
    ) -> CreditEntitlementRead:
        ledger = container_of(request).ledger
        return entitlement_read(
            credits.load_entitlement(ledger, business_of(request), entitlement_id)
        )

    @get(
        "/{entitlement_id:str}/balances",
        summary="Customers' balances under an entitlement",
        sync_to_thread=True,
    )
    def balances(
        self,
        request: Request[Principal, Any, Any],
        entitlement_id: FromPath[str],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        customer_id: FromQuery[str | None] = None,
    ) -> Page[CreditBalanceRead]:
        container = _ready(request, entitlement_id)
        query = BalanceQuery(
            business_of(request), entitlement_id, customer_id, page_number, page_size
        )
        return Page(
            items=[CreditBalanceRead(**row) for row in listings.balances(container.reads, query)]
        )

    @get(
        "/{entitlement_id:str}/balances/{customer_id:str}",
        summary="One customer's balance under an entitlement",
        sync_to_thread=True,
    )
    def balance(
        self,
        request: Request[Principal, Any, Any],
        entitlement_id: FromPath[str],
        customer_id: FromPath[str],
    ) -> CreditBalanceRead:
        container = _ready(request, entitlement_id, customer_id)
        rows = listings.balances(
            container.reads, BalanceQuery(business_of(request), entitlement_id, customer_id, 0, 1)
        )
        if not rows:
            raise NotFoundError(
                f"customer {customer_id!r} has no balance under entitlement {entitlement_id!r}"
            )
        return CreditBalanceRead(**rows[0])

    @post(
        "/{entitlement_id:str}/balances/{customer_id:str}/ledger-entries",
        status_code=200,
        summary="A manual credit or debit, idempotent by idempotency_key",
    )
    async def create_ledger_entry(
        self,
        request: Request[Principal, Any, Any],
        entitlement_id: FromPath[str],
        customer_id: FromPath[str],
    ) -> LedgerEntryCreated:
        data = decode(await request.body(), LedgerEntryCreate)
        for field, value in (
            ("credit_entitlement_id", entitlement_id),
            ("customer_id", customer_id),
        ):
            if getattr(data, field) not in (None, value):
                raise InvalidRequestError(f"{field} differs from the path", path=f"$.{field}")
        if data.expires_at is not None and data.expires_at.tzinfo is None:
            raise InvalidRequestError("expires_at must name its zone", path="$.expires_at")
        container = container_of(request)
        entry = await anyio.to_thread.run_sync(
            lambda: credits.add_ledger_entry(
                container.ledger,
                business_of(request),
                entitlement_id,
                customer_id,
                amount=data.amount,
                entry_type=data.entry_type,
                reason=data.reason,
                metadata=data.metadata,
                idempotency_key=data.idempotency_key,
                expires_at=data.expires_at,
                now=container.clock(),
            )
        )
        return LedgerEntryCreated(
            id=entry.entry_id,
            amount=format(entry.amount, "f"),
            balance_after=format(entry.balance_after, "f"),
            balance_before=format(entry.balance_before, "f"),
            created_at=entry.created_at,
            credit_entitlement_id=entitlement_id,
            customer_id=customer_id,
            entry_type="credit" if entry.is_credit else "debit",
            is_credit=entry.is_credit,
            metadata=entry.metadata or {},
            overage_after=format(entry.overage_after, "f"),
            overage_before=format(entry.overage_before, "f"),
            grant_id=entry.grant_id,
            reason=entry.description,
        )

    @get(
        "/{entitlement_id:str}/balances/{customer_id:str}/grants",
        summary="A customer's credit grants, newest first",
        sync_to_thread=True,
    )
    def grants(
        self,
        request: Request[Principal, Any, Any],
        entitlement_id: FromPath[str],
        customer_id: FromPath[str],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        status: FromQuery[str | None] = None,
    ) -> Page[CreditGrantRead]:
        if status is not None and status not in GRANT_STATUSES:
            raise InvalidRequestError(
                f"status must be one of {', '.join(GRANT_STATUSES)}", path="$.status"
            )
        container = _ready(request, entitlement_id, customer_id)
        query = GrantQuery(
            business_of(request), entitlement_id, customer_id, status, page_number, page_size
        )
        rows = listings.grants(container.reads, query)
        return Page(items=[CreditGrantRead(**_times(row)) for row in rows])

    @get(
        "/{entitlement_id:str}/balances/{customer_id:str}/ledger",
        summary="A customer's credit ledger, newest first",
        sync_to_thread=True,
    )
    def ledger(
        self,
        request: Request[Principal, Any, Any],
        entitlement_id: FromPath[str],
        customer_id: FromPath[str],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        start_date: FromQuery[str | None] = None,
        end_date: FromQuery[str | None] = None,
        transaction_type: FromQuery[str | None] = None,
    ) -> Page[CreditLedgerEntryRead]:
        if transaction_type is not None and transaction_type not in TRANSACTION_TYPES:
            raise InvalidRequestError(
                f"transaction_type must be one of {', '.join(TRANSACTION_TYPES)}",
                path="$.transaction_type",
            )
        start, end = moment(start_date), moment(end_date)
        if start is not None and end is not None and start >= end:
            raise InvalidRequestError("start_date must be before end_date", path="$.start_date")
        container = _ready(request, entitlement_id, customer_id)
        business_id = business_of(request)
        query = LedgerQuery(
            business_id,
            entitlement_id,
            customer_id,
            start,
            end,
            transaction_type,
            page_number,
            page_size,
        )
        rows = listings.ledger_entries(container.reads, query)
        return Page(
            items=[
                CreditLedgerEntryRead(
                    brand_id=business_id,
                    business_id=business_id,
                    credit_entitlement_id=entitlement_id,
                    customer_id=customer_id,
                    **_times(row),
                )
                for row in rows
            ]
        )


def _ready(request: Request[Principal, Any, Any], entitlement_id: str, customer: str = "") -> Any:
    """The container, once the entitlement (and customer) are known."""
    container = container_of(request)
    business_id = business_of(request)
    credits.load_entitlement(container.ledger, business_id, entitlement_id)
    if customer:
        container.ledger.customer(business_id, customer)
    return container


def _times(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: datetime.fromisoformat(value)
        if key in ("created_at", "updated_at", "expires_at") and value is not None
        else value
        for key, value in row.items()
    }

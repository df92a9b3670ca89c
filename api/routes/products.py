"""Products with a usage-based price: create, list, retrieve, update, archive, unarchive."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, FromQuery

from api.routes.common import PageNumber, PageSize, business_of, container_of
from api.schemas import Page, ProductCreate, ProductListItem, ProductRead, decode
from application import listings
from application.errors import InvalidRequestError
from application.products import archive_product, unarchive_product
from application.views import ProductQuery, ProductView
from infrastructure.keys import Principal

UPDATABLE = frozenset(
    {"name", "description", "tax_category", "metadata", "price", "credit_entitlements"}
)
MAPPING_FIELDS = (
    "credit_entitlement_id",
    "credit_entitlement_name",
    "credit_entitlement_unit",
    "credits_amount",
    "overage_behavior",
    "overage_enabled",
    "proration_behavior",
    "rollover_enabled",
    "currency",
    "expires_after_days",
    "low_balance_threshold_percent",
    "max_rollover_count",
    "overage_limit",
    "price_per_unit",
    "rollover_percentage",
    "rollover_timeframe_count",
    "rollover_timeframe_interval",
)


def wire_price(view: ProductView) -> dict[str, Any]:
    price = {k: v for k, v in view.price.items() if k != "credit_entitlements"}
    return {**price, "discount": 0, "purchasing_power_parity": False}


def credit_mappings(view: ProductView) -> list[dict[str, Any]]:
    """The SDK's ``CreditEntitlementMappingResponse`` of each attached entitlement."""
    return [
        {
            "id": f"{view.product_id}:{item['credit_entitlement_id']}",
            **{field: item.get(field) for field in MAPPING_FIELDS},
            "trial_credits": item.get("trial_credits"),
            "trial_credits_expire_after_trial": item.get("trial_credits_expire_after_trial", False),
        }
        for item in view.price.get("credit_entitlements", [])
    ]


def product_read(view: ProductView) -> ProductRead:
    return ProductRead(
        brand_id=view.business_id,
        business_id=view.business_id,
        created_at=view.created_at,
        credit_entitlements=credit_mappings(view),
        entitlements=[],
        is_recurring=True,
        license_key_enabled=False,
        metadata=view.metadata,
        price=wire_price(view),
        product_id=view.product_id,
        tax_category=view.tax_category,
        updated_at=view.updated_at,
        description=view.description,
        name=view.name,
        archived=view.archived,
    )


def product_item(view: ProductView) -> ProductListItem:
    return ProductListItem(
        business_id=view.business_id,
        created_at=view.created_at,
        entitlements=[],
        is_recurring=True,
        metadata=view.metadata,
        product_id=view.product_id,
        tax_category=view.tax_category,
        updated_at=view.updated_at,
        currency=view.price["currency"],
        description=view.description,
        name=view.name,
        price=view.price["fixed_price"],
        price_detail=wire_price(view),
        tax_inclusive=view.price.get("tax_inclusive", False),
    )


class ProductController(Controller):
    path = "/products"
    tags = ["products"]  # noqa: RUF012

    @post("/", status_code=200, summary="Create a product with a usage-based price")
    async def create(self, request: Request[Principal, Any, Any]) -> ProductRead:
        data = decode(await request.body(), ProductCreate)
        container = container_of(request)
        view = await anyio.to_thread.run_sync(
            lambda: container.ledger.create_product(
                business_of(request),
                name=data.name,
                description=data.description,
                tax_category=data.tax_category,
                metadata=data.metadata,
                price=data.price,
                now=container.clock(),
                credit_entitlements=data.credit_entitlements,
            )
        )
        return product_read(view)

    @get("/{product_id:str}", summary="Retrieve a product", sync_to_thread=True)
    def retrieve(
        self, request: Request[Principal, Any, Any], product_id: FromPath[str]
    ) -> ProductRead:
        return product_read(container_of(request).ledger.product(business_of(request), product_id))

    @patch(
        "/{product_id:str}",
        summary="Update a product; a new price applies from the next cycle",
    )
    async def update(
        self, request: Request[Principal, Any, Any], product_id: FromPath[str]
    ) -> ProductRead:
        changes = decode(await request.body(), dict[str, Any])
        unknown = sorted(changes.keys() - UPDATABLE)
        if unknown:
            raise InvalidRequestError(
                f"unknown field {unknown[0]!r}; a product update may set: "
                + ", ".join(sorted(UPDATABLE)),
                path=f"$.{unknown[0]}",
            )
        for required in ("name", "tax_category", "price", "credit_entitlements"):
            if required in changes and changes[required] is None:
                raise InvalidRequestError(f"{required} cannot be null", path=f"$.{required}")
        container = container_of(request)
        view = await anyio.to_thread.run_sync(
            lambda: container.ledger.update_product(
                business_of(request), product_id, changes=changes, now=container.clock()
            )
        )
        return product_read(view)

    @delete(
        "/{product_id:str}",
        status_code=204,
        summary="Archive a product: no new subscriptions; those it has keep billing",
        sync_to_thread=True,
    )
    def archive(self, request: Request[Principal, Any, Any], product_id: FromPath[str]) -> None:
        container = container_of(request)
        archive_product(container.ledger, business_of(request), product_id, container.clock())

    @post(
        "/{product_id:str}/unarchive",
        status_code=200,
        summary="Unarchive a product: it takes new subscriptions again",
        sync_to_thread=True,
    )
    def unarchive(self, request: Request[Principal, Any, Any], product_id: FromPath[str]) -> None:
        container = container_of(request)
        unarchive_product(container.ledger, business_of(request), product_id, container.clock())

    @get("/", summary="List products, newest first", sync_to_thread=True)
    def list_products(
        self,
        request: Request[Principal, Any, Any],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        archived: FromQuery[bool] = False,
        recurring: FromQuery[bool | None] = None,
        brand_id: FromQuery[str | None] = None,
        locale: FromQuery[str | None] = None,  # accepted: nothing here is translated
    ) -> Page[ProductListItem]:
        del locale
        container = container_of(request)
        query = ProductQuery(
            business_of(request),
            page_number,
            page_size,
            archived=archived,
            recurring=recurring,
            brand_id=brand_id,
        )
        return Page(items=[product_item(v) for v in listings.products(container.reads, query)])

"""Subscriptions: create (with an optional past start), retrieve, cancel at period end,
the open cycle's invoice preview and the usage history of every cycle."""

from __future__ import annotations

from typing import Any, Literal

import anyio
import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.params import FromPath, FromQuery

from api.response import ExactJSONResponse
from api.routes.common import PageNumber, PageSize, business_of, container_of, moment
from api.schemas import Page, UsageHistoryMeterRead, UsageHistoryRead, decode
from api.subscription_schemas import (
    credit_usage_read,
    customer_details,
    subscription_item,
    subscription_read,
)
from application.billing import invoice_document, invoice_preview
from application.errors import InvalidRequestError
from application.subscription_reads import (
    credit_usage,
    details_of,
    list_subscriptions,
    subscription_details,
)
from application.subscriptions import create_subscription, set_cancel_at_period_end
from application.usage_history import CycleUsage, UsageHistoryQuery, usage_history
from application.views import SubscriptionQuery
from infrastructure.bootstrap import Container
from infrastructure.keys import Principal

# Payment fields of the wire: accepted and kept as sent, not acted on.
PAYMENT_FIELDS = (
    "allowed_payment_method_types",
    "billing_currency",
    "customer_business_name",
    "mandate_min_amount_inr_paise",
    "on_demand",
    "payment_link",
    "payment_method_id",
    "redirect_immediately",
    "require_phone_number",
    "return_url",
    "short_link",
    "show_saved_payment_methods",
    "tax_id",
    "trial_period_days",
)
UNSUPPORTED = ("addons", "discount_code", "discount_codes", "one_time_product_cart")
# The SDK's statuses; this ledger's subscriptions are only ever active, cancelled or
# expired (the others follow payments, which it does not take): those find none.
Status = Literal[
    "pending", "active", "on_hold", "paused", "cancelled", "failed", "expired", "past_due"
]


class SubscriptionCreate(msgspec.Struct, forbid_unknown_fields=True):
    billing: dict[str, Any]
    customer: dict[str, Any]
    product_id: str
    quantity: int
    metadata: dict[str, Any] | None = None
    start_date: str | None = None  # our extension: a start in the past, for backfills
    allowed_payment_method_types: Any = None
    billing_currency: Any = None
    customer_business_name: Any = None
    mandate_min_amount_inr_paise: Any = None
    on_demand: Any = None
    payment_link: Any = None
    payment_method_id: Any = None
    redirect_immediately: Any = None
    require_phone_number: Any = None
    return_url: Any = None
    short_link: Any = None
    show_saved_payment_methods: Any = None
    tax_id: Any = None
    trial_period_days: Any = None
    addons: Any = None
    discount_code: Any = None
    discount_codes: Any = None
    one_time_product_cart: Any = None


def _customer_of(container: Container, business: str, given: dict[str, Any]) -> str:
    """An existing customer by id, or a new one from email and name (as the wire allows)."""
    if "customer_id" in given:
        if set(given) != {"customer_id"} or not isinstance(given["customer_id"], str):
            raise InvalidRequestError(
                "customer: give {customer_id} or {email, name?, phone_number?}",
                path="$.customer",
            )
        customer_id: str = given["customer_id"]
        return customer_id
    if not isinstance(given.get("email"), str) or not set(given) <= {
        "email",
        "name",
        "phone_number",
    }:
        raise InvalidRequestError(
            "customer: give {customer_id} or {email, name?, phone_number?}", path="$.customer"
        )
    email: str = given["email"]
    view = container.ledger.register_customer(
        business,
        email=email,
        name=given.get("name") or email.partition("@")[0],
        phone_number=given.get("phone_number"),
        metadata=None,
        now=container.clock(),
    )
    return view.customer_id


def usage_history_read(cycle: CycleUsage) -> UsageHistoryRead:
    return UsageHistoryRead(
        start_date=cycle.start,
        end_date=cycle.end,
        meters=[
            UsageHistoryMeterRead(
                id=m.meter_id,
                name=m.name,
                consumed_units=m.consumed_units,
                chargeable_units=m.chargeable_units,
                free_threshold=m.free_threshold,
                price_per_unit=m.price_per_unit,
                currency=m.currency,
                total_price=m.total_price,
            )
            for m in cycle.meters
        ],
    )


class SubscriptionController(Controller):
    path = "/subscriptions"
    tags = ["subscriptions"]  # noqa: RUF012

    @post("/", status_code=200, summary="Subscribe a customer to a product")
    async def create(self, request: Request[Principal, Any, Any]) -> ExactJSONResponse:
        data = decode(await request.body(), SubscriptionCreate)
        for name in UNSUPPORTED:
            if getattr(data, name):
                raise InvalidRequestError(f"{name} is not supported", path=f"$.{name}")
        if not isinstance(data.billing.get("country"), str):
            raise InvalidRequestError("billing.country is required", path="$.billing.country")
        container = container_of(request)
        business = business_of(request)
        start = moment(data.start_date)
        payment = {n: getattr(data, n) for n in PAYMENT_FIELDS if getattr(data, n) is not None}

        def create() -> dict[str, Any]:
            customer_id = _customer_of(container, business, data.customer)
            view = create_subscription(
                container.ledger,
                business,
                customer_id=customer_id,
                product_id=data.product_id,
                quantity=data.quantity,
                billing=data.billing,
                metadata=data.metadata,
                payment=payment,
                start_date=start,
                now=container.clock(),
                trial_period_days=data.trial_period_days,
            )
            # from the aggregates just written: a create never waits for a read model
            customer = container.ledger.customer(business, customer_id)
            product = container.ledger.product(business, view.product_id)
            return {
                "addons": [],
                "customer": customer_details(customer),
                "metadata": view.metadata,
                "payment_id": "",
                "payment_method_required": False,
                "product_id": view.product_id,
                "quantity": view.quantity,
                "recurring_pre_tax_amount": product.price["fixed_price"] * view.quantity,
                "subscription_id": view.subscription_id,
                "expires_on": None,
            }

        return ExactJSONResponse(await anyio.to_thread.run_sync(create))

    @get("/{subscription_id:str}", summary="Retrieve a subscription", sync_to_thread=True)
    def retrieve(
        self, request: Request[Principal, Any, Any], subscription_id: FromPath[str]
    ) -> ExactJSONResponse:
        container = container_of(request)
        details = subscription_details(
            container.ledger,
            container.reads,
            business_of(request),
            subscription_id,
            container.clock(),
        )
        return ExactJSONResponse(subscription_read(details))

    @patch("/{subscription_id:str}", summary="Cancel at period end, or withdraw that")
    async def update(
        self, request: Request[Principal, Any, Any], subscription_id: FromPath[str]
    ) -> ExactJSONResponse:
        changes = decode(await request.body(), dict[str, Any])
        allowed = {"cancel_at_next_billing_date", "cancellation_comment"}
        unknown = sorted(changes.keys() - allowed)
        if unknown:
            raise InvalidRequestError(
                f"unknown or unsupported field {unknown[0]!r}; a subscription update may set: "
                + ", ".join(sorted(allowed)),
                path=f"$.{unknown[0]}",
            )
        cancel = changes.get("cancel_at_next_billing_date")
        comment = changes.get("cancellation_comment")
        if not isinstance(cancel, bool):
            raise InvalidRequestError(
                "cancel_at_next_billing_date (true or false) is required",
                path="$.cancel_at_next_billing_date",
            )
        if comment is not None and not isinstance(comment, str):
            raise InvalidRequestError("cancellation_comment must be a string", path="$.comment")
        container = container_of(request)
        business = business_of(request)

        def change() -> dict[str, Any]:
            view = set_cancel_at_period_end(
                container.ledger,
                business,
                subscription_id,
                cancel=cancel,
                comment=comment,
                now=container.clock(),
            )
            return subscription_read(details_of(container.reads, view))

        return ExactJSONResponse(await anyio.to_thread.run_sync(change))

    @get("/", summary="List subscriptions, newest first", sync_to_thread=True)
    def list_subscriptions(
        self,
        request: Request[Principal, Any, Any],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        customer_id: FromQuery[str | None] = None,
        product_id: FromQuery[str | None] = None,
        status: FromQuery[Status | None] = None,
        cancel_at_next_billing_date: FromQuery[bool | None] = None,
        created_at_gte: FromQuery[str | None] = None,
        created_at_lte: FromQuery[str | None] = None,
        brand_id: FromQuery[str | None] = None,
        locale: FromQuery[str | None] = None,  # accepted: nothing here is translated
    ) -> ExactJSONResponse:
        del locale
        container = container_of(request)
        query = SubscriptionQuery(
            business_id=business_of(request),
            customer_id=customer_id,
            product_id=product_id,
            status=status,
            cancel_at_next_billing_date=cancel_at_next_billing_date,
            created_at_gte=moment(created_at_gte),
            created_at_lte=moment(created_at_lte),
            page_number=page_number,
            page_size=page_size,
            brand_id=brand_id,
        )
        found = list_subscriptions(container.reads, query, container.clock())
        return ExactJSONResponse({"items": [subscription_item(s) for s in found]})

    @get(
        "/{subscription_id:str}/credit-usage",
        summary="The balance and overage of each credit entitlement the subscription has",
        sync_to_thread=True,
    )
    def retrieve_credit_usage(
        self, request: Request[Principal, Any, Any], subscription_id: FromPath[str]
    ) -> ExactJSONResponse:
        container = container_of(request)
        lines = credit_usage(
            container.ledger,
            container.reads,
            business_of(request),
            subscription_id,
            container.clock(),
        )
        return ExactJSONResponse(credit_usage_read(subscription_id, lines))

    @get(
        "/{subscription_id:str}/invoice-preview",
        summary="The open cycle's invoice so far (our extension)",
        sync_to_thread=True,
    )
    def invoice_preview(
        self, request: Request[Principal, Any, Any], subscription_id: FromPath[str]
    ) -> ExactJSONResponse:
        container = container_of(request)
        found, invoice = invoice_preview(
            container.ledger,
            container.reads,
            business_of(request),
            subscription_id,
            now=container.clock(),
        )
        return ExactJSONResponse(invoice_document(found, invoice))

    @get(
        "/{subscription_id:str}/usage-history",
        summary="Each billing cycle's metered usage, newest cycle first",
        sync_to_thread=True,
    )
    def retrieve_usage_history(
        self,
        request: Request[Principal, Any, Any],
        subscription_id: FromPath[str],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        start_date: FromQuery[str | None] = None,
        end_date: FromQuery[str | None] = None,
        meter_id: FromQuery[str | None] = None,
    ) -> Page[UsageHistoryRead]:
        container = container_of(request)
        query = UsageHistoryQuery(
            business_of(request),
            subscription_id,
            moment(start_date),
            moment(end_date),
            meter_id,
            page_number,
            page_size,
        )
        history = usage_history(container.ledger, container.reads, query, now=container.clock())
        return Page(items=[usage_history_read(cycle) for cycle in history])

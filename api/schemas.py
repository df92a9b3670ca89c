"""Wire shapes, as the dodopayments SDK's ``types/`` define them, plus our extensions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")
# Values are str, bool, int or Decimal (kept exact); typed loosely so the OpenAPI
# schema can describe it (msgspec cannot describe a union of two str-like types).
MetadataOut = dict[str, Any]


class EventCreate(msgspec.Struct):
    event_id: str
    customer_id: str
    event_name: str
    timestamp: str | None = None
    # Decoded and checked per event (see api.routes.events.metadata_of), so that one
    # bad event, even one whose numbers cannot be decoded, does not sink the batch.
    metadata: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class IngestCreate(msgspec.Struct):
    events: list[EventCreate]


class DuplicateRead(msgspec.Struct):
    index: int
    event_id: str


class RejectedRead(msgspec.Struct):
    index: int
    event_id: str
    code: str
    message: str


class IngestRead(msgspec.Struct):
    ingested_count: int
    duplicates: list[DuplicateRead]
    rejected: list[RejectedRead]


class EventRead(msgspec.Struct):
    business_id: str
    customer_id: str
    event_id: str
    event_name: str
    timestamp: datetime
    metadata: MetadataOut | None = None


class UsageEventRead(EventRead, omit_defaults=True):
    """The SDK's ``Event`` plus our extension: whether, when and why it was voided.

    The extension fields appear only on a voided event (``void_reason`` only if
    one was given): any other event is exactly the SDK's shape.
    """

    voided: bool = False
    voided_at: datetime | None = None
    void_reason: str | None = None


class VoidCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Our extension: the optional body of ``POST /events/{event_id}/void``."""

    reason: str | None = None


class CustomerCreate(msgspec.Struct):
    email: str
    name: str
    phone_number: str | None = None
    metadata: dict[str, Any] | None = None
    preferred_locale: str | None = None


class CustomerRead(msgspec.Struct):
    business_id: str
    created_at: datetime
    customer_id: str
    email: str
    name: str
    phone_number: str | None = None
    metadata: MetadataOut | None = None


class Page(msgspec.Struct, Generic[T]):
    items: list[T]


class ErrorRead(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    detail: dict[str, Any] | None = None


class HealthRead(msgspec.Struct, omit_defaults=True):
    status: str
    database: str
    projection_position: int | None = None
    log_position: int | None = None
    reason: str | None = None


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode(body: bytes, shape: type[T]) -> T:
    """Decode a request body; every JSON number with a fraction becomes a Decimal."""
    decoder = _decoders.get(shape)
    if decoder is None:
        decoder = _decoders[shape] = msgspec.json.Decoder(shape, float_hook=Decimal)
    try:
        return decoder.decode(body)  # type: ignore[no-any-return]
    except (ArithmeticError, RecursionError) as error:
        # A number no Decimal can hold (1e99999999999999999999), or nesting deeper
        # than Python's stack: not a valid request, never a 500.
        raise msgspec.ValidationError(f"{_why(error)} - at `$`") from None


def _why(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "the body is nested too deeply"
    return "a number is out of range"


class MeterCreate(msgspec.Struct, forbid_unknown_fields=True):
    # aggregation and filter stay plain: the domain checks them and names the path.
    aggregation: Any
    event_name: str
    measurement_unit: str
    name: str
    description: str | None = None
    filter: Any = None


class MeterRead(msgspec.Struct):
    id: str
    aggregation: dict[str, Any]
    business_id: str
    created_at: datetime
    event_name: str
    measurement_unit: str
    name: str
    updated_at: datetime
    description: str | None = None
    filter: dict[str, Any] | None = None
    archived: bool = False  # our extension


class UsageWindowRead(msgspec.Struct):
    start: datetime
    end: datetime
    value: Decimal
    event_count: int


class MeterUsageRead(msgspec.Struct):
    """Our extension: a meter's value per window, and in total, over [start, end)."""

    meter_id: str
    customer_id: str | None
    start: datetime
    end: datetime
    window: str
    aggregation: dict[str, Any]
    items: list[UsageWindowRead]
    total: Decimal
    event_count: int


class ProductCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    price: Any  # checked by the domain, which names the offending field
    tax_category: str
    description: str | None = None
    metadata: dict[str, Any] | None = None
    credit_entitlements: list[Any] | None = None


class ProductRead(msgspec.Struct):
    """The SDK's ``Product``; brand, entitlements and license keys are not ours."""

    brand_id: str
    business_id: str
    created_at: datetime
    credit_entitlements: list[Any]
    entitlements: list[Any]
    is_recurring: bool
    license_key_enabled: bool
    metadata: MetadataOut
    price: dict[str, Any]
    product_id: str
    tax_category: str
    updated_at: datetime
    description: str | None = None
    name: str | None = None
    archived: bool = False  # our extension


class ProductListItem(msgspec.Struct):
    """The SDK's ``ProductListResponse``."""

    business_id: str
    created_at: datetime
    entitlements: list[Any]
    is_recurring: bool
    metadata: MetadataOut
    product_id: str
    tax_category: str
    updated_at: datetime
    currency: str | None = None
    description: str | None = None
    name: str | None = None
    price: int | None = None
    price_detail: dict[str, Any] | None = None
    tax_inclusive: bool | None = None


class UsageHistoryMeterRead(msgspec.Struct):
    """The SDK's ``subscription_retrieve_usage_history_response.Meter``."""

    id: str
    name: str
    consumed_units: str
    chargeable_units: str
    free_threshold: int
    price_per_unit: str
    currency: str
    total_price: int


class UsageHistoryRead(msgspec.Struct):
    """The SDK's ``SubscriptionRetrieveUsageHistoryResponse``: one billing cycle."""

    start_date: datetime
    end_date: datetime
    meters: list[UsageHistoryMeterRead]

"""Exact JSON for metadata stored in read-model rows: numbers stay decimals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from application.views import EntitlementView, InvoiceView, MeterView, ProductView, WebhookView
from domain.metadata import Metadata

_encoder = msgspec.json.Encoder(decimal_format="number")
_decoder = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _MeterState(msgspec.Struct):
    business_id: str
    meter_id: str
    name: str
    description: str | None
    event_name: str
    measurement_unit: str
    aggregation: dict[str, Any]
    filter: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    archived: bool


_meter_decoder = msgspec.json.Decoder(_MeterState, float_hook=Decimal)


def encode_meter(meter: MeterView) -> str:
    state = _MeterState(**{f: getattr(meter, f) for f in _MeterState.__struct_fields__})
    return _encoder.encode(state).decode()


def decode_meter(raw: str | bytes) -> MeterView:
    state = _meter_decoder.decode(raw)
    return MeterView(**{f: getattr(state, f) for f in _MeterState.__struct_fields__})


def encode_metadata(metadata: Metadata) -> str:
    return _encoder.encode(metadata).decode()


def decode_metadata(raw: str | bytes) -> Metadata:
    return _decoder.decode(raw)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch: orders and compares the same on every store."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


class _ProductState(msgspec.Struct):
    business_id: str
    product_id: str
    name: str
    description: str | None
    tax_category: str
    metadata: dict[str, Any]
    price: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    archived: bool = False


_product_decoder = msgspec.json.Decoder(_ProductState, float_hook=Decimal)


def encode_product(product: ProductView) -> str:
    state = _ProductState(**{f: getattr(product, f) for f in _ProductState.__struct_fields__})
    return _encoder.encode(state).decode()


def decode_product(raw: str | bytes) -> ProductView:
    state = _product_decoder.decode(raw)
    return ProductView(**{f: getattr(state, f) for f in _ProductState.__struct_fields__})


class _InvoiceState(msgspec.Struct):
    business_id: str
    invoice_id: str
    subscription_id: str
    customer_id: str
    cycle_index: int
    cycle_start: datetime
    cycle_end: datetime
    cut: int
    currency: str
    total_minor: int
    sha256: str
    document: str
    finalized_at: datetime


_invoice_decoder = msgspec.json.Decoder(_InvoiceState)


def encode_invoice(invoice: InvoiceView) -> str:
    state = _InvoiceState(**{f: getattr(invoice, f) for f in _InvoiceState.__struct_fields__})
    return _encoder.encode(state).decode()


def decode_invoice(raw: str | bytes) -> InvoiceView:
    state = _invoice_decoder.decode(raw)
    return InvoiceView(**{f: getattr(state, f) for f in _InvoiceState.__struct_fields__})


class _EntitlementState(msgspec.Struct):
    business_id: str
    entitlement_id: str
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime | None = None  # rows written before updates existed have none
    deleted: bool = False


_entitlement_decoder = msgspec.json.Decoder(_EntitlementState)


def encode_entitlement(entitlement: EntitlementView) -> str:
    state = _EntitlementState(
        entitlement.business_id,
        entitlement.entitlement_id,
        entitlement.settings,
        entitlement.created_at,
        entitlement.updated_at,
        entitlement.deleted,
    )
    return _encoder.encode(state).decode()


def decode_entitlement(raw: str | bytes) -> EntitlementView:
    state = _entitlement_decoder.decode(raw)
    return EntitlementView(
        state.business_id,
        state.entitlement_id,
        state.settings,
        state.created_at,
        state.updated_at,
        state.deleted,
    )


_webhook_decoder = msgspec.json.Decoder(dict[str, Any])


def encode_webhook(view: WebhookView) -> str:
    return _encoder.encode({f: getattr(view, f) for f in WebhookView.__dataclass_fields__}).decode()


def decode_webhook(raw: str | bytes) -> WebhookView:
    state = _webhook_decoder.decode(raw)
    for name in ("created_at", "updated_at"):
        state[name] = datetime.fromisoformat(state[name])
    return WebhookView(**state)

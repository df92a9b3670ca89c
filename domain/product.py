"""A product: what a customer subscribes to, and its usage-based price over time.

The price is the wire's ``usage_based_price`` (see ``domain.pricing``). A
product remembers every price it has had and since when: a cycle is billed at
the price in force at the cycle's start (``price_at``), so a change applies
from the next cycle and never rewrites one that has begun.

Only usage-based prices are accepted; a discount is refused rather than
silently ignored (this ledger does not apply discounts yet). Fields the wire
documents as shown in responses only (a meter's ``name``, ``description``,
``measurement_unit``) are ignored on input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.credit_entitlement import terms_from_wire
from domain.credits import CreditLink
from domain.cycles import Interval, cycle
from domain.errors import (
    DomainError,
    InvalidCreditError,
    InvalidPriceError,
    InvalidProductError,
    ProductArchivedError,
)
from domain.metadata import Metadata
from domain.price_model import MODEL_FIELDS, PricingModel, parse_price_model
from domain.pricing import GroupPrice, MeterPrice, UsagePrice
from domain.text import is_storable

PRODUCT_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/product")
TAX_CATEGORIES = ("digital_products", "saas", "e_book", "edtech")
MAX_NAME_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 2000
MAX_SUBSCRIPTION_YEARS = 20
_UNITS_TEXT = re.compile(r"(?!0+(\.0*)?$)[0-9]{1,18}(\.[0-9]{1,12})?")
_PRICE_FIELDS = frozenset(
    {
        "type",
        "currency",
        "fixed_price",
        "payment_frequency_count",
        "payment_frequency_interval",
        "subscription_period_count",
        "subscription_period_interval",
        "meters",
        "discount",
        "discount_bps",
        "purchasing_power_parity",
        "tax_inclusive",
        "credit_entitlements",
    }
)
_METER_FIELDS = frozenset(
    {
        "meter_id",
        "price_per_unit",
        "free_threshold",
        "credit_entitlement_id",
        "meter_units_per_credit",
        "name",
        "description",
        "measurement_unit",
        # our extensions (domain.price_model, domain.line)
        *MODEL_FIELDS,
        "minimum_amount",
        "maximum_amount",
        "group_by",
        "groups",
    }
)
_GROUP_FIELDS = frozenset({"value", *MODEL_FIELDS})


def product_aggregate_id(business_id: str, product_id: str) -> UUID:
    return uuid5(PRODUCT_NAMESPACE, f"{business_id}\x1f{product_id}")


def parse_usage_price(raw: object) -> tuple[UsagePrice, dict[str, Any]]:
    """The price and its canonical wire form; ``InvalidPriceError`` naming the field."""
    fields = _object(raw, "price", _PRICE_FIELDS)
    if fields.get("type") != "usage_based_price":
        raise InvalidPriceError(
            f"price.type: only usage_based_price is supported, not {fields.get('type')!r}"
        )
    for discount in ("discount", "discount_bps"):
        if fields.get(discount) not in (None, 0):
            raise InvalidPriceError(f"price.{discount}: discounts are not supported")
    currency = fields.get("currency")
    if not isinstance(currency, str):
        raise InvalidPriceError("price.currency: an ISO 4217 code is required")
    interval = _interval(fields.get("payment_frequency_interval"), "payment_frequency_interval")
    period_interval = _interval(
        fields.get("subscription_period_interval", "Year"), "subscription_period_interval"
    )
    period_count = _integer(
        fields.get("subscription_period_count", MAX_SUBSCRIPTION_YEARS), "subscription_period_count"
    )
    if period_count < 1:
        raise InvalidPriceError("price.subscription_period_count: must be at least 1")
    meters_raw = fields.get("meters") or []
    if not isinstance(meters_raw, list):
        raise InvalidPriceError("price.meters: must be a list")
    meters, wire_meters = _parse_meters(meters_raw)
    attached_raw = fields.get("credit_entitlements") or []
    if not isinstance(attached_raw, list):
        raise InvalidPriceError("credit_entitlements: must be a list")
    try:
        attached = [terms_from_wire(item) for item in attached_raw]
    except (InvalidCreditError, KeyError, TypeError) as error:
        raise InvalidPriceError(f"credit_entitlements: {error}") from None
    try:
        price = UsagePrice.of(
            currency,
            _integer(fields.get("fixed_price"), "fixed_price"),
            interval,
            _integer(fields.get("payment_frequency_count"), "payment_frequency_count"),
            meters,
            attached,
        )
    except InvalidPriceError as error:
        raise InvalidPriceError(f"price.{error.message}") from None
    wire = {
        "type": "usage_based_price",
        "currency": price.currency,
        "fixed_price": price.fixed_price,
        "payment_frequency_count": price.frequency.count,
        "payment_frequency_interval": price.frequency.interval.value,
        "subscription_period_count": period_count,
        "subscription_period_interval": period_interval.value,
        "tax_inclusive": bool(fields.get("tax_inclusive") or False),
        "meters": wire_meters,
    }
    if attached_raw:
        wire["credit_entitlements"] = attached_raw
    return price, wire


def _parse_meters(meters_raw: list[Any]) -> tuple[list[MeterPrice], list[dict[str, Any]]]:
    meters: list[MeterPrice] = []
    wire_meters: list[dict[str, Any]] = []
    for index, item in enumerate(meters_raw):
        path = f"price.meters[{index}]"
        meter = _object(item, path, _METER_FIELDS)
        meter_id = meter.get("meter_id")
        if not isinstance(meter_id, str) or not is_storable(meter_id):
            raise InvalidPriceError(f"{path}.meter_id: a meter id is required")
        try:
            priced = _meter_price(meter_id, meter, path)
            link = _credit_link(meter)
        except (InvalidPriceError, InvalidCreditError) as error:
            message = error.message
            raise InvalidPriceError(
                message if message.startswith(path) else f"{path}: {message}"
            ) from None
        meters.append(replace(priced, credit=link))
        wire_meters.append(_wire_meter(priced, link))
    return meters, wire_meters


def _meter_price(meter_id: str, meter: Mapping[str, Any], path: str) -> MeterPrice:
    """The meter's price: the SDK's per-unit fields, or one of our extension models."""
    model = parse_price_model(meter, path)
    free_threshold = meter.get("free_threshold")
    group_by = meter.get("group_by")
    if group_by is not None and (not isinstance(group_by, str) or not is_storable(group_by)):
        raise InvalidPriceError(f"{path}.group_by: a metadata key (a string) is required")
    groups_raw = meter.get("groups") or []
    if not isinstance(groups_raw, list):
        raise InvalidPriceError(f"{path}.groups: must be a list")
    groups = []
    for position, raw_group in enumerate(groups_raw):
        where = f"{path}.groups[{position}]"
        group = _object(raw_group, where, _GROUP_FIELDS)
        value = group.get("value")
        if not isinstance(value, str) or not is_storable(value):
            raise InvalidPriceError(f"{where}.value: the metadata value (a string) is required")
        groups.append(GroupPrice(value, parse_price_model(group, where)))
    try:
        return MeterPrice(
            meter_id,
            model.price_per_unit,
            0 if free_threshold is None else free_threshold,
            model=None if model.kind is PricingModel.PER_UNIT else model,
            minimum_minor=meter.get("minimum_amount"),
            maximum_minor=meter.get("maximum_amount"),
            group_by=group_by,
            groups=tuple(groups),
        )
    except InvalidPriceError as error:
        raise InvalidPriceError(f"{path}.{error.message}") from None


def _wire_meter(priced: MeterPrice, link: CreditLink | None) -> dict[str, Any]:
    """The meter's canonical wire form: the SDK's fields, then ours where used."""
    wire: dict[str, Any] = {"meter_id": priced.meter_id, **priced.pricing.to_wire()}
    wire["free_threshold"] = priced.free_threshold
    if link is not None:
        wire["credit_entitlement_id"] = link.entitlement_id
        wire["meter_units_per_credit"] = format(link.units_per_credit, "f")
    extensions = {
        "minimum_amount": priced.minimum_minor,
        "maximum_amount": priced.maximum_minor,
        "group_by": priced.group_by,
    }
    wire.update({field: value for field, value in extensions.items() if value is not None})
    if priced.groups:
        wire["groups"] = [
            {"value": group.value, **group.model.to_wire()} for group in priced.groups
        ]
    return wire


def _credit_link(meter: Mapping[str, Any]) -> CreditLink | None:
    entitlement_id = meter.get("credit_entitlement_id")
    per_credit = meter.get("meter_units_per_credit")
    if entitlement_id is None:
        if per_credit is not None:
            raise InvalidCreditError("meter_units_per_credit needs a credit_entitlement_id")
        return None
    if not isinstance(entitlement_id, str) or not is_storable(entitlement_id):
        raise InvalidCreditError("credit_entitlement_id must be a string")
    if not isinstance(per_credit, str) or _UNITS_TEXT.fullmatch(per_credit) is None:
        raise InvalidCreditError(
            "meter_units_per_credit: a positive decimal string is required with a "
            "credit_entitlement_id"
        )
    return CreditLink(entitlement_id, Decimal(per_credit))


def usage_price_of(wire: Mapping[str, Any]) -> UsagePrice:
    """The price from its stored canonical wire form."""
    return parse_usage_price(dict(wire))[0]


def check_product_fields(name: object, description: object, tax_category: object) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidProductError(f"name must be 1 to {MAX_NAME_LENGTH} characters, not blank")
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH
    ):
        raise InvalidProductError(
            f"description must be a string of at most {MAX_DESCRIPTION_LENGTH} characters"
        )
    for field, value in (("name", name), ("description", description)):
        if isinstance(value, str) and not is_storable(value):
            raise InvalidProductError(f"{field} must not contain the NUL character (U+0000)")
    if tax_category not in TAX_CATEGORIES:
        raise InvalidProductError(f"tax_category must be one of: {', '.join(TAX_CATEGORIES)}")


class Product(Aggregate):
    """A business's product. Its price changes are kept with the moment they began."""

    class Created(Aggregate.Created):
        business_id: str
        product_id: str
        name: str
        description: str | None
        tax_category: str
        metadata: Metadata
        price: dict[str, Any]
        created_at: datetime

    class Updated(Aggregate.Event):
        name: str
        description: str | None
        tax_category: str
        metadata: Metadata
        updated_at: datetime

    class PriceChanged(Aggregate.Event):
        price: dict[str, Any]
        changed_at: datetime

    class Archived(Aggregate.Event):
        archived_at: datetime

    class Unarchived(Aggregate.Event):
        unarchived_at: datetime

    @event(Created)
    def __init__(
        self,
        business_id: str,
        product_id: str,
        name: str,
        description: str | None,
        tax_category: str,
        metadata: Metadata,
        price: dict[str, Any],
        created_at: datetime,
    ) -> None:
        self.business_id = business_id
        self.product_id = product_id
        self.name = name
        self.description = description
        self.tax_category = tax_category
        self.metadata = metadata
        self.price = price
        self.prices: list[tuple[datetime, dict[str, Any]]] = [(created_at, price)]
        self.created_at = created_at
        self.updated_at = created_at
        self.archived_at: datetime | None = None

    @staticmethod
    def create_id(business_id: str, product_id: str) -> UUID:
        return product_aggregate_id(business_id, product_id)

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    def archive(self, at: datetime) -> None:
        """Offer it no more: it refuses new subscriptions, and those it has keep billing.
        Archiving an archived product changes nothing."""
        if not self.is_archived:
            self._on_archived(at)

    def unarchive(self, at: datetime) -> None:
        """Offer it again; unarchiving a product on offer changes nothing."""
        if self.is_archived:
            self._on_unarchived(at)

    def check_open_to_new_subscriptions(self) -> None:
        if self.is_archived:
            raise ProductArchivedError(
                f"product {self.product_id!r} is archived: it takes no new subscriptions "
                "(unarchive it first); its subscriptions keep billing"
            )

    def price_at(self, moment: datetime) -> UsagePrice:
        """The price in force at ``moment``: the last one set at or before it.

        A moment before the product existed gets its first price.
        """
        return usage_price_of(self.wire_price_at(moment))

    def wire_price_at(self, moment: datetime) -> dict[str, Any]:
        """The price in force at ``moment`` as its wire fields (``price_at``'s source)."""
        current = self.prices[0][1]
        for since, price in self.prices:
            if since <= moment:
                current = price
        return current

    def term_end(self, started_at: datetime) -> datetime | None:
        """When a subscription started at ``started_at`` ends its term (the price's
        ``subscription_period``); None when the term lies past what a date can hold."""
        price = self.wire_price_at(started_at)
        interval = Interval(price.get("subscription_period_interval", "Year"))
        count = int(price.get("subscription_period_count", MAX_SUBSCRIPTION_YEARS))
        try:
            return cycle(started_at, interval, count, 0).end
        except DomainError:
            return None

    def update(
        self,
        name: str,
        description: str | None,
        tax_category: str,
        metadata: Metadata,
        at: datetime,
    ) -> None:
        check_product_fields(name, description, tax_category)
        if (name, description, tax_category, metadata) != (
            self.name,
            self.description,
            self.tax_category,
            self.metadata,
        ):
            self._on_updated(name, description, tax_category, metadata, at)

    def change_price(self, price: dict[str, Any], at: datetime) -> None:
        """A new price from ``at`` on: cycles that began before keep the old one."""
        if price != self.price:
            self._on_price_changed(price, at)

    @event(Updated)
    def _on_updated(
        self,
        name: str,
        description: str | None,
        tax_category: str,
        metadata: Metadata,
        updated_at: datetime,
    ) -> None:
        self.name = name
        self.description = description
        self.tax_category = tax_category
        self.metadata = metadata
        self.updated_at = updated_at

    @event(PriceChanged)
    def _on_price_changed(self, price: dict[str, Any], changed_at: datetime) -> None:
        self.price = price
        self.prices = [*self.prices, (changed_at, price)]
        self.updated_at = changed_at

    @event(Archived)
    def _on_archived(self, archived_at: datetime) -> None:
        self.archived_at = archived_at
        self.updated_at = archived_at

    @event(Unarchived)
    def _on_unarchived(self, unarchived_at: datetime) -> None:
        self.archived_at = None
        self.updated_at = unarchived_at


def _object(raw: object, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidPriceError(f"{path}: must be an object")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InvalidPriceError(f"{path}: unknown field {unknown[0]!r}")
    return raw


def _interval(raw: object, field: str) -> Interval:
    try:
        return Interval.parse(raw)
    except Exception as error:  # noqa: BLE001 - re-raised with the field's path
        raise InvalidPriceError(f"price.{field}: {error}") from None


def _integer(raw: object, field: str) -> int:
    if type(raw) is not int:
        raise InvalidPriceError(f"price.{field}: must be an integer")
    return raw

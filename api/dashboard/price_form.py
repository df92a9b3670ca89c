"""The product form: its fields, their rows, and the wire shape of a product they make.

Amounts are typed in major units ("0.02" dollars) and sent in the currency's
minor unit, converted exactly with ``Decimal`` (``domain.pricing``'s exponent):
a price per unit may be a fraction of a minor unit ("0.005" dollars is "0.5"
cents), amounts (fixed price, flat fees, bounds) are whole minor units. Rows
(meter prices, their tiers and per-value prices, credit entitlements) are
numbered fields, ``m0.price_per_unit``, ``m0.t1.up_to``, ``c0.credits_amount``:
the buttons that add and remove them re-render the form with what was typed.
An error message of the domain names the wire field; ``field_of`` finds its input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from api.dashboard.price_rows import CreditRow, GroupRow, MeterRow, ProductForm, TierRow
from domain.meter import canonical_number
from domain.price_model import PricingModel
from domain.pricing import CURRENCY_EXPONENTS, format_minor
from domain.product import TAX_CATEGORIES

T = TypeVar("T")
COMMON_CURRENCIES = ("USD", "EUR", "GBP", "INR", "JPY", "CAD", "AUD")
CURRENCIES = COMMON_CURRENCIES + tuple(sorted(set(CURRENCY_EXPONENTS) - set(COMMON_CURRENCIES)))
INTERVALS = ("Day", "Week", "Month", "Year")
MODELS = tuple(kind.value for kind in PricingModel)
TAXES = TAX_CATEGORIES
_MAJOR = re.compile(r"[0-9]{1,15}(\.[0-9]{1,20})?")
_INTEGER = re.compile(r"-?[0-9]{1,19}")


class FormError(Exception):
    """An input that cannot be read as its kind; the message names it as the form does."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def exponent_of(currency: str) -> int:
    return CURRENCY_EXPONENTS.get(currency, 2)  # an unknown one: the domain refuses it


def minor_price(text: str, exponent: int, name: str, label: str) -> str:
    """A price typed in major units as the wire's minor-unit decimal string."""
    if _MAJOR.fullmatch(text) is None:
        raise FormError(name, f"{label} must be a non-negative amount such as 0.02, not {text!r}")
    return format(canonical_number(Decimal(text).scaleb(exponent)), "f")


def minor_amount(text: str, exponent: int, name: str, label: str) -> int:
    """An amount typed in major units as a whole number of minor units."""
    if _MAJOR.fullmatch(text) is None:
        raise FormError(name, f"{label} must be a non-negative amount such as 10.00, not {text!r}")
    minor = Decimal(text).scaleb(exponent)
    if minor != minor.to_integral_value():
        raise FormError(name, f"{label} has at most {exponent} decimal places in this currency")
    return int(minor)


def integer(text: str, name: str, label: str) -> int:
    """A whole number; a negative one is left for the domain to refuse with its message."""
    if _INTEGER.fullmatch(text) is None:
        raise FormError(name, f"{label} must be a whole number, not {text!r}")
    return int(text)


def major(minor: object, currency: str) -> str:
    """A wire minor-unit price (a decimal string) in major units, for the form."""
    return _major_in(minor, exponent_of(currency))


def _major_in(minor: object, exponent: int) -> str:
    return format(Decimal(str(minor)).scaleb(-exponent), "f")


def major_amount(minor: object, currency: str) -> str:
    return format_minor(int(str(minor)), currency) if currency in CURRENCY_EXPONENTS else str(minor)


@dataclass(frozen=True, slots=True)
class ProductWire:
    """What ``Ledger.create_product`` and ``update_product`` take, from the form."""

    name: str
    description: str | None
    tax_category: str
    price: dict[str, Any]
    credit_entitlements: list[dict[str, Any]]


class _Reader:
    """Reads the form's inputs, keeping the first error of each."""

    def __init__(self, exponent: int) -> None:
        self.exponent = exponent
        self.errors: dict[str, str] = {}

    def price(self, text: str, name: str, label: str) -> str | None:
        return self._read(lambda: minor_price(text, self.exponent, name, label))

    def price_in(self, text: str, exponent: int, name: str, label: str) -> str | None:
        return self._read(lambda: minor_price(text, exponent, name, label))

    def amount(self, text: str, name: str, label: str) -> int | None:
        return self._read(lambda: minor_amount(text, self.exponent, name, label))

    def integer(self, text: str, name: str, label: str) -> int | None:
        return self._read(lambda: integer(text, name, label))

    def _read(self, read: Callable[[], T]) -> T | None:
        try:
            return read()
        except FormError as error:
            self.errors.setdefault(error.name, error.message)
            return None


def product_wire(form: ProductForm) -> tuple[ProductWire, dict[str, str]]:
    """The product the form describes, and the inputs that could not be read."""
    read = _Reader(exponent_of(form.currency))
    price: dict[str, Any] = {
        "type": "usage_based_price",
        "currency": form.currency,
        "fixed_price": read.amount(form.fixed_price or "0", "fixed_price", "Fixed price"),
        "payment_frequency_count": read.integer(
            form.payment_frequency_count, "payment_frequency_count", "Billed every"
        ),
        "payment_frequency_interval": form.payment_frequency_interval,
        "subscription_period_count": read.integer(
            form.subscription_period_count, "subscription_period_count", "Term"
        ),
        "subscription_period_interval": form.subscription_period_interval,
        "tax_inclusive": form.tax_inclusive == "on",
        "meters": [
            _meter_wire(i, row, read) for i, row in enumerate(form.meters) if not _blank(row)
        ],
    }
    credits = [
        _credit_wire(k, row, read) for k, row in enumerate(form.credits) if not _blank_credit(row)
    ]
    wire = ProductWire(form.name, form.description or None, form.tax_category, price, credits)
    return wire, read.errors


def _blank(row: MeterRow) -> bool:
    return not row.meter_id and not row.price_per_unit and row.pricing_model == "per_unit"


def _model_wire(at: str, row: MeterRow | GroupRow, read: _Reader) -> dict[str, Any]:
    """The fields of the row's model (a meter line's or a value's), named under ``at``."""
    if row.pricing_model == "per_unit":
        price = read.price(row.price_per_unit, at + "price_per_unit", "Price per unit")
        return {"price_per_unit": price}
    wire: dict[str, Any] = {"pricing_model": row.pricing_model}
    if row.is_tiered:
        wire["tiers"] = [
            {
                "up_to": tier.up_to or None,
                "price_per_unit": read.price(
                    tier.price_per_unit, f"{at}t{j}.price_per_unit", "Price per unit"
                ),
                "flat_fee": read.amount(tier.flat_fee or "0", f"{at}t{j}.flat_fee", "Flat fee"),
            }
            for j, tier in enumerate(row.tiers)
        ]
    elif row.pricing_model == "package":
        wire["package_size"] = read.integer(row.package_size, at + "package_size", "Package size")
        wire["package_price"] = read.price(row.package_price, at + "package_price", "Package price")
        wire["package_rounding"] = row.package_rounding
    return wire


def _meter_wire(i: int, row: MeterRow, read: _Reader) -> dict[str, Any]:
    at = f"m{i}."
    threshold = read.integer(row.free_threshold or "0", at + "free_threshold", "Free threshold")
    wire: dict[str, Any] = {"meter_id": row.meter_id, "free_threshold": threshold}
    wire.update(_model_wire(at, row, read))
    for bound, label in (
        ("minimum_amount", "Minimum charge"),
        ("maximum_amount", "Maximum charge"),
    ):
        if getattr(row, bound):
            wire[bound] = read.amount(getattr(row, bound), at + bound, label)
    if row.group_by:
        wire["group_by"] = row.group_by
        wire["groups"] = [
            {"value": group.value, **_model_wire(f"{at}g{j}.", group, read)}
            for j, group in enumerate(row.groups)
        ]
    if row.credit_entitlement_id:
        wire["credit_entitlement_id"] = row.credit_entitlement_id
        wire["meter_units_per_credit"] = row.meter_units_per_credit or "1"
    return wire


_CREDIT_COUNTS = (
    ("low_balance_threshold_percent", "Low balance threshold"),
    ("rollover_percentage", "Rollover percentage"),
    ("max_rollover_count", "Rollover at most"),
    ("rollover_timeframe_count", "Rolled-over credit lasts"),
    ("expires_after_days", "Expires after days"),
)
_CREDIT_TEXTS = (
    "overage_behavior",
    "overage_limit",
    "rollover_timeframe_interval",
    "currency",
    "proration_behavior",
)
_FLAGS = {"yes": True, "no": False}


def _credit_wire(k: int, row: CreditRow, read: _Reader) -> dict[str, Any]:
    """The attachment: every rule given is the product's own; an empty one is the
    entitlement's (``domain.credit_entitlement.resolve_attachment``)."""
    at = f"c{k}."
    wire: dict[str, Any] = {
        "credit_entitlement_id": row.credit_entitlement_id,
        "credits_amount": row.credits_amount,
    }
    for name, label in _CREDIT_COUNTS:
        if getattr(row, name):
            wire[name] = read.integer(getattr(row, name), at + name, label)
    for name in _CREDIT_TEXTS:
        if getattr(row, name):
            wire[name] = getattr(row, name)
    for flag in ("overage_enabled", "rollover_enabled"):
        if getattr(row, flag) in _FLAGS:
            wire[flag] = _FLAGS[getattr(row, flag)]
    if row.price_per_unit and not row.currency:
        read.errors.setdefault(at + "currency", "Choose the currency of the price per credit")
    elif row.price_per_unit:
        wire["price_per_unit"] = read.price_in(
            row.price_per_unit,
            _credit_exponent(row.currency),
            at + "price_per_unit",
            "Price per credit",
        )
    if row.trial_credits:
        wire["trial_credits"] = row.trial_credits
        wire["trial_credits_expire_after_trial"] = row.trial_credits_expire_after_trial == "yes"
    return wire


def _credit_exponent(currency: str) -> int:
    """A credit's price is in its own currency's major units (a stored one without a
    currency is shown as stored)."""
    return CURRENCY_EXPONENTS.get(currency, 0) if currency else 0


def product_form(
    name: str, description: str | None, tax_category: str, price: Mapping[str, Any]
) -> ProductForm:
    """The form that edits a product as it is (its stored wire price): every part."""
    currency = str(price.get("currency", "USD"))
    return ProductForm(
        name=name,
        description=description or "",
        tax_category=tax_category,
        currency=currency,
        fixed_price=major_amount(price.get("fixed_price", 0), currency),
        tax_inclusive="on" if price.get("tax_inclusive") else "",
        payment_frequency_count=str(price.get("payment_frequency_count", 1)),
        payment_frequency_interval=str(price.get("payment_frequency_interval", "Month")),
        subscription_period_count=str(price.get("subscription_period_count", 20)),
        subscription_period_interval=str(price.get("subscription_period_interval", "Year")),
        meters=[_meter_row(meter, currency) for meter in price.get("meters", [])],
        credits=[_credit_row(item) for item in price.get("credit_entitlements", [])],
    )


def _optional(value: object) -> str:
    return "" if value is None else str(value)


def _model_row(wire: Mapping[str, Any], currency: str) -> dict[str, Any]:
    """A stored model's fields as the form shows them (a meter line's or a value's)."""
    price, package = wire.get("price_per_unit"), wire.get("package_price")
    return {
        "pricing_model": str(wire.get("pricing_model") or "per_unit"),
        "price_per_unit": "" if price is None else major(price, currency),
        "package_size": _optional(wire.get("package_size")),
        "package_price": "" if package is None else major(package, currency),
        "package_rounding": str(wire.get("package_rounding") or "up"),
        "tiers": [
            TierRow(
                _optional(tier.get("up_to")),
                major(tier["price_per_unit"], currency),
                major_amount(tier.get("flat_fee", 0), currency),
            )
            for tier in wire.get("tiers") or []
        ],
    }


def _meter_row(meter: Mapping[str, Any], currency: str) -> MeterRow:
    bounds: dict[str, Any] = {
        name: "" if meter.get(name) is None else major_amount(meter[name], currency)
        for name in ("minimum_amount", "maximum_amount")
    }
    return MeterRow(
        meter_id=str(meter["meter_id"]),
        free_threshold=str(meter.get("free_threshold", 0)),
        group_by=str(meter.get("group_by") or ""),
        credit_entitlement_id=str(meter.get("credit_entitlement_id") or ""),
        meter_units_per_credit=str(meter.get("meter_units_per_credit") or ""),
        groups=[
            GroupRow(value=str(group["value"]), **_model_row(group, currency))
            for group in meter.get("groups") or []
        ],
        **bounds,
        **_model_row(meter, currency),
    )


def _credit_row(item: Mapping[str, Any]) -> CreditRow:
    """A stored (resolved) attachment: every rule it has, so saving keeps them."""
    currency = str(item.get("currency") or "")
    price = item.get("price_per_unit")
    texts = {
        name: _optional(item.get(name))
        for name in (*(n for n, _ in _CREDIT_COUNTS), *_CREDIT_TEXTS, "trial_credits")
    }
    return CreditRow(
        credit_entitlement_id=str(item["credit_entitlement_id"]),
        credits_amount=str(item.get("credits_amount", "")),
        **{**texts, "currency": currency},
        price_per_unit="" if price is None else _major_in(price, _credit_exponent(currency)),
        overage_enabled="yes" if item.get("overage_enabled") else "no",
        rollover_enabled="yes" if item.get("rollover_enabled") else "no",
        trial_credits_expire_after_trial="yes"
        if item.get("trial_credits_expire_after_trial")
        else "no",
    )


_METER = r"price\.meters\[([0-9]+)\]"
_PATHS = (
    (
        re.compile(_METER + r"\.groups\[([0-9]+)\]\.tiers\[([0-9]+)\][.:] ?(\w+)"),
        "m{0}.g{1}.t{2}.{3}",
    ),
    (re.compile(_METER + r"\.groups\[([0-9]+)\][.:] ?(\w+)"), "m{0}.g{1}.{2}"),
    (re.compile(_METER + r"\.groups\[([0-9]+)\]"), "m{0}.g{1}.value"),
    (re.compile(_METER + r"\.tiers\[([0-9]+)\][.:] ?(\w+)"), "m{0}.t{1}.{2}"),
    (re.compile(_METER + r"[.:] ?(\w+)"), "m{0}.{1}"),
    (re.compile(_METER), "m{0}.meter_id"),
    (re.compile(r"credit_entitlements\[([0-9]+)\][.:] ?(\w+)"), "c{0}.{1}"),
    (re.compile(r"credit_entitlements\[([0-9]+)\]"), "c{0}.credit_entitlement_id"),
    (re.compile(r"price\.(\w+)"), "{0}"),
    (re.compile(r"(name|description|tax_category)\b"), "{0}"),
)
"""Where a domain message's path points: ``price.meters[0].tiers[1].up_to ...``, or
``price.meters[0]: meter_units_per_credit: ...`` (a credit link's own message)."""


def field_of(message: str, form: ProductForm) -> str:
    """The input a domain message is about ("" for the form as a whole). The wire
    numbers only the rows it was sent (blank rows are not), so indexes are mapped back."""
    rows = {"m": sent_rows(form), "c": sent_credit_rows(form)}
    names = form.field_names()
    for pattern, template in _PATHS:
        match = pattern.match(message)
        if match is None:
            continue
        parts = list(match.groups())
        sent = rows.get(template[0])
        if sent is not None and int(parts[0]) < len(sent):
            parts[0] = str(sent[int(parts[0])])
        found = template.format(*parts)
        if found in names:
            return found
    return ""


def sent_rows(form: ProductForm) -> list[int]:
    """The form's index of each meter row the wire carries (blank rows are not sent)."""
    return [i for i, row in enumerate(form.meters) if not _blank(row)]


def sent_credit_rows(form: ProductForm) -> list[int]:
    return [k for k, row in enumerate(form.credits) if not _blank_credit(row)]


def _blank_credit(row: CreditRow) -> bool:
    return not row.credit_entitlement_id and not row.credits_amount

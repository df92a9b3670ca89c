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
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, TypeVar

from domain.meter import canonical_number
from domain.price_model import PricingModel
from domain.pricing import CURRENCY_EXPONENTS, MAX_METERS, format_minor
from domain.product import TAX_CATEGORIES

T = TypeVar("T")
MAX_ROWS = 20  # tiers or per-value prices of one meter, credit rows: what a form shows
COMMON_CURRENCIES = ("USD", "EUR", "GBP", "INR", "JPY", "CAD", "AUD")
CURRENCIES = COMMON_CURRENCIES + tuple(sorted(set(CURRENCY_EXPONENTS) - set(COMMON_CURRENCIES)))
INTERVALS = ("Day", "Week", "Month", "Year")
MODELS = tuple(kind.value for kind in PricingModel)
TAXES = TAX_CATEGORIES
_MAJOR = re.compile(r"[0-9]{1,15}(\.[0-9]{1,20})?")
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_ROW_KEY = re.compile(r"(m|c)([0-9]{1,2})\.(?:(t|g)([0-9]{1,2})\.)?([a-z_]+)")


@dataclass(slots=True)
class TierRow:
    up_to: str = ""
    price_per_unit: str = ""
    flat_fee: str = ""


@dataclass(slots=True)
class GroupRow:
    value: str = ""
    price_per_unit: str = ""


@dataclass(slots=True)
class MeterRow:
    meter_id: str = ""
    pricing_model: str = "per_unit"
    price_per_unit: str = ""
    free_threshold: str = "0"
    package_size: str = ""
    package_price: str = ""
    package_rounding: str = "up"
    minimum_amount: str = ""
    maximum_amount: str = ""
    group_by: str = ""
    credit_entitlement_id: str = ""
    meter_units_per_credit: str = ""
    tiers: list[TierRow] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)

    @property
    def is_tiered(self) -> bool:
        return self.pricing_model in ("graduated", "volume")


@dataclass(slots=True)
class CreditRow:
    credit_entitlement_id: str = ""
    credits_amount: str = ""
    low_balance_threshold_percent: str = ""
    trial_credits: str = ""


@dataclass(slots=True)
class ProductForm:
    name: str = ""
    description: str = ""
    tax_category: str = "saas"
    currency: str = "USD"
    fixed_price: str = "0.00"
    payment_frequency_count: str = "1"
    payment_frequency_interval: str = "Month"
    subscription_period_count: str = "20"
    subscription_period_interval: str = "Year"
    example_quantity: str = "2500"
    meters: list[MeterRow] = field(default_factory=lambda: [MeterRow()])
    credits: list[CreditRow] = field(default_factory=list)

    def field_names(self) -> set[str]:
        """Every input the form shows: where an error may be written."""
        names = {f.name for f in fields(self)} - {"meters", "credits"}
        for i, meter in enumerate(self.meters):
            names |= {f"m{i}.{f.name}" for f in fields(meter)}
            names |= {
                f"m{i}.t{j}.{f.name}" for j in range(len(meter.tiers)) for f in fields(TierRow)
            }
            names |= {
                f"m{i}.g{j}.{f.name}" for j in range(len(meter.groups)) for f in fields(GroupRow)
            }
        for k in range(len(self.credits)):
            names |= {f"c{k}.{f.name}" for f in fields(CreditRow)}
        return names


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _rows(found: Mapping[int, dict[str, str]], kind: type[Any]) -> list[Any]:
    names = {f.name for f in fields(kind)}
    return [kind(**{k: v for k, v in found[i].items() if k in names}) for i in sorted(found)]


def parse_form(data: Mapping[str, str]) -> ProductForm:
    """The form as submitted (unknown and malformed names are ignored)."""
    top = {f.name for f in fields(ProductForm)} - {"meters", "credits"}
    form = ProductForm(meters=[])
    for name in top & set(data):
        setattr(form, name, _text(data[name]))
    meters: dict[int, dict[str, str]] = {}
    subs: dict[tuple[int, str], dict[int, dict[str, str]]] = {}
    credits: dict[int, dict[str, str]] = {}
    for key, value in data.items():
        match = _ROW_KEY.fullmatch(key)
        if match is None:
            continue
        kind, index, sub, sub_index, name = match.groups()
        if kind == "c":
            credits.setdefault(int(index), {})[name] = _text(value)
        elif sub is None:
            meters.setdefault(int(index), {})[name] = _text(value)
        else:
            rows = subs.setdefault((int(index), sub), {})
            rows.setdefault(int(sub_index), {})[name] = _text(value)
            meters.setdefault(int(index), {})
    for i in sorted(meters)[:MAX_METERS]:
        row: MeterRow = _rows({0: meters[i]}, MeterRow)[0]
        row.tiers = _rows(subs.get((i, "t"), {}), TierRow)[:MAX_ROWS]
        row.groups = _rows(subs.get((i, "g"), {}), GroupRow)[:MAX_ROWS]
        form.meters.append(row)
    form.credits = _rows(credits, CreditRow)[:MAX_ROWS]
    return form


def apply_action(form: ProductForm, action: str) -> None:
    """What a row button does: ``add_meter``, ``add_tier:0``, ``remove_tier:0:1``..."""
    verb, _, where = action.partition(":")
    at = [int(part) for part in where.split(":") if part.isdigit()]
    if verb == "add_meter" and len(form.meters) < MAX_METERS:
        form.meters.append(MeterRow())
    elif verb == "add_credit" and len(form.credits) < MAX_ROWS:
        form.credits.append(CreditRow())
    elif verb == "remove_credit" and at and at[0] < len(form.credits):
        del form.credits[at[0]]
    elif at and at[0] < len(form.meters):
        meter = form.meters[at[0]]
        rows: list[Any] = meter.tiers if verb.endswith("tier") else meter.groups
        if verb == "remove_meter":
            del form.meters[at[0]]
        elif verb in ("add_tier", "add_group") and len(rows) < MAX_ROWS:
            rows.append(TierRow() if verb == "add_tier" else GroupRow())
        elif verb in ("remove_tier", "remove_group") and len(at) > 1 and at[1] < len(rows):
            del rows[at[1]]
    fill_tiers(form)


def fill_tiers(form: ProductForm) -> bool:
    """Give a tiered model without tiers two to fill in (a bounded one, an open one)."""
    empty = [meter for meter in form.meters if meter.is_tiered and not meter.tiers]
    for meter in empty:
        meter.tiers = [TierRow(), TierRow()]
    return bool(empty)


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
    return format(Decimal(str(minor)).scaleb(-exponent_of(currency)), "f")


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


def _meter_wire(i: int, row: MeterRow, read: _Reader) -> dict[str, Any]:
    at = f"m{i}."
    threshold = read.integer(row.free_threshold or "0", at + "free_threshold", "Free threshold")
    wire: dict[str, Any] = {"meter_id": row.meter_id, "free_threshold": threshold}
    if row.pricing_model == "per_unit":
        wire["price_per_unit"] = read.price(
            row.price_per_unit, at + "price_per_unit", "Price per unit"
        )
    else:
        wire["pricing_model"] = row.pricing_model
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
    for bound, label in (
        ("minimum_amount", "Minimum charge"),
        ("maximum_amount", "Maximum charge"),
    ):
        if getattr(row, bound):
            wire[bound] = read.amount(getattr(row, bound), at + bound, label)
    if row.group_by:
        wire["group_by"] = row.group_by
        wire["groups"] = [
            {
                "value": group.value,
                "price_per_unit": read.price(
                    group.price_per_unit, f"{at}g{j}.price_per_unit", "Price per unit"
                ),
            }
            for j, group in enumerate(row.groups)
        ]
    if row.credit_entitlement_id:
        wire["credit_entitlement_id"] = row.credit_entitlement_id
        wire["meter_units_per_credit"] = row.meter_units_per_credit or "1"
    return wire


def _credit_wire(k: int, row: CreditRow, read: _Reader) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "credit_entitlement_id": row.credit_entitlement_id,
        "credits_amount": row.credits_amount,
    }
    if row.low_balance_threshold_percent:
        wire["low_balance_threshold_percent"] = read.integer(
            row.low_balance_threshold_percent,
            f"c{k}.low_balance_threshold_percent",
            "Low balance threshold",
        )
    if row.trial_credits:
        wire["trial_credits"] = row.trial_credits
    return wire


def product_form(
    name: str, description: str | None, tax_category: str, price: Mapping[str, Any]
) -> ProductForm:
    """The form that edits a product as it is (its stored wire price)."""
    currency = str(price.get("currency", "USD"))
    return ProductForm(
        name=name,
        description=description or "",
        tax_category=tax_category,
        currency=currency,
        fixed_price=major_amount(price.get("fixed_price", 0), currency),
        payment_frequency_count=str(price.get("payment_frequency_count", 1)),
        payment_frequency_interval=str(price.get("payment_frequency_interval", "Month")),
        subscription_period_count=str(price.get("subscription_period_count", 20)),
        subscription_period_interval=str(price.get("subscription_period_interval", "Year")),
        meters=[_meter_row(meter, currency) for meter in price.get("meters", [])],
        credits=[_credit_row(item) for item in price.get("credit_entitlements", [])],
    )


def _meter_row(meter: Mapping[str, Any], currency: str) -> MeterRow:
    def optional(key: str, convert: Any) -> str:
        value = meter.get(key)
        return "" if value is None else str(convert(value, currency))

    return MeterRow(
        meter_id=str(meter["meter_id"]),
        pricing_model=str(meter.get("pricing_model") or "per_unit"),
        price_per_unit=optional("price_per_unit", major),
        free_threshold=str(meter.get("free_threshold", 0)),
        package_size=optional("package_size", lambda v, _: v),
        package_price=optional("package_price", major),
        package_rounding=str(meter.get("package_rounding") or "up"),
        minimum_amount=optional("minimum_amount", major_amount),
        maximum_amount=optional("maximum_amount", major_amount),
        group_by=str(meter.get("group_by") or ""),
        credit_entitlement_id=str(meter.get("credit_entitlement_id") or ""),
        meter_units_per_credit=str(meter.get("meter_units_per_credit") or ""),
        tiers=[
            TierRow(
                "" if tier.get("up_to") is None else str(tier["up_to"]),
                major(tier["price_per_unit"], currency),
                major_amount(tier.get("flat_fee", 0), currency),
            )
            for tier in meter.get("tiers") or []
        ],
        groups=[
            GroupRow(str(group["value"]), major(group.get("price_per_unit", "0"), currency))
            for group in meter.get("groups") or []
        ],
    )


def _credit_row(item: Mapping[str, Any]) -> CreditRow:
    threshold = item.get("low_balance_threshold_percent")
    trial = item.get("trial_credits")
    return CreditRow(
        str(item["credit_entitlement_id"]),
        str(item.get("credits_amount", "")),
        "" if threshold is None else str(threshold),
        "" if trial is None else str(trial),
    )


_PATHS = (
    (re.compile(r"price\.meters\[(\d+)\]\.tiers\[(\d+)\]\.(\w+)"), "m{0}.t{1}.{2}"),
    (re.compile(r"price\.meters\[(\d+)\]\.groups\[(\d+)\]\.(\w+)"), "m{0}.g{1}.{2}"),
    (re.compile(r"price\.meters\[(\d+)\]\.(\w+)"), "m{0}.{1}"),
    (re.compile(r"price\.meters\[(\d+)\]"), "m{0}.meter_id"),
    (re.compile(r"credit_entitlements\[(\d+)\]\.(\w+)"), "c{0}.{1}"),
    (re.compile(r"credit_entitlements\[(\d+)\]"), "c{0}.credit_entitlement_id"),
    (re.compile(r"price\.(\w+)"), "{0}"),
    (re.compile(r"(name|description|tax_category)\b"), "{0}"),
)


def field_of(message: str, form: ProductForm) -> str:
    """The input a domain message is about ("" for the form as a whole). The wire
    numbers only the rows it was sent (blank rows are not), so indexes are mapped back."""
    rows = {"m": sent_rows(form), "c": sent_credit_rows(form)}
    for pattern, template in _PATHS:
        match = pattern.match(message)
        if match is None:
            continue
        parts = list(match.groups())
        sent = rows.get(template[0])
        if sent is not None and int(parts[0]) < len(sent):
            parts[0] = str(sent[int(parts[0])])
        found = template.format(*parts)
        return found if found in form.field_names() else ""
    return ""


def sent_rows(form: ProductForm) -> list[int]:
    """The form's index of each meter row the wire carries (blank rows are not sent)."""
    return [i for i, row in enumerate(form.meters) if not _blank(row)]


def sent_credit_rows(form: ProductForm) -> list[int]:
    return [k for k, row in enumerate(form.credits) if not _blank_credit(row)]


def _blank_credit(row: CreditRow) -> bool:
    return not row.credit_entitlement_id and not row.credits_amount

"""The worked example of a product's price: what a quantity of usage would cost.

Computed by the code that bills (``domain.line.price_line`` over the price the
domain parses), so the example and an invoice of the same quantity agree to the
minor unit. The example leaves credits out: it shows what the price charges for
usage that no credit covers. A line priced per value of a metadata key is shown
for usage without a listed value (the line's own model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from application.errors import NotFoundError
from application.ledger import Ledger
from domain.line import Line, price_line
from domain.price_model import PriceModel, TierCharge
from domain.pricing import MeterPrice
from domain.product import parse_usage_price

DEFAULT_QUANTITY = Decimal(2500)
MAX_QUANTITY = Decimal(10) ** 15  # an example, not a bill: keeps the figures readable
_CREDIT_FIELDS = ("credit_entitlement_id", "meter_units_per_credit")


@dataclass(frozen=True, slots=True)
class TierStep:
    """One tier's share of the example: ``units x unit_price + flat_fee`` (exact)."""

    number: int  # 1 is the first tier
    lower: Decimal  # the tier holds units above this
    upper: Decimal | None  # ... up to this one (None: no bound)
    units: Decimal
    unit_price: Decimal  # minor units
    flat_fee: int  # minor units
    amount: Decimal  # minor units, unrounded


@dataclass(frozen=True, slots=True)
class PriceExample:
    """One meter price applied to ``consumed`` units of its meter."""

    meter_id: str
    unit: str  # the meter's measurement unit ("calls")
    currency: str
    model: str  # per_unit, graduated, volume or package
    consumed: Decimal
    free_threshold: int
    billed_units: Decimal
    unit_price: Decimal  # minor units: the price at this quantity
    amount_minor: int  # what the line bills: rounded once, within its bounds
    priced_minor: int  # before the minimum and maximum
    minimum_minor: int | None
    maximum_minor: int | None
    tiers: tuple[TierStep, ...] = ()
    packages: int | None = None
    package_size: int = 1
    package_rounding: str = "up"
    group_by: str | None = None
    credit_entitlement_id: str | None = None  # credits would cover usage first

    @property
    def is_bounded(self) -> bool:
        """The minimum or maximum changed the amount."""
        return self.amount_minor != self.priced_minor


def price_example(price: MeterPrice, consumed: Decimal, currency: str, unit: str) -> PriceExample:
    """What ``consumed`` units cost under ``price``, with no credit drawn."""
    groups: dict[str | None, Decimal] | None = (
        {None: consumed} if price.group_by is not None else None
    )
    line = price_line(consumed, price, groups=groups)
    model = price.pricing
    unit_price, charges, packages = _charged(line)
    return PriceExample(
        meter_id=price.meter_id,
        unit=unit,
        currency=currency,
        model=model.kind.value,
        consumed=line.consumed,
        free_threshold=line.free_threshold,
        billed_units=line.billed_units,
        unit_price=unit_price,
        amount_minor=line.amount_minor,
        priced_minor=line.amount_minor if line.priced_minor is None else line.priced_minor,
        minimum_minor=price.minimum_minor,
        maximum_minor=price.maximum_minor,
        tiers=tier_steps(model, charges),
        packages=packages,
        package_size=model.package_size,
        package_rounding=model.rounding.value,
        group_by=price.group_by,
        credit_entitlement_id=None if price.credit is None else price.credit.entitlement_id,
    )


def _charged(line: Line) -> tuple[Decimal, tuple[TierCharge, ...], int | None]:
    """The unit price, tier charges and packages of a line (of its sub-line without a value,
    if grouped)."""
    if line.sub_lines:
        sub = next(sub for sub in line.sub_lines if sub.value is None)
        return sub.unit_price, sub.tiers, sub.packages
    return line.unit_price, line.tiers, line.packages


def tier_steps(model: PriceModel, charges: tuple[TierCharge, ...]) -> tuple[TierStep, ...]:
    steps = []
    for charge in charges:
        tier = model.tiers[charge.index]
        lower = model.tiers[charge.index - 1].up_to if charge.index else None
        steps.append(
            TierStep(
                number=charge.index + 1,
                lower=Decimal(0) if lower is None else lower,
                upper=tier.up_to,
                units=charge.units,
                unit_price=tier.price_per_unit,
                flat_fee=tier.flat_fee,
                amount=charge.amount,
            )
        )
    return tuple(steps)


def price_examples(
    ledger: Ledger, business_id: str, price: Mapping[str, Any], consumed: Decimal
) -> tuple[PriceExample, ...]:
    """Each meter price of ``price`` (its wire fields) applied to ``consumed`` units.

    ``InvalidPriceError`` naming the field when the price is not one the ledger takes;
    a meter not found is shown in "units" (creating the product refuses it).
    """
    without_credits = {
        **{k: v for k, v in price.items() if k != "credit_entitlements"},
        "meters": [
            {k: v for k, v in meter.items() if k not in _CREDIT_FIELDS}
            if isinstance(meter, Mapping)
            else meter
            for meter in price.get("meters") or []
        ],
    }
    parsed, _ = parse_usage_price(without_credits)
    linked = {
        m.get("meter_id"): m.get("credit_entitlement_id")
        for m in price.get("meters") or []
        if isinstance(m, Mapping)
    }
    examples = []
    for meter in parsed.meters:
        example = price_example(meter, consumed, parsed.currency, _unit(ledger, business_id, meter))
        entitlement = linked.get(meter.meter_id)
        if isinstance(entitlement, str):
            example = _with_credit(example, entitlement)
        examples.append(example)
    return tuple(examples)


def _unit(ledger: Ledger, business_id: str, meter: MeterPrice) -> str:
    try:
        return ledger.meter(business_id, meter.meter_id).measurement_unit
    except NotFoundError:
        return "units"


def _with_credit(example: PriceExample, entitlement_id: str) -> PriceExample:
    return replace(example, credit_entitlement_id=entitlement_id)

"""How a meter line's billed units become money: per unit, in tiers, in packages.

Every model is an exact function of the line's billed units (what is left after
the free threshold, credits and forgiven overage), in the currency's minor unit,
left unrounded: the line rounds once (``domain.pricing``).

- ``per_unit``: ``units * price_per_unit``.
- ``graduated``: each unit is priced by the tier it falls in. Tier ``i`` holds the
  units in ``(up_to[i-1], up_to[i]]`` (the first from 0, the last open); a tier's
  ``flat_fee`` is charged once when any unit falls in it.
- ``volume``: every unit is priced by the tier the total lands in (the first
  whose ``up_to`` is at least the total), plus that tier's ``flat_fee``. Not
  monotone: with falling tier prices, more units can cost less.
- ``package``: ``packages * package_price`` where ``packages`` is
  ``units / package_size`` rounded up (the default) or down.

No units cost nothing in every model (no flat fee either). ``unit_price`` of a
charge is the price of the unit at the line's quantity: the per-unit price, the
price of the tier the total lands in, or the price of one package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from enum import StrEnum
from functools import reduce
from typing import Any

from domain.errors import InvalidPriceError
from domain.meter import canonical_number

MAX_AMOUNT_MINOR = 10**15  # below 2**53, so every amount survives a JSON double
MAX_PRICE_INTEGER_DIGITS = 5
MAX_PRICE_DECIMAL_PLACES = 12
MAX_TIERS = 20
MAX_PACKAGE_SIZE = 10**12
MAX_TIER_BOUND = 10**18

_PRICE_TEXT = re.compile(r"([0-9]{1,5})(?:\.([0-9]{1,12}))?")
_BOUND_TEXT = re.compile(r"[0-9]{1,19}(\.[0-9]{1,12})?")
_EXACT = Context(prec=2000, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_ZERO = Decimal(0)


class PricingModel(StrEnum):
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"

    def is_tiered(self) -> bool:
        return self in (PricingModel.GRADUATED, PricingModel.VOLUME)


class PackageRounding(StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Tier:
    """Units up to ``up_to`` (None: no bound) at ``price_per_unit``, plus ``flat_fee``."""

    up_to: Decimal | None
    price_per_unit: Decimal
    flat_fee: int = 0


@dataclass(frozen=True, slots=True)
class TierCharge:
    """What one tier charged: ``units * price_per_unit + flat_fee``, unrounded."""

    index: int
    units: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Charge:
    """A model applied to some units: the exact amount and how it came about."""

    amount: Decimal
    unit_price: Decimal
    tiers: tuple[TierCharge, ...] = ()
    packages: int | None = None


@dataclass(frozen=True, slots=True)
class PriceModel:
    """One way of pricing units; ``check`` says what makes it inconsistent."""

    kind: PricingModel = PricingModel.PER_UNIT
    price_per_unit: Decimal = _ZERO
    tiers: tuple[Tier, ...] = ()
    package_size: int = 1
    package_price: Decimal = _ZERO
    rounding: PackageRounding = PackageRounding.UP

    def __post_init__(self) -> None:
        check_price(self.price_per_unit, "price_per_unit")
        check_price(self.package_price, "package_price")
        if self.kind.is_tiered():
            _check_tiers(self.tiers)
        elif self.tiers:
            raise InvalidPriceError(f"tiers: a {self.kind} price has no tiers")
        if type(self.package_size) is not int or not 0 < self.package_size <= MAX_PACKAGE_SIZE:
            raise InvalidPriceError(f"package_size must be an integer from 1 to {MAX_PACKAGE_SIZE}")

    @classmethod
    def per_unit(cls, price_per_unit: Decimal) -> PriceModel:
        return cls(PricingModel.PER_UNIT, price_per_unit)

    def charge(self, units: Decimal) -> Charge:
        """The exact, unrounded amount ``units`` billed units cost."""
        if not units.is_finite() or units < 0:
            raise InvalidPriceError(f"billed units must be a non-negative number, not {units}")
        if self.kind is PricingModel.GRADUATED:
            return self._graduated(units)
        if self.kind is PricingModel.VOLUME:
            return self._volume(units)
        if self.kind is PricingModel.PACKAGE:
            return self._package(units)
        return Charge(_EXACT.multiply(units, self.price_per_unit), self.price_per_unit)

    def _graduated(self, units: Decimal) -> Charge:
        parts: list[TierCharge] = []
        lower = _ZERO
        unit_price = self.tiers[0].price_per_unit
        for index, tier in enumerate(self.tiers):
            if units <= lower:
                break
            upper = units if tier.up_to is None else min(units, tier.up_to)
            within = _EXACT.subtract(upper, lower)
            amount = _EXACT.add(_EXACT.multiply(within, tier.price_per_unit), tier.flat_fee)
            parts.append(TierCharge(index, canonical_number(within), canonical_number(amount)))
            unit_price = tier.price_per_unit
            lower = upper
        total = exact_sum(part.amount for part in parts)
        return Charge(canonical_number(total), unit_price, tuple(parts))

    def _volume(self, units: Decimal) -> Charge:
        index, tier = next(
            (i, t) for i, t in enumerate(self.tiers) if t.up_to is None or units <= t.up_to
        )
        if not units:
            return Charge(_ZERO, tier.price_per_unit, ())
        amount = _EXACT.add(_EXACT.multiply(units, tier.price_per_unit), tier.flat_fee)
        part = TierCharge(index, canonical_number(units), canonical_number(amount))
        return Charge(part.amount, tier.price_per_unit, (part,))

    def _package(self, units: Decimal) -> Charge:
        whole, rest = _EXACT.divmod(units, Decimal(self.package_size))
        packages = int(whole) + (1 if rest and self.rounding is PackageRounding.UP else 0)
        amount = _EXACT.multiply(Decimal(packages), self.package_price)
        return Charge(canonical_number(amount), self.package_price, (), packages)

    def to_wire(self) -> dict[str, Any]:
        """The model's wire fields, canonical; per_unit's are the SDK's own."""
        if self.kind is PricingModel.PER_UNIT:
            return {"price_per_unit": _text(self.price_per_unit)}
        if self.kind is PricingModel.PACKAGE:
            return {
                "pricing_model": self.kind.value,
                "package_size": self.package_size,
                "package_price": _text(self.package_price),
                "package_rounding": self.rounding.value,
            }
        return {
            "pricing_model": self.kind.value,
            "tiers": [
                {
                    "up_to": None if tier.up_to is None else _text(tier.up_to),
                    "price_per_unit": _text(tier.price_per_unit),
                    "flat_fee": tier.flat_fee,
                }
                for tier in self.tiers
            ],
        }


MODEL_FIELDS = frozenset(
    {
        "pricing_model",
        "price_per_unit",
        "tiers",
        "package_size",
        "package_price",
        "package_rounding",
    }
)
_TIER_FIELDS = frozenset({"from", "up_to", "price_per_unit", "flat_fee"})


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """The sum in the exact context (the built-in ``sum`` rounds to 28 digits)."""
    return reduce(_EXACT.add, values, _ZERO)


def parse_price_model(fields: Mapping[str, Any], path: str) -> PriceModel:
    """A model from its wire fields; ``InvalidPriceError`` naming the field under ``path``."""
    raw_kind = fields.get("pricing_model") or PricingModel.PER_UNIT.value
    try:
        kind = PricingModel(raw_kind)
    except ValueError:
        choices = ", ".join(k.value for k in PricingModel)
        raise InvalidPriceError(f"{path}.pricing_model must be one of: {choices}") from None
    given = {name for name in MODEL_FIELDS - {"pricing_model"} if fields.get(name) is not None}
    allowed = {
        PricingModel.PER_UNIT: {"price_per_unit"},
        PricingModel.GRADUATED: {"tiers"},
        PricingModel.VOLUME: {"tiers"},
        PricingModel.PACKAGE: {"package_size", "package_price", "package_rounding"},
    }[kind]
    for name in sorted(given - allowed):
        raise InvalidPriceError(f"{path}.{name}: a {kind} price does not take {name}")
    if kind is PricingModel.PER_UNIT:
        return PriceModel.per_unit(parse_price_per_unit(fields.get("price_per_unit")))
    if kind is PricingModel.PACKAGE:
        return _package(fields, path)
    tiers_raw = fields.get("tiers")
    if not isinstance(tiers_raw, list) or not 0 < len(tiers_raw) <= MAX_TIERS:
        raise InvalidPriceError(f"{path}.tiers: a {kind} price needs 1 to {MAX_TIERS} tiers")
    tiers = _parse_tiers(tiers_raw, f"{path}.tiers")
    try:
        return PriceModel(kind, tiers=tiers)
    except InvalidPriceError as error:
        raise InvalidPriceError(f"{path}.{error.message}") from None


def parse_price_per_unit(raw: object, field: str = "price_per_unit") -> Decimal:
    """A wire price string (in the minor unit) as an exact, canonical Decimal."""
    if not isinstance(raw, str) or _PRICE_TEXT.fullmatch(raw) is None:
        raise InvalidPriceError(
            f"{field} must be a decimal string in the currency's minor unit, with at "
            f"most {MAX_PRICE_INTEGER_DIGITS} digits before the point and "
            f"{MAX_PRICE_DECIMAL_PLACES} after it (such as '2' or '0.001'), not {str(raw)[:40]!r}"
        )
    return canonical_number(Decimal(raw))


def check_price(price: object, field: str) -> None:
    if not isinstance(price, Decimal) or not price.is_finite() or price < 0:
        raise InvalidPriceError(f"{field} must be a finite, non-negative Decimal")
    canonical = canonical_number(price)
    exponent = canonical.as_tuple().exponent
    if canonical.adjusted() >= MAX_PRICE_INTEGER_DIGITS or (
        isinstance(exponent, int) and exponent < -MAX_PRICE_DECIMAL_PLACES
    ):
        raise InvalidPriceError(
            f"{field} {canonical} has more than {MAX_PRICE_INTEGER_DIGITS} digits before "
            f"the point or {MAX_PRICE_DECIMAL_PLACES} after it"
        )


def check_amount(name: str, value: object) -> None:
    if type(value) is not int or not 0 <= value <= MAX_AMOUNT_MINOR:
        raise InvalidPriceError(
            f"{name} must be an integer from 0 to {MAX_AMOUNT_MINOR} (minor units), not {value!r}"
        )


def _check_tiers(tiers: tuple[Tier, ...]) -> None:
    if not 0 < len(tiers) <= MAX_TIERS:
        raise InvalidPriceError(f"tiers: 1 to {MAX_TIERS} tiers are required")
    lower = _ZERO
    for index, tier in enumerate(tiers):
        check_price(tier.price_per_unit, f"tiers[{index}].price_per_unit")
        check_amount(f"tiers[{index}].flat_fee", tier.flat_fee)
        last = index == len(tiers) - 1
        if tier.up_to is None:
            if not last:
                raise InvalidPriceError(f"tiers[{index}].up_to: only the last tier is open")
            continue
        if last:
            raise InvalidPriceError(f"tiers[{index}].up_to: the last tier must be open (null)")
        if not tier.up_to.is_finite() or tier.up_to <= lower or tier.up_to > MAX_TIER_BOUND:
            raise InvalidPriceError(
                f"tiers[{index}].up_to: bounds must increase, from above 0 to at most "
                f"{MAX_TIER_BOUND}; {canonical_number(tier.up_to)} does not follow {lower}"
            )
        lower = tier.up_to


def _parse_tiers(raw: list[Any], path: str) -> tuple[Tier, ...]:
    tiers: list[Tier] = []
    lower = _ZERO
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidPriceError(f"{where}: must be an object")
        unknown = sorted(set(item) - _TIER_FIELDS)
        if unknown:
            raise InvalidPriceError(f"{where}: unknown field {unknown[0]!r}")
        if item.get("from") is not None:
            start = _bound(item["from"], f"{where}.from")
            if start != lower:
                gap = "leaves a gap after" if start > lower else "overlaps the tier before, to"
                raise InvalidPriceError(f"{where}.from: {start} {gap} {lower}")
        up_to = None if item.get("up_to") is None else _bound(item["up_to"], f"{where}.up_to")
        flat_fee = item.get("flat_fee", 0)
        check_amount(f"{where}.flat_fee", flat_fee)
        unit = parse_price_per_unit(item.get("price_per_unit"), f"{where}.price_per_unit")
        tiers.append(Tier(up_to, unit, flat_fee))
        lower = up_to if up_to is not None else lower
    return tuple(tiers)


def _package(fields: Mapping[str, Any], path: str) -> PriceModel:
    size = fields.get("package_size")
    if type(size) is not int or not 0 < size <= MAX_PACKAGE_SIZE:
        raise InvalidPriceError(
            f"{path}.package_size: a package price needs an integer from 1 to {MAX_PACKAGE_SIZE}"
        )
    price = parse_price_per_unit(fields.get("package_price"), f"{path}.package_price")
    raw_rounding = fields.get("package_rounding") or PackageRounding.UP.value
    try:
        rounding = PackageRounding(raw_rounding)
    except ValueError:
        raise InvalidPriceError(f"{path}.package_rounding must be 'up' or 'down'") from None
    return PriceModel(
        PricingModel.PACKAGE, package_size=size, package_price=price, rounding=rounding
    )


def _bound(raw: object, field: str) -> Decimal:
    if type(raw) is int and 0 <= raw <= MAX_TIER_BOUND:
        return Decimal(raw)
    if isinstance(raw, str) and _BOUND_TEXT.fullmatch(raw):
        return canonical_number(Decimal(raw))
    raise InvalidPriceError(
        f"{field} must be a non-negative integer or decimal string, not {str(raw)[:40]!r}"
    )


def _text(value: Decimal) -> str:
    return format(canonical_number(value), "f")

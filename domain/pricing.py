"""Usage-based prices and the one computation that turns usage into money.

A ``UsagePrice`` is the wire's ``usage_based_price``: a currency, a fixed price
per cycle (an integer in the currency's minor unit), a billing frequency and up
to ``MAX_METERS`` meters, each priced per unit above a free threshold.

``price_per_unit`` is a decimal string ALREADY in the currency's minor unit
(``"2"`` is 2 cents for USD, 2 yen for JPY, 2 fils for KWD), written plainly:
digits, optionally a point and more digits; at most 5 digits before the point
and 12 after it, as the wire documents; zero is allowed (a meter shown but not
charged). So the currency's exponent (``CURRENCY_EXPONENTS``, ISO 4217 minor
units) never enters a computation: it only says how to display an amount
(``format_minor(3000, "USD")`` is ``"30.00"``).

A meter's line (``meter_line``):

- ``chargeable = max(consumed - free_threshold, 0)``
- ``credits_applied = min(credit_units, chargeable)``: credits cover usage above
  the free threshold first.
- ``billed_units = chargeable - credits_applied - forgiven``, where ``forgiven``
  is usage credits did not cover that the credit entitlement's overage settings
  say is not billed (``domain.credits``).
- ``amount_minor = billed_units * price_per_unit``, computed exactly and then
  rounded ONCE to a whole number of minor units with ROUND_HALF_EVEN (banker's
  rounding: a half goes to the even neighbour, so 0.5 -> 0, 1.5 -> 2, 2.5 -> 2).
  This is THE rounding mode of the ledger; nothing else is ever rounded, and an
  invoice's total is the sum of its rounded lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

from domain.credits import CreditLink, CreditTerms
from domain.cycles import Frequency, Interval
from domain.errors import InvalidPriceError
from domain.meter import canonical_number

MAX_METERS = 10
MAX_AMOUNT_MINOR = 10**15  # below 2**53, so every amount survives a JSON double
MAX_FREE_THRESHOLD = 10**18
MAX_PRICE_INTEGER_DIGITS = 5
MAX_PRICE_DECIMAL_PLACES = 12
MAX_METER_ID_LENGTH = 255

_PRICE_TEXT = re.compile(r"([0-9]{1,5})(?:\.([0-9]{1,12}))?")
# Meter quantities carry at most ~1,000 digits (domain.meter's exact context) and
# prices 17, so every product below is exact; Inexact is trapped to prove it.
_EXACT = Context(prec=2000, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_ZERO = Decimal(0)

_ZERO_DECIMAL = "BIF CLP DJF GNF JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMAL = "BHD IQD JOD KWD LYD OMR TND"
_TWO_DECIMAL = (
    "AED ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BWP BYN BZD "
    "CAD CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL GHS GIP GMD "
    "GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR JMD KES KGS KHR KYD KZT LAK LBP LKR LRD LSL "
    "MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB "
    "PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SEK SGD SHP SLE SLL SOS SRD SSP STN "
    "SVC SZL THB TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW"
)
CURRENCY_EXPONENTS: dict[str, int] = {
    code: exponent
    for codes, exponent in ((_TWO_DECIMAL, 2), (_ZERO_DECIMAL, 0), (_THREE_DECIMAL, 3))
    for code in codes.split()
}
"""ISO 4217 minor-unit exponents of every currency the wire's ``Currency`` names."""


def minor_unit_exponent(currency: str) -> int:
    """How many decimal places the currency's minor unit is: USD 2, JPY 0, KWD 3."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise InvalidPriceError(f"currency {currency[:10]!r} is not supported") from None


def format_minor(amount_minor: int, currency: str) -> str:
    """An amount in minor units written in major units: ``3000`` USD is ``"30.00"``."""
    exponent = minor_unit_exponent(currency)
    return format(Decimal(amount_minor).scaleb(-exponent, _EXACT), f".{exponent}f")


def parse_price_per_unit(raw: object) -> Decimal:
    """The wire's ``price_per_unit`` string as an exact, canonical Decimal."""
    if not isinstance(raw, str) or _PRICE_TEXT.fullmatch(raw) is None:
        raise InvalidPriceError(
            f"price_per_unit must be a decimal string in the currency's minor unit, with at "
            f"most {MAX_PRICE_INTEGER_DIGITS} digits before the point and "
            f"{MAX_PRICE_DECIMAL_PLACES} after it (such as '2' or '0.001'), not {str(raw)[:40]!r}"
        )
    return canonical_number(Decimal(raw))


@dataclass(frozen=True, slots=True)
class MeterPrice:
    """What one unit of a meter costs (in minor units) above its free threshold."""

    meter_id: str
    price_per_unit: Decimal
    free_threshold: int = 0
    credit: CreditLink | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.meter_id, str) or not 0 < len(self.meter_id) <= MAX_METER_ID_LENGTH:
            raise InvalidPriceError(f"meter_id must be 1 to {MAX_METER_ID_LENGTH} characters")
        _check_price(self.price_per_unit)
        object.__setattr__(self, "price_per_unit", canonical_number(self.price_per_unit))
        _check_integer("free_threshold", self.free_threshold, MAX_FREE_THRESHOLD)

    @classmethod
    def parse(cls, meter_id: str, price_per_unit: object, free_threshold: int | None) -> MeterPrice:
        """From the wire's ``AddMeterToPrice`` fields; a missing threshold is 0."""
        price = parse_price_per_unit(price_per_unit)
        return cls(meter_id, price, 0 if free_threshold is None else free_threshold)


@dataclass(frozen=True, slots=True)
class UsagePrice:
    """A usage-based price, as in force for whole cycles."""

    currency: str
    fixed_price: int
    frequency: Frequency
    meters: tuple[MeterPrice, ...] = ()
    credits: tuple[CreditTerms, ...] = ()

    def __post_init__(self) -> None:
        minor_unit_exponent(self.currency)
        attached = [terms.entitlement_id for terms in self.credits]
        if len(set(attached)) != len(attached):
            raise InvalidPriceError("credit_entitlements: each entitlement may be attached once")
        for meter in self.meters:
            if meter.credit is not None and meter.credit.entitlement_id not in attached:
                raise InvalidPriceError(
                    f"meters: {meter.meter_id!r} draws on credit entitlement "
                    f"{meter.credit.entitlement_id!r}, which the product does not attach"
                )
        _check_integer("fixed_price", self.fixed_price, MAX_AMOUNT_MINOR)
        if len(self.meters) > MAX_METERS:
            raise InvalidPriceError(f"meters: a price has at most {MAX_METERS} meters")
        ids = [meter.meter_id for meter in self.meters]
        if len(set(ids)) != len(ids):
            raise InvalidPriceError("meters: each meter may be priced once")

    @classmethod
    def of(
        cls,
        currency: str,
        fixed_price: int,
        interval: Interval,
        count: int,
        meters: Iterable[MeterPrice] = (),
        credits: Iterable[CreditTerms] = (),
    ) -> UsagePrice:
        return cls(currency, fixed_price, Frequency(interval, count), tuple(meters), tuple(credits))

    def terms(self, entitlement_id: str) -> CreditTerms | None:
        return next((t for t in self.credits if t.entitlement_id == entitlement_id), None)

    def meter(self, meter_id: str) -> MeterPrice | None:
        return next((meter for meter in self.meters if meter.meter_id == meter_id), None)


@dataclass(frozen=True, slots=True)
class Line:
    """One meter's usage in one cycle, priced. Quantities are canonical Decimals."""

    consumed: Decimal
    free_threshold: int
    chargeable: Decimal
    credits_applied: Decimal
    billed_units: Decimal
    unit_price: Decimal
    amount_minor: int
    forgiven: Decimal = _ZERO


def chargeable_units(consumed: Decimal, free_threshold: int) -> Decimal:
    """What of ``consumed`` lies above the free threshold."""
    return canonical_number(max(_EXACT.subtract(consumed, free_threshold), _ZERO))


def meter_line(
    consumed: Decimal,
    free_threshold: int,
    price_per_unit: Decimal,
    credit_units: Decimal | int = 0,
    forgiven_units: Decimal | int = 0,
) -> Line:
    """Price ``consumed`` units; ``credit_units`` of credit cover what they can first.

    ``forgiven_units`` of what credit did not cover are not billed (capped at that).
    """
    if not _is_count(credit_units):
        raise InvalidPriceError(f"credit units must be a non-negative number, not {credit_units}")
    if not _is_count(forgiven_units):
        raise InvalidPriceError(f"forgiven units must be non-negative, not {forgiven_units}")
    chargeable = chargeable_units(consumed, free_threshold)
    credits_applied = canonical_number(min(Decimal(credit_units), chargeable))
    uncovered = _EXACT.subtract(chargeable, credits_applied)
    forgiven = canonical_number(min(Decimal(forgiven_units), uncovered))
    billed = canonical_number(_EXACT.subtract(uncovered, forgiven))
    amount = round_minor(_EXACT.multiply(billed, price_per_unit))
    return Line(
        canonical_number(consumed),
        free_threshold,
        chargeable,
        credits_applied,
        billed,
        canonical_number(price_per_unit),
        amount,
        forgiven,
    )


def round_minor(amount: Decimal) -> int:
    """``amount`` minor units rounded to a whole one, half to even: the ledger's one rounding."""
    return int(amount.to_integral_value(rounding=ROUND_HALF_EVEN))


def _is_count(units: object) -> bool:
    if type(units) is int:
        return units >= 0
    return isinstance(units, Decimal) and units.is_finite() and units >= 0


def _check_price(price: object) -> None:
    if not isinstance(price, Decimal) or not price.is_finite() or price < 0:
        raise InvalidPriceError("price_per_unit must be a finite, non-negative Decimal")
    canonical = canonical_number(price)
    exponent = canonical.as_tuple().exponent
    if canonical.adjusted() >= MAX_PRICE_INTEGER_DIGITS or (
        isinstance(exponent, int) and exponent < -MAX_PRICE_DECIMAL_PLACES
    ):
        raise InvalidPriceError(
            f"price_per_unit {canonical} has more than {MAX_PRICE_INTEGER_DIGITS} digits before "
            f"the point or {MAX_PRICE_DECIMAL_PLACES} after it"
        )


def _check_integer(name: str, value: object, limit: int) -> None:
    if type(value) is not int or not 0 <= value <= limit:
        raise InvalidPriceError(f"{name} must be an integer from 0 to {limit}, not {value!r}")

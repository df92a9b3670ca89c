"""Usage-based prices and the one computation that turns usage into money.

A ``UsagePrice`` is the wire's ``usage_based_price``: a currency, a fixed price
per cycle (an integer in the currency's minor unit), a billing frequency and up
to ``MAX_METERS`` meters, each priced above a free threshold.

``price_per_unit`` is a decimal string ALREADY in the currency's minor unit
(``"2"`` is 2 cents for USD, 2 yen for JPY, 2 fils for KWD), written plainly:
digits, optionally a point and more digits; at most 5 digits before the point
and 12 after it, as the wire documents; zero is allowed (a meter shown but not
charged). So the currency's exponent (``CURRENCY_EXPONENTS``, ISO 4217 minor
units) never enters a computation: it only says how to display an amount
(``format_minor(3000, "USD")`` is ``"30.00"``).

A meter's price (``MeterPrice``) is per unit, as the wire has it, or one of
our extension models (graduated or volume tiers, packages: ``domain.price_model``),
optionally bounded by a minimum and maximum amount and grouped by a metadata key
with a model per value. ``domain.line`` turns a cycle's usage into a priced line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import (
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
from domain.price_model import (
    MAX_AMOUNT_MINOR,
    PriceModel,
    PricingModel,
    check_amount,
    check_price,
)
from domain.price_model import parse_price_per_unit as parse_price_per_unit  # noqa: PLC0414 - re-exported

MAX_METERS = 10
MAX_FREE_THRESHOLD = 10**18
MAX_METER_ID_LENGTH = 255
MAX_GROUPS = 50  # values priced apart on one line
MAX_GROUP_KEY_LENGTH = 255
MAX_SUB_LINES = 100  # sub-lines of a grouped line; further unlisted values share one

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


@dataclass(frozen=True, slots=True)
class GroupPrice:
    """The model for the units whose ``group_by`` metadata value is ``value``."""

    value: str
    model: PriceModel


@dataclass(frozen=True, slots=True)
class MeterPrice:
    """How a meter's usage above its free threshold is priced.

    ``price_per_unit`` is the per-unit price (the SDK's field); ``model``, when
    given, prices otherwise (``domain.price_model``). ``minimum_minor`` and
    ``maximum_minor`` bound the line's rounded amount. With ``group_by``, each
    value of that metadata key is priced apart, by its ``groups`` entry or else
    by the line's own model (``price_line``).
    """

    meter_id: str
    price_per_unit: Decimal
    free_threshold: int = 0
    credit: CreditLink | None = None
    model: PriceModel | None = None
    minimum_minor: int | None = None
    maximum_minor: int | None = None
    group_by: str | None = None
    groups: tuple[GroupPrice, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.meter_id, str) or not 0 < len(self.meter_id) <= MAX_METER_ID_LENGTH:
            raise InvalidPriceError(f"meter_id must be 1 to {MAX_METER_ID_LENGTH} characters")
        check_price(self.price_per_unit, "price_per_unit")
        object.__setattr__(self, "price_per_unit", canonical_number(self.price_per_unit))
        _check_integer("free_threshold", self.free_threshold, MAX_FREE_THRESHOLD)
        for name in ("minimum_minor", "maximum_minor"):
            if getattr(self, name) is not None:
                check_amount(name.replace("_minor", "_amount"), getattr(self, name))
        if (
            self.minimum_minor is not None
            and self.maximum_minor is not None
            and self.minimum_minor > self.maximum_minor
        ):
            raise InvalidPriceError("maximum_amount must not be below minimum_amount")
        self._check_groups()

    def _check_groups(self) -> None:
        if self.groups and self.group_by is None:
            raise InvalidPriceError("groups: prices per value need a group_by key")
        if self.group_by is not None and not 0 < len(self.group_by) <= MAX_GROUP_KEY_LENGTH:
            raise InvalidPriceError(f"group_by must be a key of 1 to {MAX_GROUP_KEY_LENGTH} chars")
        if len(self.groups) > MAX_GROUPS:
            raise InvalidPriceError(f"groups: at most {MAX_GROUPS} values are priced apart")
        values = [group.value for group in self.groups]
        if len(set(values)) != len(values):
            raise InvalidPriceError("groups: each value may be priced once")

    @classmethod
    def parse(cls, meter_id: str, price_per_unit: object, free_threshold: int | None) -> MeterPrice:
        """From the wire's ``AddMeterToPrice`` fields; a missing threshold is 0."""
        price = parse_price_per_unit(price_per_unit)
        return cls(meter_id, price, 0 if free_threshold is None else free_threshold)

    @property
    def pricing(self) -> PriceModel:
        """The line's own model (for a grouped line: the default for unlisted values)."""
        return self.model if self.model is not None else PriceModel.per_unit(self.price_per_unit)

    @property
    def is_plain(self) -> bool:
        """Priced per unit with no bounds and no groups: the SDK's own line."""
        return (self.model is None or self.model.kind is PricingModel.PER_UNIT) and (
            self.minimum_minor,
            self.maximum_minor,
            self.group_by,
        ) == (None, None, None)

    def model_for(self, value: str | None) -> PriceModel:
        listed = next((group.model for group in self.groups if group.value == value), None)
        return self.pricing if listed is None else listed


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


def _check_integer(name: str, value: object, limit: int) -> None:
    if type(value) is not int or not 0 <= value <= limit:
        raise InvalidPriceError(f"{name} must be an integer from 0 to {limit}, not {value!r}")

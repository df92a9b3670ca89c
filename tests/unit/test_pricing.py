"""Prices and lines: the worked examples, the one rounding, and what a price may be."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any, get_args

import pytest
from dodopayments.types.currency import Currency
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.cycles import Interval
from domain.errors import InvalidBillingFrequencyError, InvalidPriceError
from domain.line import Line, meter_line
from domain.pricing import (
    CURRENCY_EXPONENTS,
    MAX_AMOUNT_MINOR,
    MeterPrice,
    UsagePrice,
    format_minor,
    minor_unit_exponent,
    parse_price_per_unit,
)

LAWS = settings(max_examples=200, deadline=None)
GB = 10**9


def price(raw: str) -> Decimal:
    return parse_price_per_unit(raw)


def test_2500_calls_with_1000_free_at_2_cents_is_30_dollars() -> None:
    line = meter_line(Decimal(2500), 1000, price("2"))
    assert line == Line(
        Decimal(2500), 1000, Decimal(1500), Decimal(0), Decimal(1500), Decimal(2), 3000
    )
    assert format_minor(line.amount_minor, "USD") == "30.00"


def test_a_tenth_of_a_cent_per_call_after_10000_free() -> None:
    line = meter_line(Decimal(25_000), 10_000, price("0.1"))
    assert (line.billed_units, line.amount_minor) == (Decimal(15_000), 1500)
    assert format_minor(line.amount_minor, "USD") == "15.00"


def test_standard_and_hd_images_are_priced_by_their_own_meters() -> None:
    standard = meter_line(Decimal(120), 0, price("4"))
    hd = meter_line(Decimal(35), 0, price("8"))
    assert (standard.amount_minor, hd.amount_minor) == (480, 280)


def test_5_dollars_per_gb_after_10_gb_free_metered_in_bytes_rounds_once() -> None:
    per_byte = price("0.000000500000")  # 500 cents / 1e9 bytes
    assert per_byte == Decimal("5E-7")
    line = meter_line(Decimal(12_345_678_901), 10 * GB, per_byte)
    assert line.chargeable == Decimal(2_345_678_901)
    # Exactly 1172.8394505 cents, rounded once; rounding to 2.35 GB first would give 1175.
    assert line.amount_minor == 1173
    assert format_minor(line.amount_minor, "USD") == "11.73"


def test_a_cent_per_sms() -> None:
    assert meter_line(Decimal(1234), 0, price("1")).amount_minor == 1234
    assert format_minor(1234, "USD") == "12.34"


@pytest.mark.parametrize(
    ("units", "amount"), [(1, 0), (3, 2), (5, 2), (7, 4), (9, 4), (2, 1), (11, 6)]
)
def test_half_a_minor_unit_rounds_to_the_even_neighbour(units: int, amount: int) -> None:
    # units * 0.5: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4, 4.5 -> 4, 1 -> 1, 5.5 -> 6
    assert meter_line(Decimal(units), 0, price("0.5")).amount_minor == amount


def test_amounts_just_off_the_half_round_to_the_nearest() -> None:
    assert meter_line(Decimal(1), 0, price("0.500000000001")).amount_minor == 1
    assert meter_line(Decimal(1), 0, price("2.499999999999")).amount_minor == 2


def test_usage_within_the_free_threshold_costs_nothing() -> None:
    assert meter_line(Decimal(1000), 1000, price("2")).chargeable == 0
    assert meter_line(Decimal("-3.5"), 0, price("2")).amount_minor == 0


def test_credits_cover_chargeable_units_before_they_are_billed() -> None:
    line = meter_line(Decimal(2500), 1000, price("2"), credit_units=400)
    assert (line.chargeable, line.credits_applied, line.billed_units) == (1500, 400, 1100)
    assert line.amount_minor == 2200


def test_credits_beyond_the_chargeable_units_are_not_applied() -> None:
    line = meter_line(Decimal(1200), 1000, price("2"), credit_units=Decimal("500.5"))
    assert (line.credits_applied, line.billed_units, line.amount_minor) == (200, 0, 0)


def test_fractional_credits_apply_exactly() -> None:
    line = meter_line(Decimal("10.25"), 0, price("3"), credit_units=Decimal("0.75"))
    assert (line.billed_units, line.amount_minor) == (Decimal("9.5"), 28)


@pytest.mark.parametrize(
    "credits", [-1, Decimal("-0.1"), Decimal("NaN"), Decimal("Infinity"), True]
)
def test_credit_units_must_be_a_non_negative_number(credits: Any) -> None:
    with pytest.raises(InvalidPriceError):
        meter_line(Decimal(10), 0, price("1"), credit_units=credits)


def test_line_quantities_are_canonical() -> None:
    line = meter_line(Decimal("2500.00"), 1000, Decimal("2.50"))
    assert [str(x) for x in (line.consumed, line.chargeable, line.unit_price)] == [
        "2500",
        "1500",
        "2.5",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2", "2"),
        ("0.1", "0.1"),
        ("0", "0"),
        ("2.50", "2.5"),
        ("0.000000000001", "1E-12"),
        ("99999.999999999999", "99999.999999999999"),
        ("00002", "2"),
    ],
)
def test_prices_per_unit_are_read_exactly(raw: str, expected: str) -> None:
    assert parse_price_per_unit(raw) == Decimal(expected)
    assert str(parse_price_per_unit(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "-1",
        "+1",
        "1e-3",
        "1.",
        ".5",
        "0.0000000000001",
        "100000",
        " 1",
        "1 ",
        "1_000",
        "NaN",
        "Infinity",
        "\u0661",  # an Arabic-Indic digit one
        2,
        None,
    ],
)
def test_malformed_prices_per_unit_are_refused(raw: Any) -> None:
    with pytest.raises(InvalidPriceError) as caught:
        parse_price_per_unit(raw)
    assert caught.value.code == "invalid_price"


@pytest.mark.parametrize(
    "value", [Decimal("NaN"), Decimal("-1"), Decimal("1E-13"), Decimal("1E5"), Decimal("sNaN"), 2]
)
def test_meter_prices_built_in_code_are_checked_too(value: Any) -> None:
    with pytest.raises(InvalidPriceError):
        MeterPrice("m", value)


def test_meter_prices_are_canonical_and_default_to_no_free_units() -> None:
    meter = MeterPrice("m", Decimal("1.0000000000000"))
    assert (str(meter.price_per_unit), meter.free_threshold) == ("1", 0)
    assert MeterPrice.parse("m", "0.50", None) == MeterPrice("m", Decimal("0.5"), 0)


@pytest.mark.parametrize("threshold", [-1, True, 1.5, 10**18 + 1])
def test_free_thresholds_are_non_negative_integers(threshold: Any) -> None:
    with pytest.raises(InvalidPriceError):
        MeterPrice("m", Decimal(1), threshold)


def test_meter_ids_are_named() -> None:
    with pytest.raises(InvalidPriceError):
        MeterPrice("", Decimal(1))


def usage_price(**changes: Any) -> UsagePrice:
    fields: dict[str, Any] = {
        "currency": "USD",
        "fixed_price": 0,
        "interval": Interval.MONTH,
        "count": 1,
        "meters": [MeterPrice("m", Decimal(1))],
    }
    return UsagePrice.of(**(fields | changes))


def test_a_usage_price_has_up_to_ten_distinct_meters() -> None:
    ten = [MeterPrice(f"m{i}", Decimal(1)) for i in range(10)]
    assert len(usage_price(meters=ten).meters) == 10
    assert usage_price(meters=ten).meter("m3") == ten[3]
    assert usage_price(meters=ten).meter("x") is None
    with pytest.raises(InvalidPriceError):
        usage_price(meters=[*ten, MeterPrice("m10", Decimal(1))])
    with pytest.raises(InvalidPriceError):
        usage_price(meters=[MeterPrice("m", Decimal(1)), MeterPrice("m", Decimal(2))])


@pytest.mark.parametrize(
    "changes",
    [
        {"currency": "usd"},
        {"currency": "XXX"},
        {"fixed_price": -1},
        {"fixed_price": True},
        {"fixed_price": 1.0},
        {"fixed_price": MAX_AMOUNT_MINOR + 1},
    ],
)
def test_malformed_usage_prices_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidPriceError):
        usage_price(**changes)


def test_a_usage_price_checks_its_billing_frequency() -> None:
    with pytest.raises(InvalidBillingFrequencyError):
        usage_price(count=0)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("INR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("BHD", 3),
        ("KWD", 3),
    ],
)
def test_minor_unit_exponents_follow_iso_4217(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent


def test_every_currency_of_the_wire_has_an_exponent_and_no_other() -> None:
    assert set(CURRENCY_EXPONENTS) == set(get_args(Currency))


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (3000, "USD", "30.00"),
        (5, "EUR", "0.05"),
        (-5, "USD", "-0.05"),
        (500, "JPY", "500"),
        (1234, "KWD", "1.234"),
    ],
)
def test_amounts_are_shown_in_major_units(amount: int, currency: str, shown: str) -> None:
    assert format_minor(amount, currency) == shown


quantities = st.decimals(min_value=-(10**12), max_value=10**15, places=6, allow_nan=False)
# Every price the wire allows: up to 5 digits before the point and 12 after it.
prices = st.integers(0, 10**17 - 1).map(lambda units: Decimal(units).scaleb(-12))


@LAWS
@given(quantities, st.integers(0, 10**12), prices, st.integers(0, 10**14))
def test_a_line_is_the_exact_product_rounded_half_to_even_once(
    consumed: Decimal, free: int, unit_price: Decimal, credits: int
) -> None:
    line = meter_line(consumed, free, unit_price, credit_units=credits)
    chargeable = max(Fraction(consumed) - free, Fraction(0))
    assert Fraction(line.chargeable) == chargeable
    assert line.credits_applied + line.billed_units == line.chargeable
    assert Fraction(line.credits_applied) == min(Fraction(credits), chargeable)
    # Python rounds a Fraction half to even: an independent reference.
    assert line.amount_minor == round(Fraction(line.billed_units) * Fraction(unit_price))

"""Price models and grouped lines: the formulas, their laws (hypothesis), what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.cycles import Cycle, Interval, cycle
from domain.errors import InvalidPriceError, InvoiceMismatchError
from domain.invoice import adjustment, fold_invoice
from domain.line import price_line
from domain.meter import MeterSpec, UsageRecord
from domain.price_model import (
    PackageRounding,
    PriceModel,
    PricingModel,
    Tier,
    parse_price_model,
)
from domain.pricing import MAX_SUB_LINES, GroupPrice, MeterPrice, UsagePrice
from domain.product import parse_usage_price

LAWS = settings(max_examples=200, deadline=None)
FEW = settings(max_examples=50, deadline=None)
TIERS = (Tier(Decimal(1000), Decimal(2)), Tier(None, Decimal(1)))
CYCLE: Cycle = cycle(datetime(2026, 1, 1, tzinfo=UTC), Interval.MONTH, 1, 0)


def model(kind: PricingModel, tiers: tuple[Tier, ...] = TIERS) -> PriceModel:
    return PriceModel(kind, tiers=tiers)


def package(size: int, price: str, rounding: PackageRounding = PackageRounding.UP) -> PriceModel:
    return PriceModel(
        PricingModel.PACKAGE, package_size=size, package_price=Decimal(price), rounding=rounding
    )


prices = st.decimals(0, 99999, places=3, allow_nan=False, allow_infinity=False)
units = st.one_of(
    st.integers(0, 10**7).map(Decimal),
    st.decimals(0, 10**6, places=4, allow_nan=False, allow_infinity=False),
)


@st.composite
def tier_lists(draw: st.DrawFn) -> tuple[Tier, ...]:
    bounds = sorted(set(draw(st.lists(st.integers(1, 10**6), min_size=0, max_size=5))))
    ups: list[Decimal | None] = [Decimal(b) for b in bounds]
    ups.append(None)
    return tuple(Tier(up, draw(prices), draw(st.integers(0, 10**4))) for up in ups)


def test_graduated_2500_units_over_two_tiers() -> None:
    charge = model(PricingModel.GRADUATED).charge(Decimal(2500))
    assert charge.amount == 3500
    assert [(p.units, p.amount) for p in charge.tiers] == [(1000, 2000), (1500, 1500)]


def test_volume_2500_units_all_at_the_tier_they_land_in() -> None:
    assert model(PricingModel.VOLUME).charge(Decimal(2500)).amount == 2500
    assert model(PricingModel.VOLUME).charge(Decimal(1000)).amount == 2000  # a bound is inclusive


def test_volume_is_not_monotone_with_falling_tier_prices() -> None:
    volume = model(PricingModel.VOLUME)
    assert volume.charge(Decimal(1001)).amount < volume.charge(Decimal(1000)).amount


def test_packages_round_up_or_down() -> None:
    assert package(1000, "500").charge(Decimal(2500)).amount == 1500
    assert package(1000, "500", PackageRounding.DOWN).charge(Decimal(2500)).amount == 1000
    assert package(1000, "500").charge(Decimal(2000)).packages == 2


def test_a_tier_flat_fee_is_charged_once_any_unit_falls_in_it() -> None:
    tiers = (Tier(Decimal(10), Decimal(0), 500), Tier(None, Decimal(1), 200))
    graduated = model(PricingModel.GRADUATED, tiers)
    assert [graduated.charge(Decimal(n)).amount for n in (0, 1, 10, 11)] == [0, 500, 500, 701]
    volume = model(PricingModel.VOLUME, tiers)
    assert [volume.charge(Decimal(n)).amount for n in (0, 10, 11)] == [0, 500, 211]


@LAWS
@given(tier_lists(), units)
def test_graduated_total_is_the_sum_over_its_tiers(tiers, quantity) -> None:
    charge = model(PricingModel.GRADUATED, tiers).charge(quantity)
    assert charge.amount == sum((part.amount for part in charge.tiers), Decimal(0))
    assert sum((part.units for part in charge.tiers), Decimal(0)) == quantity
    for part in charge.tiers:
        tier = tiers[part.index]
        assert part.amount == part.units * tier.price_per_unit + tier.flat_fee


@LAWS
@given(tier_lists(), units)
def test_volume_is_the_tier_price_times_the_total(tiers, quantity) -> None:
    charge = model(PricingModel.VOLUME, tiers).charge(quantity)
    landed = next(t for t in tiers if t.up_to is None or quantity <= t.up_to)
    expected = quantity * landed.price_per_unit + landed.flat_fee if quantity else 0
    assert charge.amount == expected


@LAWS
@given(st.integers(1, 10**6), prices, units, st.sampled_from(list(PackageRounding)))
def test_packages_are_the_quantity_over_the_size_rounded_as_configured(
    size, price, quantity, rounding
) -> None:
    charge = package(size, str(price), rounding).charge(quantity)
    mode = ROUND_CEILING if rounding is PackageRounding.UP else ROUND_FLOOR
    expected = (quantity / size).to_integral_value(rounding=mode)
    assert charge.packages == expected
    assert charge.amount == expected * price


@LAWS
@given(
    st.one_of(
        tier_lists().map(lambda tiers: model(PricingModel.GRADUATED, tiers)),
        st.builds(lambda s, p: package(s, str(p)), st.integers(1, 10**4), prices),
        prices.map(PriceModel.per_unit),
    ),
    units,
    units,
)
def test_graduated_packages_and_per_unit_are_monotone_in_usage(priced, one, other) -> None:
    low, high = sorted((one, other))
    assert priced.charge(low).amount <= priced.charge(high).amount


@LAWS
@given(tier_lists(), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_tiers_price_what_the_free_threshold_and_credits_leave(
    tiers, consumed, free, credits
) -> None:
    tiered = model(PricingModel.GRADUATED, tiers)
    line = price_line(Decimal(consumed), MeterPrice("m", Decimal(0), free, model=tiered), credits)
    billed = max(max(consumed - free, 0) - credits, 0)
    assert line.billed_units == billed
    assert line.amount_minor == round(tiered.charge(Decimal(billed)).amount)


def spec() -> MeterSpec:
    return MeterSpec.parse("api", {"type": "count"}, None)


def records(count: int, start: int = 0, **metadata: str) -> list[UsageRecord]:
    at = CYCLE.start + timedelta(days=3)
    return [(at, f"e{start + i}", "api", metadata) for i in range(count)]


def usage_price(*meters: MeterPrice) -> UsagePrice:
    return UsagePrice.of("USD", 0, Interval.MONTH, 1, meters)


@FEW
@given(
    tier_lists(),
    st.sampled_from([PricingModel.GRADUATED, PricingModel.VOLUME]),
    st.integers(0, 3000),
    st.integers(0, 3000),
    st.integers(0, 1500),
)
def test_an_adjustment_is_the_whole_line_at_the_new_cut_minus_at_the_old(
    tiers, kind, before, late, free
) -> None:
    price = usage_price(MeterPrice("m", Decimal(0), free, model=model(kind, tiers)))
    events = records(before)
    old = fold_invoice(CYCLE, price, {"m": spec()}, events, cut=1)
    new = fold_invoice(CYCLE, price, {"m": spec()}, events + records(late, before), cut=2)
    change = adjustment(old, new)
    assert old.total_minor + change.total_minor == new.total_minor
    assert change.total_minor == new.lines[0].amount_minor - old.lines[0].amount_minor


def grouped(**extra: object) -> MeterPrice:
    return MeterPrice(
        "m",
        Decimal(4),
        group_by="quality",
        groups=(GroupPrice("hd", PriceModel.per_unit(Decimal(8))),),
        **extra,  # type: ignore[arg-type]
    )


def test_a_grouped_line_shows_a_sub_line_per_value_listed_values_first() -> None:
    line = price_line(Decimal(17), grouped(), groups={"sd": Decimal(10), "hd": Decimal(5), None: 2})
    assert [(s.value, s.consumed, s.amount_minor) for s in line.sub_lines] == [
        ("hd", 5, 40),
        ("sd", 10, 40),
        (None, 2, 8),  # events without the key: the line's own price
    ]
    assert line.amount_minor == 88


def test_units_not_billed_are_taken_from_the_sub_lines_in_order() -> None:
    line = price_line(
        Decimal(15), grouped(free_threshold=7), groups={"sd": Decimal(10), "hd": Decimal(5)}
    )
    assert [(s.value, s.billed_units) for s in line.sub_lines] == [("hd", 0), ("sd", 8)]
    assert line.amount_minor == 32


def test_a_grouped_line_held_within_its_minimum_and_maximum() -> None:
    line = price_line(Decimal(5), grouped(maximum_minor=30), groups={"hd": Decimal(5)})
    assert (line.priced_minor, line.amount_minor) == (40, 30)


def test_groups_that_do_not_add_up_to_the_line_are_refused() -> None:
    with pytest.raises(InvoiceMismatchError, match="add up to 5, not 6"):
        price_line(Decimal(6), grouped(), groups={"hd": Decimal(5)})


def test_values_past_the_sub_line_limit_share_one_sub_line() -> None:
    quantities = {f"v{i:04}": Decimal(1) for i in range(MAX_SUB_LINES + 20)}
    line = price_line(Decimal(len(quantities)), grouped(), groups=quantities)
    assert len(line.sub_lines) == MAX_SUB_LINES
    last = line.sub_lines[-1]
    assert (last.value, last.rest, last.consumed) == (None, 22, 22)  # "hd" is listed, with 0
    assert line.amount_minor == len(quantities) * 4


def test_the_grouped_fold_matches_pricing_each_value_as_its_own_meter() -> None:
    price = usage_price(grouped())
    events = records(10, quality="sd") + records(5, 10, quality="hd")
    invoice = fold_invoice(CYCLE, price, {"m": spec()}, events, cut=1)
    assert invoice.total_minor == 10 * 4 + 5 * 8
    assert b'"group_by":"quality"' in invoice.canonical_bytes()


def test_a_plain_line_keeps_its_canonical_form() -> None:
    price = usage_price(MeterPrice("m", Decimal(2), 10))
    invoice = fold_invoice(CYCLE, price, {"m": spec()}, records(25), cut=1)
    assert b'"lines":[{"amount_minor":30,"billed_units":"15","chargeable":"15",' in (
        invoice.canonical_bytes()
    )
    assert b"pricing_model" not in invoice.canonical_bytes()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pricing_model": "graduated", "tiers": []}, r"m\.tiers: a graduated price needs 1 to"),
        (
            {"pricing_model": "volume", "tiers": [{"up_to": 5, "price_per_unit": "1"}]},
            r"m\.tiers\[0\]\.up_to: the last tier must be open",
        ),
        (
            {
                "pricing_model": "volume",
                "tiers": [
                    {"up_to": None, "price_per_unit": "1"},
                    {"up_to": None, "price_per_unit": "1"},
                ],
            },
            r"m\.tiers\[0\]\.up_to: only the last tier is open",
        ),
        (
            {
                "pricing_model": "graduated",
                "tiers": [
                    {"up_to": 10, "price_per_unit": "1"},
                    {"from": 5, "up_to": None, "price_per_unit": "1"},
                ],
            },
            r"m\.tiers\[1\]\.from: 5 overlaps the tier before",
        ),
        (
            {
                "pricing_model": "graduated",
                "tiers": [{"up_to": None, "price_per_unit": "1", "flat_fee": -1}],
            },
            r"m\.tiers\[0\]\.flat_fee must be an integer",
        ),
        ({"pricing_model": "package", "package_size": 0, "package_price": "1"}, "package_size"),
        (
            {
                "pricing_model": "package",
                "package_size": 3,
                "package_price": "1",
                "package_rounding": "nearest",
            },
            r"m\.package_rounding must be 'up' or 'down'",
        ),
    ],
)
def test_inconsistent_models_are_refused_naming_the_field(fields, message) -> None:
    with pytest.raises(InvalidPriceError, match=message):
        parse_price_model(fields, "m")


def test_a_stored_price_parses_back_to_the_same_models() -> None:
    raw = {
        "type": "usage_based_price",
        "currency": "USD",
        "fixed_price": 0,
        "payment_frequency_count": 1,
        "payment_frequency_interval": "Month",
        "meters": [
            {
                "meter_id": "a",
                "pricing_model": "graduated",
                "tiers": [
                    {"up_to": "1000.5", "price_per_unit": "2", "flat_fee": 3},
                    {"up_to": None, "price_per_unit": "1"},
                ],
                "minimum_amount": 10,
            },
            {
                "meter_id": "b",
                "price_per_unit": "4",
                "group_by": "q",
                "groups": [
                    {
                        "value": "hd",
                        "pricing_model": "package",
                        "package_size": 10,
                        "package_price": "5",
                    }
                ],
            },
        ],
    }
    price, wire = parse_usage_price(raw)
    again, rewired = parse_usage_price(wire)
    assert (again, rewired) == (price, wire)
    assert price.meters[0].model == model(
        PricingModel.GRADUATED, (Tier(Decimal("1000.5"), Decimal(2), 3), Tier(None, Decimal(1)))
    )


FORTY_DIGITS = Decimal("2.500000000000000000000000000000000000001")  # legal metadata


def test_tier_amounts_add_up_exactly_past_28_digits() -> None:
    one_tier = PriceModel(PricingModel.GRADUATED, tiers=(Tier(None, Decimal(1)),))
    line = price_line(FORTY_DIGITS, MeterPrice("m", Decimal(0), model=one_tier))
    assert line.tiers[0].amount == FORTY_DIGITS
    assert line.amount_minor == 3  # as per unit at 1: not 2.5 rounded half to even


def test_grouped_quantities_add_up_exactly_past_28_digits() -> None:
    big = Decimal(10) ** 40
    total = Context(prec=100).add(big, FORTY_DIGITS)
    line = price_line(total, grouped(), groups={"hd": big, "sd": FORTY_DIGITS})
    assert [s.consumed for s in line.sub_lines] == [big, FORTY_DIGITS]

"""Credit drawdown in its fixed order, exactly; rollover of unused credit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.credits import Deduction, Grant, RolloverRule, draw_down, drawdown_order
from domain.errors import InvalidCreditError

LAWS = settings(max_examples=200, deadline=None)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=10)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def spent(grants: list[Grant], units: Decimal | int, at: datetime = NOW) -> list[tuple[str, Any]]:
    return [(d.grant_id, d.units) for d in draw_down(grants, units, at).deductions]


def test_the_soonest_expiring_grant_is_spent_first_and_never_expiring_last() -> None:
    grants = [
        Grant("forever", Decimal(100), day(0)),
        Grant("late", Decimal(10), day(1), day(40)),
        Grant("soon", Decimal(10), day(5), day(20)),
    ]
    assert spent(grants, 25) == [("soon", 10), ("late", 10), ("forever", 5)]


def test_among_grants_expiring_together_the_oldest_goes_first_then_the_smallest_id() -> None:
    grants = [
        Grant("b", Decimal(5), day(1), day(30)),
        Grant("a", Decimal(5), day(1), day(30)),
        Grant("z-older", Decimal(5), day(0), day(30)),
    ]
    assert spent(grants, 12) == [("z-older", 5), ("a", 5), ("b", 2)]


def test_never_expiring_grants_go_oldest_first() -> None:
    grants = [Grant("new", Decimal(5), day(2)), Grant("old", Decimal(5), day(1))]
    assert spent(grants, 7) == [("old", 5), ("new", 2)]


def test_what_the_grants_cannot_cover_is_overage() -> None:
    result = draw_down([Grant("g", Decimal("2.5"), day(0))], Decimal("4.25"), NOW)
    assert result.deductions == (Deduction("g", Decimal("2.5"), Decimal("2.5"), Decimal(0)),)
    assert (result.covered, result.overage) == (Decimal("2.5"), Decimal("1.75"))


def test_grants_expired_or_not_yet_granted_are_not_spent() -> None:
    grants = [
        Grant("expired", Decimal(5), day(0), NOW),
        Grant("future", Decimal(5), NOW + timedelta(microseconds=1)),
        Grant("live", Decimal(5), NOW, NOW + timedelta(microseconds=1)),
        Grant("empty", Decimal(0), day(0), day(11)),
    ]
    assert spent(grants, 8) == [("live", 5)]
    assert draw_down(grants, 8, NOW).overage == 3


def test_drawing_nothing_touches_no_grant() -> None:
    assert draw_down([Grant("g", Decimal(5), day(0))], 0, NOW).deductions == ()


@pytest.mark.parametrize("units", [-1, Decimal("-0.5"), Decimal("NaN"), 1.5, True])
def test_units_must_be_a_non_negative_number(units: Any) -> None:
    with pytest.raises(InvalidCreditError):
        draw_down([], units, NOW)


def test_malformed_grants_are_refused() -> None:
    with pytest.raises(InvalidCreditError):
        Grant("", Decimal(1), day(0))
    with pytest.raises(InvalidCreditError):
        Grant("g", Decimal(-1), day(0))
    with pytest.raises(InvalidCreditError):
        Grant("g", Decimal(1), day(1), day(1))
    with pytest.raises(InvalidCreditError) as caught:
        drawdown_order([Grant("g", Decimal(1), day(0)), Grant("g", Decimal(2), day(1))])
    assert caught.value.code == "invalid_credit"


grant_lists = st.lists(
    st.builds(
        lambda balance, granted, life: (
            balance,
            day(granted),
            None if life is None else day(granted + life),
        ),
        st.one_of(st.integers(0, 50), st.decimals(0, 50, places=3)),
        st.integers(0, 12),
        st.one_of(st.none(), st.integers(1, 12)),
    ),
    max_size=8,
).map(lambda drawn: [Grant(f"g{i}", Decimal(b), g, e) for i, (b, g, e) in enumerate(drawn)])


@LAWS
@given(
    grant_lists.flatmap(lambda g: st.tuples(st.just(g), st.permutations(g))),
    st.decimals(0, 300, places=2),
)
def test_drawdown_is_exact_and_does_not_depend_on_the_order_grants_are_given_in(
    drawn: tuple[list[Grant], list[Grant]], units: Decimal
) -> None:
    grants, shuffled = drawn
    result = draw_down(grants, units, NOW)
    assert draw_down(shuffled, units, NOW) == result
    assert sum(d.units for d in result.deductions) + result.overage == units
    assert sum(d.units for d in result.deductions) == result.covered
    balances = {g.grant_id: g for g in grants}
    usable = [g for g in drawdown_order(grants) if g.is_usable(NOW) and g.balance]
    for deduction in result.deductions:
        grant = balances[deduction.grant_id]
        assert grant.is_usable(NOW)
        assert deduction.balance_before == grant.balance
        assert deduction.balance_after == grant.balance - deduction.units >= 0
    # Every grant but the last one touched was emptied; untouched grants come after it.
    touched = [d.grant_id for d in result.deductions]
    assert touched == [g.grant_id for g in usable[: len(touched)]]
    assert all(d.balance_after == 0 for d in result.deductions[:-1])
    if result.overage:
        assert touched == [g.grant_id for g in usable]


def test_rollover_carries_the_percentage_and_forfeits_the_rest() -> None:
    assert RolloverRule(50).split(Decimal(7), 0) == (Decimal("3.5"), Decimal("3.5"))
    assert RolloverRule(100).split(Decimal(7), 3) == (Decimal(7), Decimal(0))
    assert RolloverRule(0).split(Decimal(7), 0) == (Decimal(0), Decimal(7))


def test_rollover_rounds_the_carried_part_down_to_the_precision() -> None:
    assert RolloverRule(50, precision=0).split(Decimal(7), 0) == (Decimal(3), Decimal(4))
    assert RolloverRule(33, precision=2).split(Decimal(1), 0) == (Decimal("0.33"), Decimal("0.67"))
    assert RolloverRule(33, precision=2).split(Decimal("0.99"), 0) == (
        Decimal("0.32"),
        Decimal("0.67"),
    )


def test_credit_stops_rolling_over_after_the_maximum_count() -> None:
    rule = RolloverRule(100, max_count=2)
    assert rule.split(Decimal(5), 1) == (Decimal(5), Decimal(0))
    assert rule.split(Decimal(5), 2) == (Decimal(0), Decimal(5))
    assert RolloverRule(100, max_count=0).split(Decimal(5), 0) == (Decimal(0), Decimal(5))


@pytest.mark.parametrize(
    "rule",
    [
        {"percentage": 101},
        {"percentage": -1},
        {"percentage": 50.0},
        {"percentage": 50, "max_count": -1},
        {"percentage": 50, "precision": 13},
    ],
)
def test_malformed_rollover_rules_are_refused(rule: dict[str, Any]) -> None:
    with pytest.raises(InvalidCreditError):
        RolloverRule(**rule)


@LAWS
@given(
    st.decimals(0, 10**9, places=6),
    st.integers(0, 100),
    st.one_of(st.none(), st.integers(0, 12)),
)
def test_rollover_splits_unused_credit_exactly_and_never_creates_any(
    unused: Decimal, percentage: int, precision: int | None
) -> None:
    carried, forfeited = RolloverRule(percentage, precision=precision).split(unused, 0)
    assert carried + forfeited == unused
    assert 0 <= carried <= unused * percentage / 100

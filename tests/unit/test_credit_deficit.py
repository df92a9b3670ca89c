"""Carried deficits: overage kept past a cycle's settlement, and paid back by credit."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.credit_account import CreditAccount
from domain.credits import CreditTerms, draw_down
from domain.errors import InvalidCreditError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 2, 1, tzinfo=UTC)
T2 = datetime(2026, 3, 1, tzinfo=UTC)
T3 = datetime(2026, 4, 1, tzinfo=UTC)
D = Decimal
GRANT = D(100)


def account() -> CreditAccount:
    return CreditAccount(business_id="b", entitlement_id="e", customer_id="c", opened_at=T0)


def grant(acc: CreditAccount, grant_id: str, start: datetime, end: datetime) -> None:
    acc.grant(
        grant_id, GRANT, source_type="subscription", source_id="s", granted_at=start, expires_at=end
    )


def settle_cycle(
    acc: CreditAccount, index: int, start: datetime, end: datetime, usage: int, *, repays: bool
) -> tuple[Decimal, Decimal]:
    """Fold cycle ``index`` as finalization does (its usable grants) and settle it,
    carrying all its overage; (credits drawn, overage)."""
    drawdown = draw_down(acc.usable_grants(start, end), D(usage), None)
    deductions = [(d.grant_id, d.units) for d in drawdown.deductions]
    acc.settle(
        f"inv{index}",
        deductions,
        drawdown.overage,
        D(0),
        end,
        subscription_id="s",
        cycle_index=index,
        carried=drawdown.overage,
        repays=repays,
    )
    return drawdown.covered, drawdown.overage


def kinds(acc: CreditAccount) -> list[tuple[str, str, str, str, str, str]]:
    return [
        (
            e.transaction_type,
            str(e.amount),
            str(e.balance_before),
            str(e.balance_after),
            str(e.overage_before),
            str(e.overage_after),
        )
        for e in acc.entries
    ]


def test_carry_deficit_keeps_the_overage_and_the_next_grant_is_the_customers_in_full() -> None:
    acc = account()
    grant(acc, "g0", T0, T1)
    grant(acc, "g1", T1, T2)  # cycle 1 begins before cycle 0 is finalized
    settle_cycle(acc, 0, T0, T1, 130, repays=False)
    assert (acc.balance, acc.overage, acc.deficit) == (D(100), D(30), D(30))
    assert [k[0] for k in kinds(acc)] == [
        "credit_added",
        "credit_added",
        "credit_deducted",
        "overage_charged",
    ]  # no overage_reset: the overage is carried


def test_auto_repay_pays_the_deficit_from_the_next_cycles_grant() -> None:
    acc = account()
    grant(acc, "g0", T0, T1)
    grant(acc, "g1", T1, T2)
    settle_cycle(acc, 0, T0, T1, 130, repays=True)
    assert (acc.balance, acc.overage, acc.deficit) == (D(70), D(0), D(0))
    assert kinds(acc)[-1] == ("overage_reset", "30", "100", "70", "30", "0")
    assert acc.entries[-1].grant_id == "g1"
    assert [g.balance for g in acc.usable_grants(T1, T2)] == [D(70)]


def test_a_later_cycles_provisional_draws_give_way_to_the_repayment() -> None:
    acc = account()
    grant(acc, "g0", T0, T1)
    grant(acc, "g1", T1, T2)
    acc.draw("s", 1, T1, [("g1", D(90))], D(0), T1)  # cycle 1 used 90 before 0 was settled
    settle_cycle(acc, 0, T0, T1, 130, repays=True)
    # 30 repaid: 10 free, 20 that cycle 1 had drawn; those 20 are now its overage.
    assert (acc.balance, acc.overage, acc.deficit) == (D(0), D(20), D(0))
    assert acc.provisional["s\x1f1"].draws == {"g1": D(70)}
    assert [g.balance for g in acc.usable_grants(T1, T2)] == [D(70)]


def test_a_deficit_larger_than_a_grant_is_repaid_by_the_grants_that_follow() -> None:
    acc = account()
    grant(acc, "g0", T0, T1)
    grant(acc, "g1", T1, T2)
    settle_cycle(acc, 0, T0, T1, 250, repays=True)  # 150 over: g1 repays 100
    assert (acc.balance, acc.deficit) == (D(0), D(50))
    grant(acc, "g2", T2, T3)
    assert (acc.balance, acc.overage, acc.deficit) == (D(50), D(0), D(0))
    assert (acc.entries[-1].transaction_type, acc.entries[-1].reference_id) == (
        "overage_reset",
        "g2",
    )


def test_a_settlement_cannot_carry_more_than_its_overage() -> None:
    acc = account()
    grant(acc, "g0", T0, T1)
    with pytest.raises(InvalidCreditError, match="carries more than its overage"):
        acc.settle("inv0", [("g0", D(100))], D(5), D(0), T1, carried=D(6))


def test_the_overage_limit_caps_the_deficit_carried() -> None:
    terms = CreditTerms(
        "e", GRANT, overage_enabled=True, overage_behavior="carry_deficit", overage_limit=D(20)
    )
    assert terms.carried(D(30)) == 20
    assert CreditTerms("e", GRANT, overage_behavior="carry_deficit").carried(D(30)) == 0
    assert CreditTerms("e", GRANT, overage_enabled=True).carried(D(30)) == 0


usage = st.integers(0, 400)


@given(u0=usage, u1=usage)
def test_carry_deficit_credits_drawn_and_deficit_carried_are_the_usage(u0: int, u1: int) -> None:
    acc = account()
    grant(acc, "g0", T0, T1)
    grant(acc, "g1", T1, T2)
    drawn0, _ = settle_cycle(acc, 0, T0, T1, u0, repays=False)
    drawn1, _ = settle_cycle(acc, 1, T1, T2, u1, repays=False)
    assert drawn0 + drawn1 + acc.deficit == u0 + u1
    assert drawn1 == min(u1, GRANT)  # the next grant was the customer's in full


@given(u0=usage, u1=usage, early=st.integers(0, 400))
def test_auto_repay_whenever_the_next_cycle_drew_the_outcome_is_the_same(
    u0: int, u1: int, early: int
) -> None:
    """Credits drawn + repaid + deficit = usage; cycle 1 draws on its grant minus cycle 0's
    deficit, whether or not it drew provisionally before cycle 0 was settled."""
    outcomes = []
    for provisional in (False, True):
        acc = account()
        grant(acc, "g0", T0, T1)
        grant(acc, "g1", T1, T2)
        if provisional:
            taken = min(early, int(GRANT))
            acc.draw("s", 1, T1, [("g1", D(taken))], D(early - taken), T1)
        drawn0, overage0 = settle_cycle(acc, 0, T0, T1, u0, repays=True)
        drawn1, _ = settle_cycle(acc, 1, T1, T2, u1, repays=True)
        repaid = sum(
            (e.amount for e in acc.entries if e.description and "repaid" in e.description), D(0)
        )
        assert drawn0 + drawn1 + repaid + acc.deficit == u0 + u1
        assert drawn1 == min(u1, max(GRANT - overage0, D(0)))
        assert acc.overage == acc.deficit  # nothing is open: the overage is the deficit
        outcomes.append((acc.balance, acc.deficit, drawn1))
    assert outcomes[0] == outcomes[1]

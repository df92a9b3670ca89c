"""Credit accounts and the credit cover of an invoice, without a store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.credit_account import CreditAccount, cycle_grant_id, rollover_grant_id
from domain.credits import CreditLink, CreditTerms, Grant, RolloverRule, cover
from domain.errors import InsufficientCreditError, InvalidCreditError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 2, 1, tzinfo=UTC)
D = Decimal


def account() -> CreditAccount:
    return CreditAccount(business_id="b", entitlement_id="e", customer_id="c", opened_at=T0)


def entries(acc: CreditAccount) -> list[tuple[str, str, str, str]]:
    return [
        (e.transaction_type, str(e.amount), str(e.balance_before), str(e.balance_after))
        for e in acc.entries
    ]


def test_a_grant_is_given_once_and_expires_with_an_entry() -> None:
    acc = account()
    assert acc.grant(
        "g1", D(100), source_type="subscription", source_id="s", granted_at=T0, expires_at=T1
    )
    assert not acc.grant(
        "g1", D(100), source_type="subscription", source_id="s", granted_at=T0, expires_at=T1
    )
    acc.expire("g1", D(0), None, T1)
    acc.expire("g1", D(0), None, T1)  # twice: nothing more
    assert entries(acc) == [
        ("credit_added", "100", "0", "100"),
        ("credit_expired", "100", "100", "0"),
    ]
    assert acc.balance == 0


def test_rollover_forfeits_first_then_moves_the_rest_to_a_new_grant() -> None:
    acc = account()
    acc.grant("g1", D(100), source_type="subscription", source_id="s", granted_at=T0, expires_at=T1)
    acc.expire("g1", D(40), T1 + timedelta(days=28), T1)
    assert entries(acc)[1:] == [
        ("rollover_forfeited", "60", "100", "40"),
        ("credit_rolled_over", "40", "40", "40"),
    ]
    child = acc.grants[rollover_grant_id("g1")]
    assert (child.rollover_count, child.parent_grant_id, child.grant.balance) == (1, "g1", 40)


def test_a_debit_draws_in_order_and_never_overdraws() -> None:
    acc = account()
    acc.grant("late", D(5), source_type="api", source_id=None, granted_at=T0, expires_at=None)
    acc.grant("soon", D(5), source_type="api", source_id=None, granted_at=T0, expires_at=T1)
    acc.debit(D(7), T0, reason=None, metadata=None, idempotency_key="k")
    assert acc.grants["soon"].grant.balance == 0
    assert acc.grants["late"].grant.balance == 3
    assert acc.entry_for("k") is acc.entries[-1]
    with pytest.raises(InsufficientCreditError):
        acc.debit(D(4), T0, reason=None, metadata=None, idempotency_key=None)


def test_settling_is_once_per_invoice_and_refuses_more_than_is_left() -> None:
    acc = account()
    acc.grant("g", D(10), source_type="subscription", source_id="s", granted_at=T0, expires_at=T1)
    acc.debit(D(4), T0, reason=None, metadata=None, idempotency_key=None)
    with pytest.raises(InvalidCreditError):  # folded before the debit: fold again
        acc.settle("inv", [("g", D(8))], D(3), D(3), T1)
    assert acc.settle("inv", [("g", D(6))], D(3), D(2), T1)
    assert not acc.settle("inv", [("g", D(6))], D(3), D(2), T1)
    assert acc.entries[-2].description == "2 billed on the invoice, 1 forgiven"
    assert acc.balance == 0
    kinds = [e.transaction_type for e in acc.entries]
    assert kinds[-3:] == ["credit_deducted", "overage_charged", "overage_reset"]
    assert acc.entries[-3].amount == 6


def test_cycle_grant_ids_are_deterministic_and_distinct() -> None:
    assert cycle_grant_id("s", "e", 0) == cycle_grant_id("s", "e", 0)
    assert len({cycle_grant_id("s", "e", i) for i in range(100)}) == 100


def test_cover_rounds_credits_up_to_the_precision_and_shares_grants_in_meter_order() -> None:
    terms = {
        "e": CreditTerms(
            "e", D(0), precision=1, overage_enabled=True, overage_behavior="invoice_at_billing"
        )
    }
    links = {"a": CreditLink("e", D(3)), "b": CreditLink("e", D(1))}
    grants = {"e": [Grant("g", D("1.5"), T0)]}
    coverage, draws = cover({"a": D(1), "b": D(5)}, links, terms, grants)
    # a: 1/3 credit -> 0.4 (rounded up); b gets the 1.1 left: 1.1 units covered.
    assert [(d.meter_id, d.credits) for d in draws] == [("a", D("0.4")), ("b", D("1.1"))]
    assert coverage["a"].credit_units == 1
    assert coverage["b"].credit_units == D("1.1")
    assert coverage["b"].forgiven_units == 0  # overage billed


def test_the_overage_limit_caps_what_is_billed_across_meters() -> None:
    terms = {
        "e": CreditTerms(
            "e",
            D(0),
            overage_enabled=True,
            overage_behavior="invoice_at_billing",
            overage_limit=D(5),
        )
    }
    links = {"a": CreditLink("e", D(1)), "b": CreditLink("e", D(1))}
    coverage, _ = cover({"a": D(4), "b": D(4)}, links, terms, {"e": []})
    assert (coverage["a"].forgiven_units, coverage["b"].forgiven_units) == (0, 3)


@given(
    balances=st.lists(st.integers(0, 50), max_size=4),
    usage=st.integers(0, 300),
    per_credit=st.sampled_from(["1", "2", "0.5", "3"]),
    billed=st.booleans(),
)
def test_cover_conserves_units(
    balances: list[int], usage: int, per_credit: str, billed: bool
) -> None:
    behavior = "invoice_at_billing" if billed else "forgive_at_reset"
    terms = {
        "e": CreditTerms("e", D(0), precision=2, overage_enabled=True, overage_behavior=behavior)
    }
    grants = {"e": [Grant(f"g{i}", D(b), T0) for i, b in enumerate(balances)]}
    coverage, draws = cover({"m": D(usage)}, {"m": CreditLink("e", D(per_credit))}, terms, grants)
    line = coverage["m"]
    assert line.credit_units <= usage
    assert sum((d.credits for d in draws), D(0)) == line.credits_drawn <= sum(balances)
    assert line.forgiven_units == (0 if billed else usage - line.credit_units)
    assert RolloverRule(50).split(D(7), 0) == (D("3.5"), D("3.5"))

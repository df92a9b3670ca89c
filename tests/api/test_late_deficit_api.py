"""Late usage of a finalized cycle under carry_deficit: the overage it adds is carried
as on time (credits drawn + repaid + deficit = usage), on the invoice that adjusts it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from infrastructure.runtime import close_cycles
from tests.api.helpers import client_for, make_customer
from tests.api.test_billing_api import meter, subscribe
from tests.api.test_credits_api import credit_product, entitlement, ledger_of, send


def cycles(
    make_container: Any,
    clock: Any,
    behavior: str,
    late: int,
    void: str | None = None,
    on_time: int = 1000,
) -> tuple[dict[str, Any], list[tuple[str, str, str, str]], Any]:
    """1,000 credits a cycle and ``on_time`` calls in cycle 0, finalized; then ``late``
    calls more in cycle 0 and cycle 1 finalized: the credit balance and the ledger."""
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client, overage_behavior=behavior)
        begun = (clock.now - timedelta(days=35)).isoformat()
        plan = credit_product(client, calls, ent)
        assert subscribe(client, cid, plan, start_date=begun).status_code == 200
        at = clock.now - timedelta(days=20)
        send(client, cid, at, "a", on_time)
        close_cycles(container, catch_up=True)
        send(client, cid, at, "b", late)
        if void is not None:
            assert client.post(f"/events/{void}/void", json={}).status_code == 200
        clock.advance(timedelta(days=31))
        [second] = close_cycles(container, catch_up=True)
        container.projector.catch_up()
        balance = client.get(f"/credit-entitlements/{ent}/balances/{cid}").json()
        return balance, ledger_of(client, ent, cid), second


def test_late_overage_is_carried_as_a_deficit(make_container, clock) -> None:
    balance, entries, second = cycles(make_container, clock, "carry_deficit", 100)
    assert balance["overage"] == "100"
    assert ("overage_charged", "100", "2000", "2000") in entries  # cycle 1's and 2's grants
    assert second.total_minor == 100  # the fixed price: carried, not billed


def test_late_overage_is_repaid_first_under_auto_repay(make_container, clock) -> None:
    balance, entries, _ = cycles(make_container, clock, "carry_deficit_auto_repay", 100)
    assert balance["overage"] == "0"
    charged = entries.index(("overage_charged", "100", "2000", "2000"))
    assert entries[charged + 1][:2] == ("overage_reset", "100")  # paid back from credit


def test_late_and_voided_usage_carry_the_net_overage(make_container, clock) -> None:
    balance, _, _ = cycles(make_container, clock, "carry_deficit", 100, void="a-0")
    assert balance["overage"] == "99"  # 100 late, one on-time call voided: 1,099 in all


def test_a_void_never_shrinks_a_carried_deficit(make_container, clock) -> None:
    balance, _, _ = cycles(make_container, clock, "carry_deficit", 0, void="a-0", on_time=1100)
    assert balance["overage"] == "100"  # as a void never gives credit back


@pytest.mark.parametrize("behavior", ["forgive_at_reset", "invoice_at_billing"])
def test_other_behaviours_carry_no_late_deficit(make_container, clock, behavior) -> None:
    balance, _, _ = cycles(make_container, clock, behavior, 100)
    assert balance["overage"] == "0"

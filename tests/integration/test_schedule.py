"""The billing schedule: what falls due when, from the log; the loop asks it once a tick."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from application.views import Due
from domain.subscription import subscription_aggregate_id
from infrastructure.rebuild import rebuild
from infrastructure.runtime import close_cycles, tick
from tests.api.helpers import client_for, make_customer
from tests.api.test_billing_api import meter, product, subscribe
from tests.api.test_credits_api import credit_product, entitlement

FAR = timedelta(days=3650)


def due(container: Any, later: timedelta = FAR) -> list[Any]:
    container.projector.catch_up()
    return container.reads.schedule.due(container.clock() + later, timedelta(0), 1000)


def test_a_subscription_is_due_to_renew_and_to_be_finalized(make_container, clock) -> None:
    container = make_container()
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        sub = subscribe(client, cid, product(client, [(calls, "1", 0)])).json()
        aggregate_id = str(subscription_aggregate_id("default", sub["subscription_id"]))
        entries = {(e.kind, e.cycle_index): e for e in due(container)}
        assert set(entries) == {(Due.RENEW, 1), (Due.FINALIZE, 0)}
        assert {e.aggregate_id for e in entries.values()} == {aggregate_id}
        assert entries[Due.RENEW, 1].due_at == entries[Due.FINALIZE, 0].due_at  # cycle 0's end
        assert due(container, timedelta(0)) == []  # nothing due yet
        clock.advance(timedelta(days=32))
        done = tick(container, catch_up=True)
        assert (done.renewed, len(done.finalized)) == (1, 1)
        assert {(e.kind, e.cycle_index) for e in due(container)} == {
            (Due.RENEW, 2),
            (Due.FINALIZE, 1),
        }
        cancelled = client.patch(
            f"/subscriptions/{sub['subscription_id']}", json={"cancel_at_next_billing_date": True}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert {(e.kind, e.cycle_index) for e in due(container)} == {
            (Due.FINALIZE, 1),
            (Due.END, 0),  # when the cancellation takes effect
        }
        clock.advance(timedelta(days=40))
        assert len(close_cycles(container, catch_up=True)) == 1
        assert due(container) == []  # ended: nothing more to do, ever
        ended = client.get(f"/subscriptions/{sub['subscription_id']}").json()
        assert ended["status"] == "cancelled"


def test_a_tick_with_nothing_due_writes_nothing_and_reads_one_query(make_container) -> None:
    container = make_container()
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        subscribe(client, cid, product(client, [(calls, "1", 0)]))
        container.projector.catch_up()
        head = container.ledger.head()
        done = tick(container, catch_up=True)
        assert (done.finalized, done.renewed, done.expired, done.rounds) == ([], 0, 0, 1)
        assert container.ledger.head() == head


def test_cycles_due_while_the_service_was_down_are_finalized_in_order(
    make_container, clock
) -> None:
    container = make_container(backdate_window=timedelta(days=120))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client, rollover_enabled=True, rollover_percentage=50)
        begun = clock.now - timedelta(days=100)  # three cycles have ended
        subscribe(client, cid, credit_product(client, calls, ent), start_date=begun.isoformat())
        records = close_cycles(container, catch_up=True)
        assert [r.cycle_index for r in records] == [0, 1, 2]
        assert records[0].cut <= records[1].cut <= records[2].cut
        kinds = {(e.kind, e.cycle_index) for e in due(container)}
        assert (Due.FINALIZE, 3) in kinds
        assert (Due.RENEW, 4) in kinds
        # The ended cycles' grants ended, rolling half over into the open one, whose end
        # is when every grant still alive expires.
        expiring = {e.grant_id: e.due_at for e in due(container) if e.kind is Due.EXPIRE}
        grants = client.get(f"/credit-entitlements/{ent}/balances/{cid}/grants").json()["items"]
        alive = {g["id"] for g in grants if not g["is_expired"]}
        assert set(expiring) == alive
        assert len(alive) == 4  # the open cycle's grant and three rollovers into it
        assert set(expiring.values()) == {clock.now + timedelta(days=22)}


def test_the_schedule_rebuilds_to_the_same_rows(make_container, clock) -> None:
    container = make_container(backdate_window=timedelta(days=120))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client, rollover_enabled=True, rollover_percentage=50)
        begun = clock.now - timedelta(days=70)
        subscribe(client, cid, credit_product(client, calls, ent), start_date=begun.isoformat())
        close_cycles(container, catch_up=True)
        before = due(container)
        rebuild(container, "billing_schedule")
        assert due(container) == before

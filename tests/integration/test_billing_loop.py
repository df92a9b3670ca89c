"""The billing loop under the conditions a running service meets (found by review)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from application import billing_tasks, projection
from application.errors import UnavailableError
from infrastructure.runtime import close_cycles, tick
from tests.api.helpers import client_for, make_customer
from tests.api.test_billing_api import meter, product, subscribe
from tests.api.test_credits_api import credit_product, entitlement
from tests.conftest import BOOTSTRAP_KEY

ALL_BUT_USAGE = ["catalogue", "usage_log", "seal", "credit_balances", "billing_schedule"]


def calls(cid: str, count: int, at: Any) -> dict[str, Any]:
    return {
        "events": [
            {
                "event_id": f"e{i}",
                "customer_id": cid,
                "event_name": "api.call",
                "timestamp": at.isoformat(),
            }
            for i in range(count)
        ]
    }


def test_a_cycle_is_never_finalized_at_a_cut_behind_the_log(make_container, clock) -> None:
    """On-time usage must be on its cycle's invoice, even while the usage projection lags
    (failing, slow, rebuilt): the tick refuses, and finalizes once it has caught up."""
    container = make_container(read_wait_seconds=0.3)
    with TestClient(create_app(container, follow=False)) as client:  # no projector thread
        client.headers["Authorization"] = f"Bearer {BOOTSTRAP_KEY}"
        cid = make_customer(client)
        metered = meter(client, "api.call", {"type": "count"})
        assert subscribe(client, cid, product(client, [(metered, "2", 0)])).status_code == 200
        container.projector.catch_up()
        clock.advance(timedelta(days=29))
        assert client.post("/events/ingest", json=calls(cid, 25, clock.now)).status_code == 200
        clock.advance(timedelta(days=3))  # cycle 0 and its grace are over
        container.projector.catch_up(names=ALL_BUT_USAGE)
        with pytest.raises(UnavailableError, match="have not reached log position"):
            tick(container)
        container.projector.catch_up()
        [record] = tick(container).finalized
        assert json.loads(record.document)["lines"][0]["consumed"] == "25"


def test_expiries_that_must_wait_hold_back_no_finalization(
    make_container, clock, monkeypatch
) -> None:
    """Credits that expire a day into a monthly cycle can end only once it is finalized."""
    monkeypatch.setattr(billing_tasks, "ROUND_LIMIT", 2)  # stands for the real 1,000
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        metered = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client)
        plan = credit_product(client, metered, ent, expires_after_days=1)
        begun = (clock.now - timedelta(days=35)).isoformat()
        subs = []
        for i in range(3):
            cid = make_customer(client, email=f"c{i}@example.com")
            subs.append(subscribe(client, cid, plan, start_date=begun).json()["subscription_id"])
        finalized = close_cycles(container, catch_up=True)
        assert sorted(r.subscription_id for r in finalized) == sorted(subs)
        grants = client.get(f"/credit-entitlements/{ent}/balances/{cid}/grants").json()["items"]
        assert [g["is_expired"] for g in grants] == [False, True]  # cycle 0's ended after it


def test_catching_up_beside_the_running_projector(make_container, clock, monkeypatch) -> None:
    monkeypatch.setattr(projection, "REFRESH_SECONDS", 0.0)  # the thread re-reads positions
    container = make_container()
    with client_for(container) as client:  # the lifespan starts the projector thread
        cid = make_customer(client)
        for i in range(100):
            event = {"event_id": f"e{i}", "customer_id": cid, "event_name": "api.call"}
            assert client.post("/events/ingest", json={"events": [event]}).status_code == 200
            assert close_cycles(container, catch_up=True) == []

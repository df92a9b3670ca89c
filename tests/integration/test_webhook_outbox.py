"""Regressions found in review: delivery stops at a deleted endpoint, no endpoint starves
another, a re-enabled endpoint starts afresh, a stale lease cannot undo a delivery, an
entry is addressed at its own event's position, and poison input is refused."""

from __future__ import annotations

import base64
import threading
import time
from datetime import timedelta
from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from application.delivery import Deliverer, MessageQuery, Outcome
from application.webhooks import disable_failing
from infrastructure.rebuild import rebuild
from infrastructure.webhook_sender import HttpSender
from tests.api.helpers import assert_error, make_customer
from tests.api.test_billing_api import meter
from tests.api.test_credits_api import entitlement
from tests.conftest import BOOTSTRAP_KEY
from tests.integration.receiver import Receiver


def quiet_client(container: Any) -> TestClient:
    c = TestClient(create_app(container, follow=False))
    c.headers["Authorization"] = f"Bearer {BOOTSTRAP_KEY}"
    return c


def hook(client, url, **fields):
    r = client.post("/webhooks", json={"url": url, **fields})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def credit(client, ent, cid, amount):
    r = client.post(
        f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries",
        json={"amount": amount, "entry_type": "credit"},
    )
    assert r.status_code == 200, r.text


def messages(client, h):
    r = client.get(f"/webhooks/{h}/messages", params={"limit": 100})
    assert r.status_code == 200, r.text
    return r.json()["data"]


class Recording:
    def __init__(self, delay=None):
        self.sent: list[tuple[str, str, float]] = []
        self.delay = delay or {}
        self.lock = threading.Lock()

    def send(self, route, pending, secret, headers):
        time.sleep(self.delay.get(route.endpoint_id, 0))
        with self.lock:
            self.sent.append((route.endpoint_id, pending.message_id, time.monotonic()))
        return Outcome(200)


def make_deliverer(container, sender, clock, **kw):
    outbox = container.views["outbox"]
    return Deliverer(
        outbox,
        outbox.routes,
        container.webhook_secrets,
        sender,
        clock,
        lambda b, e, r, at: disable_failing(container.ledger, b, e, r, at),
        **kw,
    )


# A: an endpoint deleted (or disabled) while its worker goes through a claimed queue keeps receiving
def test_deleted_endpoint_keeps_receiving_its_claimed_queue(make_container, clock):
    receiver = Receiver().start()
    container = make_container(webhook_poll_seconds=0)
    try:
        with quiet_client(container) as client:
            h = hook(client, f"{receiver.url}/x", rate_limit=2)
            cid = make_customer(client)
            ent = entitlement(client)
            container.projector.catch_up()
            for a in range(1, 9):
                credit(client, ent, cid, str(a))
            container.projector.catch_up()
            d = make_deliverer(container, HttpSender(5), clock)
            try:
                assert d.step() == 8
                receiver.wait_for(lambda f: len(f) >= 1)
                assert client.delete(f"/webhooks/{h}").status_code == 204
                container.projector.catch_up()
                routes = container.views["outbox"].routes()
                assert next(r for r in routes if r.endpoint_id == h).deleted
                at_delete = len(receiver.delivered())
                d.drain(10)
            finally:
                d.close()
            after = len(receiver.delivered())
            assert after == at_delete, f"{after - at_delete} messages sent to a deleted endpoint"
    finally:
        receiver.stop()


# B: one endpoint's backlog starves every other endpoint (DUE ... ORDER BY ... LIMIT)
def test_backlog_of_one_endpoint_starves_another(make_container, clock):
    container = make_container(webhook_poll_seconds=0)
    with quiet_client(container) as client:
        slow = hook(client, "http://127.0.0.1:9/slow")
        cid = make_customer(client)
        ent = entitlement(client)
        container.projector.catch_up()
        outbox = container.views["outbox"]
        # a backlog of 1,000 due messages for the slow endpoint (as after an outage)
        with outbox.datastore.transaction(commit=True) as curs:
            for i in range(1000):
                curs.execute(
                    outbox._q(
                        "INSERT INTO webhook_messages (message_id, business_id, endpoint_id, type, "
                        "position, created_at, body, status, attempts, next_attempt_at) "
                        "VALUES (?, ?, ?, 'x', ?, 0, '{}', 'pending', 0, 0)"
                    ),
                    (f"msg_backlog_{i:04d}", "b", slow, 1 + i // 1000),
                )
        fast = hook(client, "http://127.0.0.1:9/fast")
        container.projector.catch_up()
        credit(client, ent, cid, "999")
        container.projector.catch_up()
        fast_msgs = messages(client, fast)
        assert len(fast_msgs) == 1
        assert fast_msgs[0]["status"] == "pending"
        sender = Recording(delay={slow: 0.05})
        d = make_deliverer(container, sender, clock)
        try:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                d.step()
                time.sleep(0.05)
        finally:
            d.close()
        by = {}
        for e, _, _ in sender.sent:
            by[e] = by.get(e, 0) + 1
        assert by.get(fast, 0) == 1, "the idle endpoint's single due message was never claimed"


# C: health row survives re-enabling: the first failure after re-enabling disables it again
def test_reenabled_endpoint_disabled_again_on_first_failure(make_container, clock):
    container = make_container(webhook_poll_seconds=0)
    with quiet_client(container) as client:
        h = hook(client, "http://127.0.0.1:9/never")
        cid = make_customer(client)
        ent = entitlement(client)
        container.projector.catch_up()
        credit(client, ent, cid, "1")
        container.projector.catch_up()

        class Failing:
            n = 0

            def send(self, *a):
                self.n += 1
                return Outcome(503, "down")

        sender = Failing()
        disabled = []
        outbox = container.views["outbox"]
        d = Deliverer(
            outbox,
            outbox.routes,
            container.webhook_secrets,
            sender,
            clock,
            lambda b, e, r, at: (
                disabled.append(at),
                disable_failing(container.ledger, b, e, r, at),
            ),
        )
        try:
            for _ in range(8):
                while not d.step():
                    clock.advance(timedelta(minutes=1))
                d.drain()
            assert len(disabled) == 1
            container.projector.catch_up()
            # operator fixes the receiver and re-enables, a week later
            clock.advance(timedelta(days=7))
            assert client.patch(f"/webhooks/{h}", json={"disabled": False}).status_code == 200
            container.projector.catch_up()
            credit(client, ent, cid, "2")
            container.projector.catch_up()
            before = sender.n
            assert d.step() == 1
            d.drain()
            assert sender.n - before == 1
            container.projector.catch_up()
            found = client.get(f"/webhooks/{h}").json()
            assert not found["disabled"], "disabled again after a single failed attempt"
        finally:
            d.close()


# D: a stale worker (lease expired) overwrites the state another one recorded
def test_finish_after_lease_expired_overwrites_delivered(make_container, clock):
    container = make_container(webhook_poll_seconds=0)
    with quiet_client(container) as client:
        h = hook(client, "http://127.0.0.1:9/x")
        cid = make_customer(client)
        ent = entitlement(client)
        container.projector.catch_up()
        credit(client, ent, cid, "1")
        container.projector.catch_up()
        outbox = container.views["outbox"]
        now = clock.now
        [first] = outbox.claim(now, now + timedelta(seconds=530), 10, ())
        later = now + timedelta(seconds=600)  # process A's attempt hangs past its lease
        [second] = outbox.claim(later, later + timedelta(seconds=530), 10, ())
        outbox.finish(second, later, Outcome(200), None)  # process B delivers it
        assert messages(client, h)[0]["status"] == "delivered"
        outbox.finish(first, later, Outcome(None, "timed out"), later + timedelta(seconds=5))
        m = messages(client, h)[0]
        assert m["status"] == "delivered", "delivered message flipped back to pending (sent again)"


# E1: entries of one account in one batch are all addressed at the account's LAST position:
# a rebuild (one big batch) addresses to an endpoint a fact from before it existed.
def test_rebuild_adds_a_message_for_a_fact_before_the_endpoint_existed(make_container, clock):
    container = make_container(webhook_poll_seconds=0)
    with quiet_client(container) as client:
        cid = make_customer(client)
        ent = entitlement(client)
        container.projector.catch_up()
        credit(client, ent, cid, "1")
        container.projector.catch_up()
        h = hook(client, "http://127.0.0.1:9/x")
        container.projector.catch_up()
        credit(client, ent, cid, "2")
        container.projector.catch_up()
        before = messages(client, h)
        rebuild(container, "outbox")
        after = messages(client, h)
        assert len(after) == len(before), "rebuild derived a message the log did not give before"


# E2: the same batching effect loses a message: a fact while the endpoint was live, then
# the endpoint deleted, then another entry of the same account, read in one batch.
def test_entry_before_delete_is_lost_when_read_in_one_batch(make_container, clock):
    container = make_container(webhook_poll_seconds=0, read_wait_seconds=0.2)
    with quiet_client(container) as client:
        h = hook(client, "http://127.0.0.1:9/x")
        cid = make_customer(client)
        ent = entitlement(client)
        credit(client, ent, cid, "5")
        container.projector.catch_up()
        credit(client, ent, cid, "1")  # while the endpoint is live
        assert client.delete(f"/webhooks/{h}").status_code == 204
        credit(client, ent, cid, "2")
        container.projector.catch_up()

        listed = container.views["outbox"].messages(MessageQuery("", h, limit=100))
        assert len(listed) == 2, "credit '1' (made while the endpoint was live) was never addressed"


def b64(s: str) -> str:
    return base64.urlsafe_b64encode(s.encode()).decode()


def test_messages_query_edge_cases(client) -> None:
    h = client.post("/webhooks", json={"url": "http://127.0.0.1:9/x"}).json()["id"]
    out = {}
    for name, params in {
        "limit0": {"limit": 0},
        "limit_abc": {"limit": "abc"},
        "status_bogus": {"status": "bogus"},
        "iter_garbage": {"iterator": "!!!"},
        "iter_noint": {"iterator": b64("x:y")},
        "iter_huge": {"iterator": b64(f"{10**20}:msg_x")},
        "iter_neg_huge": {"iterator": b64(f"{-(10**20)}:msg_x")},
        "iter_nul": {"iterator": b64("1:a\x00b")},
        "iter_not_utf8": {"iterator": base64.urlsafe_b64encode(b"\xff\xfe").decode()},
    }.items():
        r = client.get(f"/webhooks/{h}/messages", params=params)
        out[name] = (r.status_code, r.text[:120])
    out["unknown_hook"] = client.get("/webhooks/wh_none/messages").status_code
    out["retry_unknown_hook"] = client.post("/webhooks/wh_none/messages/m/retry").status_code
    assert all(400 <= (v if isinstance(v, int) else v[0]) < 500 for v in out.values()), out


def test_an_alert_name_with_nul_is_refused_and_the_outbox_keeps_going(client, container) -> None:
    calls = meter(client, "api.call", {"type": "count"})
    r = client.post("/alerts", json={"meter_id": calls, "threshold": 5, "name": "a\u0000b"})
    assert_error(r, 422, "invalid_alert")
    client.post("/webhooks", json={"url": "http://127.0.0.1:9/x"})
    container.projector.catch_up()
    assert "outbox" not in container.projector.errors
    assert client.get("/alerts").json()["items"] == []


def test_another_business_sees_no_endpoint_messages_or_alerts_of_this_one(
    client, container, clock
) -> None:
    other = container.keys.create("other", "admin", clock())
    h = client.post("/webhooks", json={"url": "http://127.0.0.1:9/x"}).json()["id"]
    calls = meter(client, "api.call", {"type": "count"})
    alert = client.post("/alerts", json={"meter_id": calls, "threshold": 5}).json()["id"]
    theirs = {"Authorization": f"Bearer {other}"}
    assert_error(client.get(f"/webhooks/{h}/messages", headers=theirs), 404, "not_found")
    retry = client.post(f"/webhooks/{h}/messages/msg_x/retry", headers=theirs)
    assert_error(retry, 404, "not_found")
    assert_error(client.get(f"/alerts/{alert}", headers=theirs), 404, "not_found")
    assert_error(client.delete(f"/alerts/{alert}", headers=theirs), 404, "not_found")
    assert client.get("/alerts", headers=theirs).json()["items"] == []
    assert [a["id"] for a in client.get("/alerts").json()["items"]] == [alert]

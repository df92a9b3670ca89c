"""SIGKILL between writing a credit entry and delivering its message: delivered after restart."""

from __future__ import annotations

import json

from tests.integration.receiver import Receiver
from tests.integration.test_crash import servers  # noqa: F401 - the fixture
from tests.integration.test_webhook_delivery import SDK


def test_a_message_not_delivered_when_the_server_is_killed_is_delivered_after_restart(
    servers,  # noqa: F811 - the fixture imported above
    monkeypatch,
) -> None:
    monkeypatch.setenv("LEDGER_WEBHOOK_RETRY_SCHEDULE", "0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2")
    monkeypatch.setenv("LEDGER_WEBHOOK_POLL_SECONDS", "0.05")
    monkeypatch.setenv("LEDGER_WEBHOOK_TIMEOUT_SECONDS", "1")  # a lease a kill leaves: 15 s
    answers = {"status": 500}
    receiver = Receiver(answer=lambda _: answers["status"]).start()
    try:
        server = servers()
        with server.client() as http:
            hook = http.post("/webhooks", json={"url": f"{receiver.url}/in"}).json()["id"]
            secret = http.get(f"/webhooks/{hook}/secret").json()["secret"]
            customer = http.post("/customers", json={"email": "a@example.com", "name": "A"})
            cid = customer.json()["customer_id"]
            ent = http.post(
                "/credit-entitlements",
                json={
                    "name": "Credits",
                    "unit": "calls",
                    "precision": 0,
                    "overage_enabled": False,
                    "rollover_enabled": False,
                },
            ).json()["id"]
            entry = http.post(
                f"/credit-entitlements/{ent}/balances/{cid}/ledger-entries",
                json={"amount": "42", "entry_type": "credit"},
            )
            assert entry.status_code == 200, entry.text
        receiver.wait_for(lambda _: len(receiver.requests) >= 1, timeout=30)  # tried, failed
        server.kill()
        assert receiver.delivered() == []
        answers["status"] = 200
        servers()  # the same database
        [got] = receiver.wait_for(lambda found: len(found) >= 1, timeout=45)
        event = SDK.webhooks.unwrap(got.body, headers=got.headers, key=secret)
        assert (event.type, event.data.amount) == ("credit.manual_adjustment", "42")
        ids = {r.headers["webhook-id"] for r in receiver.requests}
        assert ids == {got.headers["webhook-id"]}  # every attempt, before and after, one id
        assert json.loads(got.body)["data"]["customer_id"] == cid
    finally:
        receiver.stop()

"""The invoice preview of the open cycle is what finalizing it at the same cut produces.

Both are ``application.billing.plan_cycle``: the preview shows the plan, finalization
saves it. So the preview carries the adjustments of earlier cycles changed by late
usage or voids, and the two documents are the same bytes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from application.billing import finalize_cycle, invoice_preview
from infrastructure.runtime import close_cycles
from tests.api.helpers import client_for, make_customer
from tests.api.test_billing_api import meter, subscribe
from tests.api.test_credits_api import credit_product, entitlement, send


def test_the_preview_is_the_finalized_invoice_byte_for_byte(make_container, clock) -> None:
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client, rollover_enabled=True, rollover_percentage=50)
        product_id = credit_product(client, calls, ent)
        begun = clock.now - timedelta(days=35)
        sub = subscribe(client, cid, product_id, start_date=begun.isoformat()).json()
        subscription_id = sub["subscription_id"]
        send(client, cid, clock.now - timedelta(days=20), "a", 1400)  # cycle 0
        [first] = close_cycles(container, catch_up=True)
        send(client, cid, clock.now - timedelta(days=20), "late", 30)  # cycle 0, late
        assert client.post("/events/a-3/void", json={"reason": "test"}).status_code == 200
        send(client, cid, clock.now - timedelta(hours=3), "b", 700)  # cycle 1, open
        container.projector.catch_up()
        body = client.get(f"/subscriptions/{subscription_id}/invoice-preview").json()
        [adjustment] = body["invoice"]["adjustments"]  # what finalizing would carry
        assert adjustment["from_cut"] == first.cut
        assert adjustment["lines"][0]["consumed"] == "29"  # 30 late calls, one void
        _, preview = invoice_preview(
            container.ledger, container.reads, "default", subscription_id, now=clock.now
        )
        assert preview.sha256 == body["sha256"]
        clock.advance(timedelta(days=40))  # cycle 1 has ended; nothing else was written
        record = finalize_cycle(
            container.ledger, container.reads, "default", subscription_id, 1, now=clock.now
        )
        assert record.cut == preview.cut
        assert record.document == preview.canonical_bytes().decode("ascii")
        assert record.sha256 == body["sha256"]


def test_a_preview_writes_nothing(make_container: Any, clock) -> None:
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        cid = make_customer(client)
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client)
        product_id = credit_product(client, calls, ent)
        begun = clock.now - timedelta(days=35)  # cycle 1 is open; not renewed by a tick
        sub = subscribe(client, cid, product_id, start_date=begun.isoformat()).json()
        container.projector.catch_up()
        head = container.ledger.head()
        path = f"/subscriptions/{sub['subscription_id']}/invoice-preview"
        assert client.get(path).status_code == 200
        assert container.ledger.head() == head

"""``ledger demo``: start the service on the SQLite default and show it doing its job."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from infrastructure.bootstrap import build
from infrastructure.logging import configure_logging
from infrastructure.settings import Settings


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run_demo(host: str, port: int, *, keep_serving: bool = True) -> int:
    key = os.environ.get("LEDGER_BOOTSTRAP_API_KEY") or f"demo-{secrets.token_hex(16)}"
    env = {**os.environ, "LEDGER_BOOTSTRAP_API_KEY": key}
    settings = Settings.from_env(env)
    configure_logging("console", "warning")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(build(settings)), host=host, port=port, log_config=None, access_log=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{host}:{port}"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        _wait_healthy(http)
        _script(http, settings)
    if keep_serving and os.environ.get("LEDGER_DEMO_EXIT") != "1":
        _say(f"\nThe service keeps running at {base} (key: {key}). Ctrl-C stops it.")
        _say(f"The dashboard: {base}/dashboard (sign in with that key).")
        with contextlib.suppress(KeyboardInterrupt):
            thread.join()
    server.should_exit = True
    thread.join(timeout=15)
    return 0


def _wait_healthy(http: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("ledger demo: the service did not become healthy in 30 s")


def _script(http: httpx.Client, settings: Settings) -> None:
    _say(f"ledger is serving on {http.base_url} with {settings.database_url}")
    _say(f"the dashboard is at {http.base_url}/dashboard (sign in with the API key)")
    customer = _call(http, "POST", "/customers", {"email": "ada@example.com", "name": "Ada"})
    cid = customer["customer_id"]
    _say(f"created customer {cid}")
    now = datetime.now(UTC)
    run = secrets.token_hex(4)
    events: list[dict[str, Any]] = [
        {
            "event_id": f"demo-{run}-{i}",
            "customer_id": cid,
            "event_name": "api.call",
            "timestamp": (now - timedelta(seconds=i)).isoformat(),
            "metadata": {"tokens": 1000 + i, "cost": 0.1 if i % 2 else 0.25},
        }
        for i in range(5)
    ]
    events.append(
        {
            "event_id": f"demo-{run}-old",
            "customer_id": cid,
            "event_name": "api.call",
            "timestamp": (now - timedelta(days=30)).isoformat(),
        }
    )
    first = _call(http, "POST", "/events/ingest", {"events": events})
    _say(
        f"ingested {first['ingested_count']} events; rejected: "
        + ", ".join(f"#{r['index']} {r['code']}" for r in first["rejected"])
    )
    again = _call(http, "POST", "/events/ingest", {"events": events[:5]})
    _say(
        f"sent the same 5 again: ingested {again['ingested_count']}, "
        f"{len(again['duplicates'])} reported as duplicates"
    )
    listed = _call(http, "GET", f"/events?customer_id={cid}&page_size=10", None)
    _say(f"GET /events?customer_id={cid} lists {len(listed['items'])} events:")
    for item in listed["items"]:
        _say(f"  {item['event_id']}  {item['timestamp']}  {item['metadata']}")
    meter = _call(
        http,
        "POST",
        "/meters",
        {
            "name": "Tokens on cheap calls",
            "event_name": "api.call",
            "measurement_unit": "tokens",
            "aggregation": {"type": "sum", "key": "tokens"},
            "filter": {
                "conjunction": "and",
                "clauses": [{"key": "cost", "operator": "less_than", "value": 0.2}],
            },
        },
    )
    _say(f"created meter {meter['id']} (sum of tokens where cost < 0.2), after the events")
    start = (now - timedelta(hours=1)).isoformat()
    end = (now + timedelta(minutes=1)).isoformat()
    usage = _call(
        http,
        "GET",
        f"/meters/{meter['id']}/usage",
        None,
        params={"customer_id": cid, "start": start, "end": end, "window": "hour"},
    )
    _say(
        f"its usage for {cid} over the last hour: {usage['total']} tokens "
        f"from {usage['event_count']} events (1001 + 1003, the two calls at 0.1)"
    )
    _bill(http, cid, meter["id"])


def _bill(http: httpx.Client, cid: str, meter_id: str) -> None:
    """A product that prices the meter, with credits; a subscription; its invoice so far."""
    entitlement = _call(
        http,
        "POST",
        "/credit-entitlements",
        {
            "name": "Free tokens",
            "unit": "tokens",
            "precision": 0,
            "overage_enabled": True,
            "overage_behavior": "invoice_at_billing",
            "rollover_enabled": False,
        },
    )
    product = _call(
        http,
        "POST",
        "/products",
        {
            "name": "Tokens plan",
            "tax_category": "saas",
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 500,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "meters": [
                    {
                        "meter_id": meter_id,
                        "price_per_unit": "0.5",
                        "free_threshold": 1000,
                        "credit_entitlement_id": entitlement["id"],
                        "meter_units_per_credit": "1",
                    }
                ],
            },
            "credit_entitlements": [
                {"credit_entitlement_id": entitlement["id"], "credits_amount": "500"}
            ],
        },
    )
    subscription = _call(
        http,
        "POST",
        "/subscriptions",
        {
            "customer": {"customer_id": cid},
            "product_id": product["product_id"],
            "quantity": 1,
            "billing": {"country": "US"},
            "start_date": (datetime.now(UTC) - timedelta(minutes=30)).isoformat(),
        },
    )
    sub = subscription["subscription_id"]
    _say(
        f"subscribed {cid} to {product['product_id']}: $5.00 a month, tokens above 1,000 free "
        "at half a cent, 500 free credits each cycle"
    )
    preview = _call(http, "GET", f"/subscriptions/{sub}/invoice-preview", None)
    [line] = preview["invoice"]["lines"]
    _say(
        f"invoice preview: consumed {line['consumed']} tokens, chargeable {line['chargeable']}, "
        f"credits {line['credits_applied']}, billed {line['billed_units']} -> "
        f"total {preview['invoice']['total_minor']} cents (sha256 {preview['sha256'][:16]}...)"
    )


def _call(
    http: httpx.Client,
    method: str,
    path: str,
    body: object,
    params: dict[str, str] | None = None,
) -> Any:
    response = http.request(method, path, json=body, params=params)
    if response.status_code >= 400:
        raise SystemExit(f"ledger demo: {method} {path} -> {response.status_code} {response.text}")
    return response.json()

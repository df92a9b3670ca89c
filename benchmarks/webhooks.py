"""Webhook benchmark: ingest with 0, 1 and 10 endpoints registered, and delivery throughput.

Each round starts the real server on a fresh PostgreSQL database with live credit
balances on (5 customers on a credit plan, drawn every second) and a usage alert,
registers the endpoints (all pointing at one local receiver that answers 204),
posts fresh batches of 1,000 events for ``--seconds`` from 4 connections (the
ingest benchmark's load, ``benchmarks/ingest_load.py``) to ``ledger serve
--workers W`` and reports events/s. Then every message of the
10-endpoint round is made due again (``ledger webhooks replay``, the operator's
tool) and the time until the receiver has them all gives messages/s, beside a
baseline measured in the same run: plain POSTs of the same bodies from 16 threads
(what the receiver and the loopback take without signing, claiming or recording).

Run: ``.venv/bin/python benchmarks/webhooks.py [--seconds 20] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # the ingest benchmark's helpers, beside this file
from ingest_load import BATCH, Batches, Client, sustain

ROOT = ingest.ROOT
TARGET = 10_000
REPLAYED_ENTRIES = 300  # manual credits in the 10-endpoint round: 3,000 more messages
CONNECTIONS = 4


def entitlement_of(client: Client) -> str:
    found = call(client, "GET", "/credit-entitlements")["items"]
    return str(found[0]["id"])


class Receiver:
    """Counts deliveries; answers 204 at once."""

    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = 0.0  # when the first and the last delivery arrived
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.count += 1
                    receiver.last = time.perf_counter()
                    receiver.first = receiver.first or receiver.last
                    if len(receiver.bodies) < 2000:
                        receiver.bodies.append(body)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, count: int, timeout: float) -> float:
        started = time.perf_counter()
        while self.count < count and time.perf_counter() - started < timeout:
            time.sleep(0.01)
        return time.perf_counter() - started


def call(client: Client, method: str, path: str, body: object = None) -> Any:
    """The decoded answer of one request on its own connection (anything but 200 stops)."""
    conn = client.connect()
    try:
        raw = None if body is None else msgspec.json.encode(body)
        return msgspec.json.decode(client.call(conn, method, path, raw))
    finally:
        conn.close()


def setup(client: Client, endpoints: int, url: str) -> list[str]:
    """Endpoints, a credit plan with live balances, 5 subscribed customers, an alert."""
    for _ in range(endpoints):
        call(client, "POST", "/webhooks", {"url": url})
    meter = call(
        client,
        "POST",
        "/meters",
        {
            "name": "calls",
            "event_name": "api.call",
            "measurement_unit": "calls",
            "aggregation": {"type": "count"},
        },
    )["id"]
    entitlement = call(
        client,
        "POST",
        "/credit-entitlements",
        {
            "name": "Credits",
            "unit": "calls",
            "precision": 0,
            "overage_enabled": True,
            "overage_behavior": "invoice_at_billing",
            "rollover_enabled": False,
        },
    )["id"]
    product = call(
        client,
        "POST",
        "/products",
        {
            "name": "Credit plan",
            "tax_category": "saas",
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 0,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "meters": [
                    {
                        "meter_id": meter,
                        "price_per_unit": "1",
                        "free_threshold": 0,
                        "credit_entitlement_id": entitlement,
                        "meter_units_per_credit": "1",
                    }
                ],
            },
            "credit_entitlements": [
                {
                    "credit_entitlement_id": entitlement,
                    "credits_amount": "10000",
                    "low_balance_threshold_percent": 20,
                }
            ],
        },
    )["product_id"]
    customers = []
    for n in range(5):
        customer = call(
            client, "POST", "/customers", {"email": f"b{n}@example.com", "name": f"B {n}"}
        )["customer_id"]
        customers.append(customer)
        call(
            client,
            "POST",
            "/subscriptions",
            {
                "billing": {"country": "US"},
                "customer": {"customer_id": customer},
                "product_id": product,
                "quantity": 1,
            },
        )
    call(client, "POST", "/alerts", {"meter_id": meter, "threshold": 5000, "period": "day"})
    return customers


def messages_of(dburl: str) -> int:
    with psycopg.connect(dburl) as db:
        row = db.execute("SELECT count(*) FROM webhook_messages").fetchone()
    return int(row[0]) if row else 0


def round_trip(
    dburl: str, seconds: float, workers: int, endpoints: int, receiver: Receiver, *, replay: bool
) -> dict[str, float]:
    client = Client(ingest.free_port(), secrets.token_urlsafe(24))
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": dburl,
        "LEDGER_BOOTSTRAP_API_KEY": client.key,
        "LEDGER_LOG_LEVEL": "warning",
        "LEDGER_BACKDATE_WINDOW": "P1D",
    }
    command = [sys.executable, "-m", "api.cli", "serve", "--workers", str(workers)]
    result: dict[str, float] = {}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [*command, "--port", str(client.port)], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            ingest.wait_healthy(client, server)
            customers = setup(client, endpoints, receiver.url)
            load = sustain(client, Batches(customers), CONNECTIONS, seconds)
            result["ingest"] = load.events / load.elapsed
            result["sent"] = load.events
            time.sleep(3)  # the live draws and the outbox catch up
            result["messages"] = messages_of(dburl)
            if replay:
                entitlement = entitlement_of(client)
                for n in range(REPLAYED_ENTRIES):  # more messages: a manual credit each
                    call(
                        client,
                        "POST",
                        f"/credit-entitlements/{entitlement}/balances/"
                        f"{customers[n % len(customers)]}/ledger-entries",
                        {"amount": "1", "entry_type": "credit"},
                    )
                time.sleep(5)
                result["messages"] = messages_of(dburl)
                receiver.count, receiver.first = 0, 0.0
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "api.cli",
                        "webhooks",
                        "replay",
                        "--since",
                        "2000-01-01",
                    ],
                    cwd=ROOT,
                    env=env,
                    check=True,
                    capture_output=True,
                )
                receiver.wait(int(result["messages"]), 300)
                result["delivered"] = receiver.count
                result["delivery"] = (receiver.count - 1) / (receiver.last - receiver.first)
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            ingest.stop(server)
    return result


def post_baseline(receiver: Receiver, count: int) -> float:
    """Plain POSTs of recorded bodies, 16 threads with a client each: requests/s."""
    bodies = receiver.bodies or [b"{}"]

    def worker(share: int) -> None:
        with httpx.Client(trust_env=False) as client:
            for n in range(share):
                client.post(receiver.url, content=bodies[n % len(bodies)])

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(worker, [count // 16] * 16))
    return (count // 16 * 16) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each round's load")
    parser.add_argument("--workers", type=int, default=2, help="ledger serve --workers")
    args = parser.parse_args()
    receiver = Receiver()
    rounds: dict[int, dict[str, float]] = {}
    for endpoints in (0, 1, 10):
        dbname = f"ledger_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ingest.ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        try:
            url = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
            rounds[endpoints] = round_trip(
                url, args.seconds, args.workers, endpoints, receiver, replay=endpoints == 10
            )
        finally:
            with psycopg.connect(ingest.ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    ten = rounds[10]
    baseline = post_baseline(receiver, max(int(ten.get("delivered", 0)), 2000))
    print(
        f"webhook benchmark: {args.seconds:g} s a round, batches of {BATCH:,}, "
        f"{CONNECTIONS} connections, serve --workers {args.workers}, live balances "
        f"(5 customers on credits), one usage alert, PostgreSQL, {os.cpu_count()} cores"
    )
    for endpoints, found in rounds.items():
        print(
            f"ingest with {endpoints:>2} endpoints : {found['ingest']:,.0f} events/s "
            f"({found['sent']:,.0f} events), {found['messages']:,.0f} messages derived"
        )
    print(
        f"delivery (replay of {ten.get('delivered', 0):,.0f} messages to 10 endpoints): "
        f"{ten.get('delivery', 0):,.0f} messages/s"
    )
    print(f"baseline plain POSTs, 16 threads  : {baseline:,.0f} requests/s")
    worst = min(found["ingest"] for found in rounds.values())
    verdict = "met" if worst >= TARGET else "NOT met"
    print(f"target >= {TARGET:,} events/s with 10 endpoints: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

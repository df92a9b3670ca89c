"""Dashboard benchmark: page response times for a business of 1,000 customers and 1,000,000 events.

Run: ``.venv/bin/python benchmarks/dashboard.py [--events 1000000] [--big 400000] [--keep]
[--reuse URL]`` (``--keep`` keeps the database, ``--reuse`` measures a kept one again)

On a scratch PostgreSQL database it builds the world of ``benchmarks/scale.py``
(1,000 customers, three meters on ``api.call``, a product with credits, 101 monthly
subscriptions) and writes, through the application, one cycle of the subscribers'
events (the big customer sends ``--big``, 100 small ones 100 each, some voided) and
history of the other customers up to ``--events`` in all. The cycle is then
finalized by a billing tick (101 invoices, the big one folding ``--big`` events),
and the next cycle gets a day of events, so the open cycles have usage too.

A ``ledger serve`` process on that store is signed in to like a browser (the
sign-in form, its CSRF token, the session cookie) and every dashboard page is
fetched: one warm-up, then the median and the slowest of ``--runs`` answers each,
read over HTTP on 127.0.0.1. Beside them, in the same run, the JSON API's answers
for the same reads (the baseline: what the page adds to the data it shows) and
``GET /health``. The target: every page under 100 ms (median).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import scale  # noqa: E402

from application.subscriptions import load  # noqa: E402
from infrastructure.runtime import tick  # noqa: E402

TARGET_MS = 100.0
WORLD = Path(tempfile.gettempdir()) / "ledger-dashboard-world.json"  # for --reuse
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def build_world(dburl: str, events: int, big: int) -> tuple[scale.World, int]:
    clock = scale.Clock(scale.HISTORY_FROM)
    container = scale.build(scale.settings(dburl), clock)
    world = scale.setup(container, clock)
    world.cycle = 0
    current = load(container.ledger, scale.BUSINESS, world.big).cycle(0)
    clock.now = current.end - timedelta(days=1)
    started = time.perf_counter()
    written = scale.ingest(container, scale.cycle_events(world, current, big), clock.now)
    for event_id in [f"big0-{i}" for i in range(0, 20 * 97, 97)]:
        container.ledger.void_usage_event(scale.BUSINESS, event_id, reason="bench", now=clock.now)
    written += scale.ingest(
        container, scale.history_events(world, max(events - written, 0), 0), clock.now
    )
    container.projector.catch_up(batch_size=5000)
    clock.now = current.end + timedelta(hours=2)
    done = tick(container)  # finalizes the 101 cycles, renews the subscriptions
    container.projector.catch_up()
    nxt = load(container.ledger, scale.BUSINESS, world.big).cycle(1)
    clock.now = nxt.start + timedelta(days=1)
    world.cycle = 1
    day = [e for i, e in enumerate(scale.cycle_events(world, nxt, 20_000)) if i < 20_000]
    written += scale.ingest(container, iter(day), clock.now)
    container.projector.catch_up(batch_size=5000)
    print(
        f"wrote {written:,} usage events in {time.perf_counter() - started:.0f} s; "
        f"the tick finalized {len(done.finalized)} cycles; vacuum analyze "
        f"{scale.analyze(dburl):.0f} s",
        flush=True,
    )
    container.close()
    return world, written


def serve(dburl: str) -> tuple[subprocess.Popen[bytes], str, str]:
    key, port = secrets.token_urlsafe(24), scale._free_port()
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": dburl,
        "LEDGER_BOOTSTRAP_API_KEY": key,
        "LEDGER_LOG_LEVEL": "warning",
        "LEDGER_BACKDATE_WINDOW": "P400D",
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    return server, f"http://127.0.0.1:{port}", key


def wait_ready(api: httpx.Client) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            health = api.get("/health").json()
            if health.get("projection_position") == health.get("log_position"):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not catch up")


def sign_in(base: str, key: str) -> httpx.Client:
    browser = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
    form = browser.get("/dashboard/sign-in")
    token = CSRF.search(form.text)
    assert token, form.text[:300]
    answer = browser.post(
        "/dashboard/sign-in", data={"api_key": key, "_csrf_token": token.group(1)}
    )
    assert answer.status_code == 303, answer.text[:300]
    return browser


def timed(client: httpx.Client, path: str, runs: int) -> tuple[float, float, int, int]:
    """Median and slowest milliseconds of ``runs`` answers, after one warm-up."""
    first = client.get(path)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == first.status_code
    return statistics.median(times), max(times), first.status_code, len(first.content)


def pages(api: httpx.Client, world: scale.World) -> list[tuple[str, str, str | None]]:
    """(what, dashboard page, JSON API baseline) for every page the dashboard has."""
    meter = world.meters["calls"]
    product = api.get("/products").json()["items"][0]["product_id"]
    entitlement = api.get("/credit-entitlements").json()["items"][0]["id"]
    invoices = api.get("/invoices", params={"subscription_id": world.big}).json()
    invoice = invoices["items"][0]["invoice_id"] if invoices.get("items") else None
    big, small = world.big_customer, world.small_customer
    found: list[tuple[str, str, str | None]] = [
        ("overview", "/dashboard", "/health"),
        ("meters", "/dashboard/meters", "/meters"),
        ("meter, per hour", f"/dashboard/meters/{meter}?window=hour", None),
        ("meter, per day", f"/dashboard/meters/{meter}?window=day", None),
        ("meter, per month", f"/dashboard/meters/{meter}?window=month", None),
        ("meter edit form", f"/dashboard/meters/{meter}/edit", f"/meters/{meter}"),
        ("products", "/dashboard/products", "/products"),
        ("product", f"/dashboard/products/{product}", f"/products/{product}"),
        ("customers", "/dashboard/customers", "/customers"),
        ("customers, search", "/dashboard/customers?name=Customer%2099", None),
        ("customer, big", f"/dashboard/customers/{big}", f"/customers/{big}"),
        ("customer, small", f"/dashboard/customers/{small}", f"/customers/{small}"),
        ("subscriptions", "/dashboard/subscriptions", "/subscriptions"),
        (
            "subscription, big",
            f"/dashboard/subscriptions/{world.big}",
            f"/subscriptions/{world.big}/invoice-preview",
        ),
        ("invoices", "/dashboard/invoices", "/invoices"),
        ("events", "/dashboard/events", "/events"),
        ("events of a customer", f"/dashboard/events?customer_id={small}", None),
        ("credits", "/dashboard/credits", "/credit-entitlements"),
        ("credit entitlement", f"/dashboard/credits/{entitlement}", None),
        ("alerts", "/dashboard/alerts", "/alerts"),
        ("webhooks", "/dashboard/webhooks", "/webhooks"),
        ("api keys", "/dashboard/api-keys", "/api-keys"),
    ]
    if invoice is not None:
        found.append(("invoice, big cycle", f"/dashboard/invoices/{invoice}", None))
    return found


def run(dburl: str, events: int, big: int, runs: int, *, reuse: bool) -> None:
    if reuse:
        saved = json.loads(WORLD.read_text())
        world = scale.World(scale.Clock(scale.ANCHOR), **saved["world"])
        written = saved["written"]
    else:
        world, written = build_world(dburl, events, big)
        fields = ("customers", "meters", "big", "small", "small_customer", "big_customer")
        WORLD.write_text(
            json.dumps({"world": {f: getattr(world, f) for f in fields}, "written": written})
        )
    server, base, key = serve(dburl)
    try:
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        wait_ready(api)
        browser = sign_in(base, key)
        overview = browser.get("/dashboard")  # starts adding up the open cycles
        deadline = time.monotonic() + 120
        while "being added up" in overview.text and time.monotonic() < deadline:
            time.sleep(1)
            overview = browser.get("/dashboard")
        print(
            f"dashboard benchmark: PostgreSQL, {os.cpu_count()} cores, "
            f"{scale.CUSTOMERS:,} customers, {written:,} events; median and slowest of "
            f"{runs} answers over HTTP, beside the JSON API's answer for the same read",
            flush=True,
        )
        print(
            f"{'page':24} {'status':>6} {'KiB':>6} {'median ms':>10} {'max ms':>8} "
            f"{'API ms':>8}  target {TARGET_MS:.0f} ms"
        )
        slow = []
        for what, path, baseline in pages(api, world):
            median, worst, status, size = timed(browser, path, runs)
            base_ms = f"{timed(api, baseline, runs)[0]:8.1f}" if baseline else f"{'':8}"
            verdict = "ok" if median < TARGET_MS and status == 200 else "SLOW"
            if verdict != "ok":
                slow.append(what)
            print(
                f"{what:24} {status:>6} {size / 1024:6.1f} {median:10.1f} {worst:8.1f} "
                f"{base_ms}  {verdict}",
                flush=True,
            )
        print("every page under the target" if not slow else f"over the target: {slow}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=400_000, help="the big customer's cycle")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="keep the database, print its URL")
    parser.add_argument("--reuse", metavar="URL", help="measure a database kept by --keep")
    args = parser.parse_args()
    if args.reuse:
        run(args.reuse, args.events, args.big, args.runs, reuse=True)
        return 0
    dbname = f"ledger_dashboard_{secrets.token_hex(4)}"
    dburl = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    with psycopg.connect(scale.ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        run(dburl, args.events, args.big, args.runs, reuse=False)
    finally:
        if args.keep:
            print(f"kept: {dburl}")
        else:
            with psycopg.connect(scale.ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Ingest benchmark: the real server under concurrent batch load, against a plain COPY.

Run: ``.venv/bin/python benchmarks/ingest.py [--events N] [--connections C] [--workers W]``
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"
BATCH = 1000
TARGET = 10_000
Row = tuple[str, str, str, str, dict[str, object]]


class Run(msgspec.Struct):
    rows: list[Row]
    customers: int
    elapsed: float = 0.0
    lags: list[int] = msgspec.field(default_factory=list)  # log head - projection, polled
    catch_up: float = 0.0
    rss_mib: float = 0.0


def request(
    port: int,
    method: str,
    path: str,
    key: str,
    body: bytes | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def wait_healthy(port: int, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited early with code {server.returncode}")
        try:
            if request(port, "GET", "/health", "")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become healthy in time")


def make_rows(count: int, customers: list[str]) -> list[Row]:
    now, run = datetime.now(UTC), secrets.token_hex(4)
    return [
        (
            f"evt_{run}_{i:08d}",
            customers[i % len(customers)],
            "api.call",
            (now - timedelta(seconds=i % 3000, microseconds=i % 997)).isoformat(),
            {"tokens": i % 5000, "model": "gpt", "cost": 0.0123},
        )
        for i in range(count)
    ]


def encode_batches(rows: list[Row]) -> list[bytes]:
    keys = ("event_id", "customer_id", "event_name", "timestamp", "metadata")
    return [
        msgspec.json.encode(
            {"events": [dict(zip(keys, r, strict=True)) for r in rows[s : s + BATCH]]}
        )
        for s in range(0, len(rows), BATCH)
    ]


def send_all(port: int, key: str, bodies: list[bytes], connections: int) -> tuple[int, float]:
    """Each thread has one keep-alive connection; returns (sum of ingested_count, seconds)."""
    decoder, failed = msgspec.json.Decoder(), threading.Event()

    def post(conn: http.client.HTTPConnection, body: bytes) -> int:
        status, raw = request(port, "POST", "/events/ingest", key, body, conn)
        if status != 200:
            raise RuntimeError(f"POST /events/ingest answered {status}: {raw[:500]!r}")
        result = decoder.decode(raw)
        if result["duplicates"] or result["rejected"]:
            raise RuntimeError(f"unexpected duplicates/rejections: {raw[:500]!r}")
        return int(result["ingested_count"])

    def worker(mine: list[bytes]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            return sum(post(conn, body) for body in mine if not failed.is_set())
        except BaseException:
            failed.set()  # the other connections stop too
            raise
        finally:
            conn.close()

    with ThreadPoolExecutor(connections) as pool:
        started = time.perf_counter()
        ingested = sum(pool.map(worker, [bodies[i::connections] for i in range(connections)]))
        return ingested, time.perf_counter() - started


def peak_rss_kib(pid: int) -> int:
    """VmHWM of ``pid`` plus that of all its descendants."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    total = sum(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        total += sum(peak_rss_kib(int(child)) for child in children.read_text().split())
    return total


def load(
    port: int, key: str, events: int, connections: int, server: subprocess.Popen[bytes]
) -> Run:
    """Customers, then the timed ingest, then how long the projection takes to catch up."""
    customers = []
    for n in range(5):
        body = msgspec.json.encode({"email": f"bench{n}@example.com", "name": f"Bench {n}"})
        status, raw = request(port, "POST", "/customers", key, body)
        if status != 200:
            raise RuntimeError(f"POST /customers answered {status}: {raw[:500]!r}")
        customers.append(msgspec.json.decode(raw)["customer_id"])
    run = Run(make_rows(events, customers), len(customers))
    bodies = encode_batches(run.rows)  # encoded before the clock starts
    ingested, run.elapsed = send_all(port, key, bodies, connections)
    if ingested != events:
        raise RuntimeError(f"ingested_count summed to {ingested:,}, sent {events:,}")
    started = time.perf_counter()
    while not run.lags or (run.lags[-1] > 0 and time.perf_counter() - started < 60):
        health = msgspec.json.decode(request(port, "GET", "/health", key)[1])
        run.lags.append(health["log_position"] - health["projection_position"])
        time.sleep(0.05 if run.lags[-1] else 0)
    run.catch_up = time.perf_counter() - started
    run.rss_mib = peak_rss_kib(server.pid) / 1024
    if server.poll() is not None:
        raise RuntimeError(f"server died with code {server.returncode}")
    return run


def copy_baseline(dburl: str, rows: list[Row]) -> float:
    """Rows/s of one plain COPY into a logged table with a primary key."""
    with psycopg.connect(dburl) as conn:
        conn.execute(
            "CREATE TABLE bench_copy (event_id text PRIMARY KEY, customer_id text NOT NULL, "
            "event_name text NOT NULL, timestamp timestamptz NOT NULL, metadata jsonb)"
        )
        conn.commit()
        prepared = [(e, c, n, t, Jsonb(m)) for e, c, n, t, m in rows]
        started = time.perf_counter()
        with conn.cursor().copy("COPY bench_copy FROM STDIN") as copy:
            for row in prepared:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        copied = conn.execute("SELECT count(*) FROM bench_copy").fetchone()
        if copied is None or copied[0] != len(rows):
            raise RuntimeError(f"COPY stored {copied}, sent {len(rows):,}")
    return len(rows) / elapsed


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def serve_and_load(
    dburl: str, events: int, connections: int, workers: int
) -> tuple[Run, list[str]]:
    key, port = secrets.token_urlsafe(24), free_port()
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": dburl,
        "LEDGER_BOOTSTRAP_API_KEY": key,
        "LEDGER_LOG_LEVEL": "warning",
        "LEDGER_BACKDATE_WINDOW": "P1D",
    }
    command = [sys.executable, "-m", "api.cli", "serve", "--workers", str(workers), "--port"]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen([*command, str(port)], cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            wait_healthy(port, server)
            run = load(port, key, events, connections, server)
        except BaseException:
            stop(server)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])  # its last words
            raise
        stop(server)
        log.seek(0)
        return run, log.read().decode(errors="replace").strip().splitlines()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def report(dburl: str, events: int, connections: int, workers: int) -> None:
    run, server_log = serve_and_load(dburl, events, connections, workers)
    with psycopg.connect(dburl) as db:
        query = "SELECT count(*) FILTER (WHERE topic LIKE '%UsageEvent%'), count(*) FROM "
        usage, rows_in_log = db.execute(query + "ledger_events").fetchone() or (0, 0)
        version = str((db.execute("SHOW server_version").fetchone() or ("?",))[0]).split()[0]
    if usage != events or rows_in_log != events + run.customers:
        raise RuntimeError(
            f"store holds {usage:,} usage events, {rows_in_log:,} rows; sent {events:,}"
        )
    copy_rate = copy_baseline(dburl, run.rows)
    rate = events / run.elapsed
    problems = [line for line in server_log if "warn" in line.lower() or "error" in line.lower()]
    caught = "caught up" if run.lags[-1] == 0 else f"still {run.lags[-1]:,} behind"
    print(
        f"ingest benchmark: {events:,} events, batches of {BATCH:,}, {connections} connections, "
        f"{workers} server worker(s), PostgreSQL {version}, {os.cpu_count()} cores"
    )
    print(
        f"ledger POST /events/ingest : {rate:,.0f} events/s  ({run.elapsed:.1f} s)  "
        f"server peak RSS {run.rss_mib:,.0f} MiB"
    )
    print(
        f"store check                : {usage:,} usage events in ledger_events, exact "
        f"(+{rows_in_log - usage} customer events)"
    )
    print(
        f"projections                : {run.lags[0]:,} events behind when sending ended, "
        f"{caught} after {run.catch_up:.1f} s"
    )
    print(f"server log                 : {len(server_log)} lines, {len(problems)} warnings/errors")
    for line in problems[:5]:
        print(f"  {line[:200]}")
    print(f"baseline psycopg COPY      : {copy_rate:,.0f} rows/s")
    print(f"ratio ledger / COPY        : {rate / copy_rate:.3f}")
    print(f"target >= {TARGET:,} events/s  : {'met' if rate >= TARGET else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="ledger serve --workers")
    args = parser.parse_args()
    if min(args.events, args.connections, args.workers) < 1:
        parser.error("--events, --connections and --workers must be positive")
    dbname = f"ledger_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        report(
            f"postgresql://postgres@127.0.0.1:5432/{dbname}",
            args.events,
            args.connections,
            args.workers,
        )
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

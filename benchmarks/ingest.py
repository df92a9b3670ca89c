"""Ingest benchmark: the real server under sustained batch load, against a plain COPY.

Run: ``.venv/bin/python benchmarks/ingest.py [--seconds 60] [--workers 1,2,3] [--connections C]``

For each worker count, on a fresh scratch database, ``ledger serve --workers W``
takes batches of 1,000 fresh events (5 customers, tokens and model in the
metadata) from C keep-alive connections (default 4 per worker + 2; the kernel
spreads them over the workers by a hash, so a few could all meet one) for
``--seconds``. Meters are made over the API first, as a user would: a count
and a tokens sum of ``api.call``, and a count of the probe events.

- events/s: usage events answered as ingested over the load window; p50/p99
  the latency of those POSTs.
- lag: log head minus the least projection position (``GET /health``), once a
  second; its max, its value when the load stops, and the seconds until 0.
- probe: once a second one event to a probe customer; another thread polls
  ``GET /meters/{id}/usage`` for that customer; the seconds from the probe's
  200 until the meter counts it (the target's "billable").
- peak RSS: VmHWM of each server process, by role, sampled once a second.
- CPU: seconds used over the load window by the server's processes, by
  PostgreSQL's (backends of other databases left out; backends born and gone
  between samples are missed, so approximate) and by this client; per event
  in microseconds. "catching up" is the same from the load's end to lag 0.
- COPY: one psycopg COPY of as many rows, at most 200,000 (prepared before
  the clock), into a table with a primary key; ratio is ledger / COPY.

Checks: every answer ingested all it carried (no duplicates or rejections);
the meters' totals and ledger_events hold exactly what was answered; the
server's warnings and errors are counted, the first shown. Rate limits stay
at their defaults. Target: 25,000 events/s sustained with probe p99 <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import msgspec
import psycopg
from ingest_load import Batches, Client, Lags, Probe, prepare, sustain, usage
from ingest_proc import Sampler
from ingest_report import Result, report, table
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"
POSTMASTER_PID = Path("/var/run/postgresql/15-main.pid")
COPY_ROWS = 200_000  # the most the baseline copies, all prepared in memory first
CATCH_UP_LIMIT = 120.0  # seconds the projections may take to reach the head after the load


def measure(
    client: Client,
    sampler: Sampler,
    workers: int,
    connections: int,
    seconds: float,
    rate: float = 0.0,
) -> Result:
    """The load with its probes and samplers, then the catch-up and the meters' check."""
    customers, probe_customer, meters = prepare(client)
    batches, lags = Batches(customers), Lags(client)
    probe = Probe(client, meters["probes"], probe_customer)
    marks, before = sampler.cpu_marks(), resource.getrusage(resource.RUSAGE_SELF)
    wal = wal_mark()
    probe.start()
    lags.thread.start()
    load = sustain(client, batches, connections, seconds, rate)
    stopped = time.perf_counter()
    probe.stopping.set()  # no more probes; those in flight are still timed
    lags.stopping.set()
    used = resource.getrusage(resource.RUSAGE_SELF)
    server, postgres = sampler.cpu_seconds(marks)
    roles, workers_cpu = sampler.server_by_role(marks), sampler.api_workers(marks)
    wal_bytes, checkpoints = (now - then for now, then in zip(wal_mark(), wal, strict=True))
    own = used.ru_utime + used.ru_stime - before.ru_utime - before.ru_stime
    result = Result(
        workers=workers,
        connections=connections,
        load=load,
        probes=probe.delays,
        lags=lags.samples,
        cpu={"server": server, "postgres": postgres, "client": own},
        server_roles=roles,
        api_workers=workers_cpu,
        wal_bytes=wal_bytes,
        checkpoints=checkpoints,
    )
    catch_up(client, sampler, result, stopped)
    probe.finish()
    lags.thread.join()
    expected = {"calls": load.events, "tokens": load.tokens, "probes": len(probe.delays)}
    for name, meter_id in meters.items():
        total = usage(client, meter_id).total
        if total != Decimal(expected[name]):
            raise RuntimeError(f"meter {name} totals {total}, answered {expected[name]:,}")
    return result


def wal_mark() -> tuple[int, int]:
    """(WAL bytes written, checkpoints begun) by the cluster so far."""
    with psycopg.connect(ADMIN) as admin:
        row = admin.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
            "checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def catch_up(client: Client, sampler: Sampler, result: Result, stopped: float) -> None:
    """The lag when the load stopped, the seconds until 0, and the CPU that took."""
    marks, conn = sampler.cpu_marks(), client.connect()
    try:
        lag = result.lag_end = client.lag(conn)
        while lag > 0 and time.perf_counter() - stopped < CATCH_UP_LIMIT:
            time.sleep(0.1)
            lag = client.lag(conn)
    finally:
        conn.close()
    result.catch_up = time.perf_counter() - stopped
    if lag > 0:
        raise RuntimeError(f"projections still {lag:,} behind {CATCH_UP_LIMIT:.0f} s after load")
    server, postgres = sampler.cpu_seconds(marks)
    result.after = {"server": server, "postgres": postgres}


def copy_baseline(dburl: str, count: int) -> float:
    """Rows/s of one plain COPY of ``count`` rows like the load's into a logged table."""
    customers = [f"cus_{n}" for n in range(5)]
    batches = Batches(customers)
    rows = [
        (
            f"row_{i:010d}",
            customers[i % 5],
            "api.call",
            batches.stamps[i % 3000],
            Jsonb(msgspec.structs.asdict(batches.metas[(i * 7919) % 5000])),
        )
        for i in range(count)
    ]
    with psycopg.connect(dburl) as conn:
        conn.execute(
            "CREATE TABLE bench_copy (event_id text PRIMARY KEY, customer_id text NOT NULL, "
            "event_name text NOT NULL, timestamp timestamptz NOT NULL, metadata jsonb)"
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy("COPY bench_copy FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        copied = conn.execute("SELECT count(*) FROM bench_copy").fetchone()
    if copied is None or copied[0] != count:
        raise RuntimeError(f"COPY stored {copied}, sent {count:,}")
    return count / elapsed


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_healthy(client: Client, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited early with code {server.returncode}")
        conn = client.connect()
        try:
            client.lag(conn)
        except (OSError, RuntimeError):
            time.sleep(0.2)
            continue
        finally:
            conn.close()
        return
    raise RuntimeError("server did not become healthy in time")


def alive(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        raise RuntimeError(f"server died with code {server.returncode}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_and_measure(
    dbname: str, workers: int, connections: int, seconds: float, rate: float
) -> Result:
    """The server on the scratch database, measured, stopped; its log kept."""
    client = Client(free_port(), secrets.token_urlsafe(24))
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{dbname}",
        "LEDGER_BOOTSTRAP_API_KEY": client.key,
        "LEDGER_LOG_LEVEL": "warning",
        "LEDGER_BACKDATE_WINDOW": "P1D",
    }
    command = [sys.executable, "-m", "api.cli", "serve", "--workers", str(workers)]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [*command, "--port", str(client.port)], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        sampler = Sampler(server.pid, int(POSTMASTER_PID.read_text().split()[0]), dbname)
        try:
            wait_healthy(client, server)
            sampler.thread.start()
            result = measure(client, sampler, workers, connections, seconds, rate)
            alive(server)
        except BaseException:
            stop(server)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])  # its last words
            raise
        finally:
            sampler.stopping.set()
        stop(server)
        log.seek(0)
        result.log = log.read().decode(errors="replace").strip().splitlines()
        result.processes = sorted(sampler.server.values(), key=lambda p: (p.role, p.pid))
    return result


def run_once(workers: int, connections: int, seconds: float, rate: float = 0.0) -> Result:
    """One worker count on its own scratch database, dropped at the end whatever happens."""
    dbname = f"ledger_bench_{secrets.token_hex(4)}"
    dburl = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        result = serve_and_measure(dbname, workers, connections, seconds, rate)
        with psycopg.connect(dburl) as db:
            query = "SELECT count(*) FILTER (WHERE topic LIKE '%UsageEvent%'), count(*) FROM "
            result.store = db.execute(query + "ledger_events").fetchone() or (0, 0)
        if result.store[0] != result.load.events + len(result.probes):
            raise RuntimeError(
                f"store holds {result.store[0]:,} usage events; answered "
                f"{result.load.events + len(result.probes):,}"
            )
        rows = min(result.load.events, COPY_ROWS)
        result.copy = (rows, copy_baseline(dburl, rows))
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load")
    parser.add_argument("--workers", default="1,2,3", help="comma list of ledger serve --workers")
    parser.add_argument(
        "--connections", type=int, help="client connections (default 4 a worker + 2)"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="events/s offered (default 0: as fast as it takes)"
    )
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    if min(counts) < 1 or args.seconds <= 0 or (args.connections or 1) < 1:
        parser.error("--seconds, --workers and --connections must be positive")
    with psycopg.connect(ADMIN) as admin:
        version = str((admin.execute("SHOW server_version").fetchone() or ("?",))[0]).split()[0]
        for setting in ("shared_buffers", "max_wal_size"):  # what sustained writes lean on
            value = (admin.execute(f"SHOW {setting}").fetchone() or ("?",))[0]
            version += f", {setting} {value}"
    results, failed = [], []
    for workers in counts:
        try:
            result = run_once(workers, args.connections or 4 * workers + 2, args.seconds, args.rate)
        except Exception as error:  # noqa: BLE001 - the other worker counts still run
            print(f"\n{workers} worker(s): FAILED: {error}", file=sys.stderr)
            failed.append(workers)
            continue
        report(result, version, args.seconds)
        results.append(result)
    table(results)
    for workers in failed:
        print(f"{workers} worker(s): FAILED (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

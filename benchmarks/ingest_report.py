"""How ``benchmarks/ingest.py`` shows a run: the figures of one worker count, and the table."""

from __future__ import annotations

import math
import os

import msgspec
from ingest_load import Load
from ingest_proc import Process

TARGET_RATE, TARGET_PROBE = 25_000, 1.0


class Result(msgspec.Struct, kw_only=True):
    workers: int
    connections: int
    load: Load
    probes: list[float]  # seconds from each probe's 200 until its meter counted it
    lags: list[int]  # sampled once a second during the load
    cpu: dict[str, float]  # seconds over the load window: server, postgres, client
    server_roles: dict[str, float] = msgspec.field(default_factory=dict)  # the server's, by role
    api_workers: list[float] = msgspec.field(default_factory=list)  # CPU s of each, most first
    wal_bytes: int = 0  # PostgreSQL's WAL written over the load window (all databases)
    checkpoints: int = 0  # checkpoints PostgreSQL began over the load window
    lag_end: int = 0
    catch_up: float = 0.0
    after: dict[str, float] = msgspec.field(default_factory=dict)  # CPU s while catching up
    processes: list[Process] = msgspec.field(default_factory=list)
    store: tuple[int, int] = (0, 0)  # usage events, all rows in ledger_events
    copy: tuple[int, float] = (0, 0.0)  # rows, rows/s
    log: list[str] = msgspec.field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.load.events / self.load.elapsed

    @property
    def lag_max(self) -> int:
        return max([*self.lags, self.lag_end])

    def met(self) -> bool:
        return self.rate >= TARGET_RATE and percentile(self.probes, 0.99) <= TARGET_PROBE


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile; nan for no values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def roles(result: Result) -> dict[str, list[Process]]:
    """Processes by role; with one worker the serving process runs the projections too."""
    named: dict[str, list[Process]] = {}
    for process in result.processes:
        role = (
            "API + projections" if result.workers == 1 and process.role == "serve" else process.role
        )
        named.setdefault(role, []).append(process)
    return named


def mib(processes: list[Process]) -> str:
    return f"{max(p.peak_kib for p in processes) / 1024:,.0f}" if processes else "-"


def report(result: Result, version: str, seconds: float) -> None:
    load, events, probes = result.load, result.load.events, result.probes
    p50, p99 = percentile(load.latencies, 0.5) * 1000, percentile(load.latencies, 0.99) * 1000
    print(
        f"\ningest benchmark, {result.workers} worker(s): {result.connections} connections, "
        f"batches of 1,000 for {seconds:g} s, PostgreSQL {version}, {os.cpu_count()} cores"
    )
    print(f"  events/s          : {result.rate:,.0f}  ({events:,} events in {load.elapsed:.1f} s)")
    print(
        f"  POST latency      : p50 {p50:,.0f} ms, p99 {p99:,.0f} ms, "
        f"max {max(load.latencies) * 1000:,.0f} ms ({len(load.latencies):,} POSTs)"
    )
    print(
        f"  projection lag    : max {result.lag_max:,} events, {result.lag_end:,} when the load "
        f"stopped, 0 after {result.catch_up:.1f} s"
    )
    print(
        f"  probe to billable : {len(probes)} probes, p50 {percentile(probes, 0.5):.2f} s, "
        f"p99 {percentile(probes, 0.99):.2f} s, max {max(probes, default=0):.2f} s"
    )
    rss = [
        f"{role} (pid {p.pid}) {p.peak_kib / 1024:,.0f}"
        for role, processes in roles(result).items()
        for p in processes
    ]
    print(f"  peak RSS MiB      : {', '.join(rss)}")
    cores = ", ".join(
        f"{who} {cpu:.1f} s ({cpu / load.elapsed:.2f} cores, {cpu * 1e6 / events:,.0f} µs/event)"
        for who, cpu in result.cpu.items()
    )
    print(f"  CPU, load window  : {cores}")
    split = ", ".join(
        f"{role} {cpu * 1e6 / events:,.0f}"
        for role, cpu in sorted(result.server_roles.items(), key=lambda kv: -kv[1])
        if cpu * 1e6 / events >= 0.5
    )
    if len(result.api_workers) > 1:
        split += (
            " (API workers' shares "
            + "/".join(f"{cpu / sum(result.api_workers):.0%}" for cpu in result.api_workers)
            + ")"
        )
    print(f"  server µs/event   : {split}")
    print(
        f"  WAL, load window  : {result.wal_bytes / 1e6:,.0f} MB, "
        f"{result.wal_bytes / max(events, 1):,.0f} B/event, {result.checkpoints} checkpoint(s)"
    )
    print(
        f"  CPU, catching up  : server {result.after['server']:.1f} s, "
        f"postgres {result.after['postgres']:.1f} s (postgres approximate)"
    )
    usage, rows = result.store
    print(
        f"  store check       : {usage:,} usage events in ledger_events = answered "
        f"(+{rows - usage} other rows); meters calls, tokens, probes exact"
    )
    problems = [line for line in result.log if "warn" in line.lower() or "error" in line.lower()]
    print(f"  server log        : {len(result.log)} lines, {len(problems)} warnings/errors")
    for line in problems[:5]:
        print(f"    {line[:200]}")
    copied, rate = result.copy
    which = "as many as ingested" if copied == events else f"fixed; {events:,} were ingested"
    print(
        f"  COPY baseline     : {rate:,.0f} rows/s ({copied:,} rows, {which}); "
        f"ratio ledger/COPY {result.rate / rate:.3f}"
    )
    print(f"  {verdict(result)}")


def verdict(result: Result) -> str:
    return (
        f"target >= {TARGET_RATE:,} events/s sustained with probe p99 <= {TARGET_PROBE:g} s: "
        f"{'met' if result.met() else 'NOT met'}"
    )


def table(results: list[Result]) -> None:
    print(
        "\nworkers events/s p50_ms p99_ms lag_max lag_end catchup_s probe_p99_s "
        "rss_api_MiB rss_proj_MiB cpu_us/ev_server cpu_us/ev_pg copy_rows/s ratio"
    )
    for r in results:
        named, lat = roles(r), r.load.latencies
        api = named.get("API worker", named.get("API + projections", []))
        proj = mib(named["projections"]) if "projections" in named else "in-API"
        print(
            f"{r.workers:>7} {r.rate:>8,.0f} {percentile(lat, 0.5) * 1000:>6,.0f} "
            f"{percentile(lat, 0.99) * 1000:>6,.0f} {r.lag_max:>7,} {r.lag_end:>7,} "
            f"{r.catch_up:>9.1f} {percentile(r.probes, 0.99):>11.2f} {mib(api):>11} {proj:>12} "
            f"{r.cpu['server'] * 1e6 / r.load.events:>16,.0f} "
            f"{r.cpu['postgres'] * 1e6 / r.load.events:>12,.0f} {r.copy[1]:>11,.0f} "
            f"{r.rate / r.copy[1]:>5.3f}"
        )
    for r in results:
        print(f"{r.workers} worker(s): {verdict(r)}")

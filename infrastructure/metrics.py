"""Prometheus metrics: what a process counts, and the directory processes share.

Counters and the latency histogram are incremented where things happen (the
HTTP middleware, ingest, the billing loop, webhook delivery), in whichever
process does them. Under ``serve --workers N`` every process writes its values
to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess
mode, which the library chooses when it is first imported) and a scrape from
any worker sums them. What the database knows (projection positions, the log's
head, webhook messages by status) is read at scrape time instead, by
``infrastructure.scrape``, so it is right whichever process answers.

The pool of a process is its own: with one process it is read at scrape time;
with several each process publishes its pool every ``POOL_SAMPLE_SECONDS`` to
``livesum`` gauges, and a process's live gauges go when it does
(``forget_process``, ``forget_dead_processes``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.multiprocess import mark_process_dead

from application.billing_tasks import Tick
from application.delivery import Outcome
from application.ledger import IngestOutcome

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
POOL_SAMPLE_SECONDS = 1.0
UNMATCHED = "unmatched"  # the route label of a request no route matched (404, 405)
# The methods the API answers; anything else is one label, so a client cannot
# mint new series by inventing methods.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: a read answers in milliseconds, a batch of 1,000 events in about a
# second; past 30 s a client has given up. Twelve buckets a series, no more.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INGEST_OUTCOMES = ("accepted", "duplicate", "rejected")
ATTEMPT_OUTCOMES = ("delivered", "retry", "failed")
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")

# ``_created`` series double the output and multiprocess mode has none: the same
# families, whichever way the process runs.
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "ledger_http_requests_total",
    "HTTP requests answered, by method, route template and final status",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "ledger_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
IN_PROGRESS = Gauge(
    "ledger_http_requests_in_progress",
    "HTTP requests being answered now, over every live process",
    multiprocess_mode="livesum",
)
EVENTS = Counter(
    "ledger_events_total",
    "Usage events judged one by one by ingest, by outcome (accepted, duplicate, rejected)",
    ["outcome"],
)
REJECTED = Counter(
    "ledger_events_rejected_total",
    "Usage events rejected by ingest, by the code given to the client",
    ["code"],
)
BILLING_RUNS = Counter(
    "ledger_billing_runs_total",
    "Billing runs (one look at what the schedule says is due), by outcome (ok, failed)",
    ["outcome"],
)
CYCLES_FINALIZED = Counter(
    "ledger_billing_cycles_finalized_total",
    "Billing cycles finalized into invoices",
)
WEBHOOK_ATTEMPTS = Counter(
    "ledger_webhook_attempts_total",
    "Webhook delivery attempts recorded, by outcome (delivered; retry: failed, due again; "
    "failed: failed, given up)",
    ["outcome"],
)
for _outcome in INGEST_OUTCOMES:  # zero series, so a rate exists before the first event
    EVENTS.labels(_outcome)
for _outcome in ("ok", "failed"):
    BILLING_RUNS.labels(_outcome)
for _outcome in ATTEMPT_OUTCOMES:
    WEBHOOK_ATTEMPTS.labels(_outcome)


@dataclass(frozen=True, slots=True)
class PoolStats:
    in_use: int
    waiting: int
    max_size: int


def record_request(method: str, route: str | None, status: int, seconds: float) -> None:
    method = method if method in METHODS else "other"
    route = route or UNMATCHED
    REQUESTS.labels(method, route, str(status)).inc()
    REQUEST_SECONDS.labels(method, route).observe(seconds)


def record_ingest(outcome: IngestOutcome) -> None:
    EVENTS.labels("accepted").inc(outcome.ingested_count)
    EVENTS.labels("duplicate").inc(len(outcome.duplicates))
    EVENTS.labels("rejected").inc(len(outcome.rejected))
    for rejection in outcome.rejected:
        REJECTED.labels(rejection.code).inc()


def record_billing(done: Tick | None) -> None:
    """One billing run: what it finalized, or None when it failed."""
    BILLING_RUNS.labels("failed" if done is None else "ok").inc()
    if done is not None:
        CYCLES_FINALIZED.inc(len(done.finalized))


def record_attempt(outcome: Outcome, *, retried: bool) -> None:
    WEBHOOK_ATTEMPTS.labels("delivered" if outcome.ok else "retry" if retried else "failed").inc()


def pool_stats(datastore: Any) -> PoolStats | None:
    """The PostgreSQL pool's state now; None on SQLite, which has no pool to speak of."""
    if not isinstance(datastore, PostgresDatastore):
        return None
    stats = datastore.pool.get_stats()
    return PoolStats(
        in_use=max(stats.get("pool_size", 0) - stats.get("pool_available", 0), 0),
        waiting=stats.get("requests_waiting", 0),
        max_size=stats.get("pool_max", 0),
    )


@cache
def _pool_gauges() -> tuple[Gauge, Gauge, Gauge]:
    """Made by the first publish: an unlabelled gauge writes its file when made, and a
    process with no pool (SQLite) should not report one of 0. Not registered: with one
    process the pool is read at scrape time instead."""
    return (
        Gauge(
            "ledger_db_pool_connections_in_use",
            "Database connections lent out by the pool",
            multiprocess_mode="livesum",
            registry=None,
        ),
        Gauge(
            "ledger_db_pool_requests_waiting",
            "Requests waiting for a database connection from the pool",
            multiprocess_mode="livesum",
            registry=None,
        ),
        Gauge(
            "ledger_db_pool_connections_max",
            "The most connections the pool may open",
            multiprocess_mode="livesum",
            registry=None,
        ),
    )


def publish_pool(stats: PoolStats) -> None:
    """This process's pool, for a scrape in any process (summed over the live ones)."""
    in_use, waiting, most = _pool_gauges()
    in_use.set(stats.in_use)
    waiting.set(stats.waiting)
    most.set(stats.max_size)


def multiprocess_directory() -> str | None:
    """The directory processes share, as prometheus-client itself finds it."""
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass(frozen=True, slots=True)
class SharedDirectory:
    """The multiprocess directory of one ``serve`` run."""

    path: Path
    created: bool  # made for this run, so removed at its end

    def close(self, env: MutableMapping[str, str]) -> None:
        if self.created:
            env.pop(MULTIPROC_ENV, None)
            shutil.rmtree(self.path, ignore_errors=True)


def share_directory(env: MutableMapping[str, str], processes: int) -> SharedDirectory | None:
    """The directory ``serve``'s processes will share, set in ``env`` for them to inherit.

    The operator's own (``PROMETHEUS_MULTIPROC_DIR``) is emptied of an earlier
    run's files; otherwise, for more than one process, a temporary one is made.
    None: one process, whose metrics stay in memory.
    """
    if given := env.get(MULTIPROC_ENV):
        fresh_directory(Path(given))
        return SharedDirectory(Path(given), created=False)
    if processes <= 1:
        return None
    created = Path(tempfile.mkdtemp(prefix="ledger-metrics-"))
    env[MULTIPROC_ENV] = str(created)
    return SharedDirectory(created, created=True)


def fresh_directory(directory: Path) -> None:
    """Remove an earlier run's files. This process's own stay: prometheus-client opened
    them when it was imported, with the variable already set."""
    directory.mkdir(parents=True, exist_ok=True)
    own = f"_{os.getpid()}.db"
    for path in directory.glob("*.db"):
        if not path.name.endswith(own):
            path.unlink(missing_ok=True)


def forget_process(pid: int) -> None:
    """A process has stopped: its live gauges (in progress, pool) no longer count."""
    if (directory := multiprocess_directory()) is not None:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of processes that died without saying so (a killed worker)."""
    found = (_LIVE_FILE.match(path.name) for path in Path(directory).iterdir())
    for pid in {int(match.group(1)) for match in found if match}:
        if not _alive(pid):
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and not ours to judge
    return True

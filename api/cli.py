"""The ``ledger`` command: serve, projections, billing, audit, replay, events, keys, demo."""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

import structlog
import uvicorn
from litestar import Litestar

from api.app import create_app
from api.cli_events import add_commands as add_event_commands
from api.cli_replay import add_commands as add_replay_commands
from api.demo import run_demo
from domain.errors import DomainError
from domain.usage import parse_timestamp
from infrastructure.audit import audit
from infrastructure.bootstrap import build, utc_now
from infrastructure.logging import configure_logging
from infrastructure.rebuild import tune_gc_for_batches
from infrastructure.settings import ConfigError, Settings

log = structlog.get_logger("ledger.cli")


def _settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except ConfigError as error:
        print(f"ledger: configuration error: {error}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


_FOLLOW_IN_WORKERS = "_LEDGER_SERVE_FOLLOW"  # passed from `serve` to its worker processes


def worker_app() -> Litestar:
    """The app of one ``serve`` worker process (uvicorn's factory)."""
    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    return create_app(build(settings), follow=os.environ.get(_FOLLOW_IN_WORKERS) == "1")


def _serve(args: argparse.Namespace) -> int:
    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    store = "postgresql" if settings.is_postgres else f"sqlite ({settings.sqlite_path})"
    # One worker keeps the projections in its own process; several workers leave
    # them to one `ledger projections run` child, so no two processes race for them.
    projections = "none" if args.no_projections else "in-process"
    if not args.no_projections and args.workers > 1:
        projections = "child process"
    log.info(
        "starting",
        host=args.host,
        port=args.port,
        workers=args.workers,
        projections=projections,
        store=store,
        bootstrap_key=settings.bootstrap_api_key is not None,
    )
    build(settings).close()  # create the tables once, before any worker starts
    os.environ[_FOLLOW_IN_WORKERS] = "1" if projections == "in-process" else "0"
    child = None
    if projections == "child process":
        command = [sys.executable, "-m", "api.cli", "projections", "run"]
        child = subprocess.Popen(command)  # noqa: S603 - our own interpreter and module
    try:
        uvicorn.run(
            "api.cli:worker_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=15)
    return 0


def _projections_run(_: argparse.Namespace) -> int:
    """Keep every projection up to date until SIGTERM or SIGINT."""
    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    container = build(settings)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    container.start_projections()
    container.start_billing()
    log.info("projections_running", position=container.projection_position)
    try:
        stopping.wait()
    finally:
        for follower in container.followers:
            follower.stop()
        log.info("projections_stopped", position=container.projection_position)
        container.close()
    return 0


def _projections_status(args: argparse.Namespace) -> int:
    container = build(_settings())
    try:
        rows = container.status()
    finally:
        container.close()
    if args.json:
        sys.stdout.write(
            json.dumps(
                [
                    {"name": r.name, "position": r.position, "head": r.head, "behind": r.behind}
                    for r in rows
                ]
            )
            + "\n"
        )
        return 0
    sys.stdout.write(f"{'projection':<14}{'position':>14}{'log head':>14}{'behind':>14}\n")
    for r in rows:
        sys.stdout.write(f"{r.name:<14}{r.position:>14,}{r.head:>14,}{r.behind:>14,}\n")
    return 0


def _projections_rebuild(args: argparse.Namespace) -> int:
    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    container = build(settings)
    tune_gc_for_batches()
    try:
        names = [args.name] if args.name else [f.projection.name for f in container.followers]
        for name in names:
            try:
                container.projection(name)
            except KeyError as error:
                print(f"ledger: {error.args[0]}", file=sys.stderr)  # noqa: T201
                return 2
        head = container.ledger.recorder.max_notification_id() or 0
        for name in names:
            bar = ProgressBar(name, head, sys.stderr)
            started = time.perf_counter()
            read = container.rebuild(name, bar.update)
            bar.done()
            elapsed = time.perf_counter() - started
            log.info(
                "projection_rebuilt",
                projection=name,
                log_entries=read,
                seconds=round(elapsed, 2),
                per_second=round(read / elapsed) if elapsed else None,
                peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            )
    finally:
        container.close()
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the log, every invoice and every projection check out; 1 otherwise."""
    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    since = None
    if args.since is not None:
        try:
            since = parse_timestamp(args.since)
        except DomainError as error:
            print(f"ledger: --since: {error.message}", file=sys.stderr)  # noqa: T201
            return 2
    container = build(settings)
    head = container.ledger.recorder.max_notification_id() or 0
    bars: dict[str, ProgressBar] = {}

    def progress(check: str, done: int) -> None:
        bar = bars.setdefault(check, ProgressBar(check, head if check == "log" else 0, sys.stderr))
        bar.update(done, done)

    try:
        report = audit(container, customer_id=args.customer, since=since, progress=progress)
    finally:
        for bar in bars.values():
            bar.done()
        container.close()
    summary = {
        "ok": report.ok,
        "events_checked": report.events,
        "events_unsealed": report.unsealed,
        "invoices_checked": report.invoices,
        "projections_checked": report.projections,
        "mismatches": [
            {"check": m.check, "subject": m.subject, "detail": m.detail} for m in report.mismatches
        ],
    }
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        sys.stdout.write(
            f"log: {report.events:,} events checked against their seal"
            f" ({report.unsealed:,} not sealed yet)\n"
            f"invoices: {report.invoices:,} folded again and compared\n"
            f"projections: {', '.join(report.projections) or 'none'} rebuilt and compared\n"
        )
        for m in report.mismatches:
            sys.stdout.write(f"MISMATCH [{m.check}] {m.subject}: {m.detail}\n")
        sys.stdout.write(
            "audit: OK\n" if report.ok else f"audit: {len(report.mismatches)} mismatch(es)\n"
        )
    return 0 if report.ok else 1


class ProgressBar:
    """A one-line bar on a terminal; silent when the output is not one."""

    def __init__(self, label: str, total: int, stream: TextIO) -> None:
        self.label, self.total, self.stream = label, max(total, 1), stream
        self.enabled = stream.isatty()
        self.started = time.perf_counter()

    def update(self, processed: int, position: int) -> None:
        if not self.enabled:
            return
        share = min(position / self.total, 1.0)
        filled = int(share * 30)
        rate = processed / max(time.perf_counter() - self.started, 1e-9)
        self.stream.write(
            f"\r{self.label:<12} [{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} "
            f"{position:,}/{self.total:,}  {rate:,.0f}/s"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def _billing_close(_: argparse.Namespace) -> int:
    """Finalize every due cycle (for deployments that prefer cron); safe to repeat."""
    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    container = build(settings)
    try:
        closed = container.close_cycles(catch_up=True)
    finally:
        container.close()
    for record in closed:
        sys.stdout.write(
            f"{record.invoice_id}  {record.subscription_id}  cycle {record.cycle_index}  "
            f"{record.total_minor} {record.currency} (minor units)  sha256 {record.sha256}\n"
        )
    sys.stderr.write(f"finalized {len(closed)} invoice(s)\n")
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    container = build(_settings())
    try:
        token = container.keys.create(args.business, args.scope, utc_now())
    except ValueError as error:
        print(f"ledger: {error}", file=sys.stderr)  # noqa: T201
        return 2
    finally:
        container.close()
    sys.stdout.write(f"{token}\n")
    sys.stderr.write(
        f"created a {args.scope} key for business {args.business!r}; "
        "it is shown once and stored only as a hash\n"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    return run_demo(args.host, args.port)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ledger", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (and its projections)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="HTTP worker processes (default 1)")
    serve.add_argument(
        "--no-projections",
        action="store_true",
        help="do not keep projections up to date here (run `ledger projections run`)",
    )
    serve.set_defaults(run=_serve)

    projections = commands.add_parser("projections", help="the read models built from the log")
    projection_commands = projections.add_subparsers(dest="projections_command", required=True)
    run = projection_commands.add_parser(
        "run", help="keep every projection up to date, in this process, until stopped"
    )
    run.set_defaults(run=_projections_run)
    status = projection_commands.add_parser(
        "status", help="each projection's position and how far behind the log it is"
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(run=_projections_status)
    rebuild = projection_commands.add_parser(
        "rebuild", help="drop a projection (or all) and build it again from the log"
    )
    rebuild.add_argument(
        "name", nargs="?", help="event_index, usage or credit_balances (default: all)"
    )
    rebuild.set_defaults(run=_projections_rebuild)

    billing = commands.add_parser("billing", help="invoices")
    billing_commands = billing.add_subparsers(dest="billing_command", required=True)
    close = billing_commands.add_parser(
        "close", help="finalize every cycle that ended LEDGER_INVOICE_GRACE ago or more"
    )
    close.set_defaults(run=_billing_close)

    audit_parser = commands.add_parser("audit", help="prove the numbers from the log")
    audit_commands = audit_parser.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check the log against its seal, fold every invoice again, rebuild and compare "
        "every projection; exit 1 listing each mismatch",
    )
    verify.add_argument("--customer", help="only this customer's invoices")
    verify.add_argument("--since", help="only invoices of cycles ending at or after (ISO 8601)")
    verify.add_argument("--json", action="store_true", help="print JSON instead of text")
    verify.set_defaults(run=_audit_verify)

    add_replay_commands(commands)
    add_event_commands(commands)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key; printed once")
    create.add_argument("--business", required=True, help="the business the key acts for")
    create.add_argument("--scope", choices=["ingest", "admin"], default="admin")
    create.set_defaults(run=_keys_create)

    demo = commands.add_parser(
        "demo", help="start the service on the SQLite default and show it ingesting"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(run=_demo)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

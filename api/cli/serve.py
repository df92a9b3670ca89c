"""``ledger serve`` and ``ledger demo``: the HTTP API, alone or with a worked example."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from typing import Any

import uvicorn
from litestar import Litestar

from api.app import create_app
from api.cli.common import Commands, configured, log
from api.cli.demo import run_demo
from api.cli.workers import run_workers
from infrastructure.bootstrap import build
from infrastructure.metrics import forget_process, share_directory
from infrastructure.rebuild import tune_gc_for_batches

_FOLLOW_IN_WORKERS = "_LEDGER_SERVE_FOLLOW"  # passed from `serve` to its worker processes


def add_commands(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="run the HTTP API (and its projections)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="HTTP worker processes (default 1)")
    serve.add_argument(
        "--no-projections",
        action="store_true",
        help="do not keep projections up to date here (run `ledger projections run`)",
    )
    serve.set_defaults(run=serve_command)
    demo = commands.add_parser(
        "demo", help="start the service on the SQLite default and show it working"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(run=lambda args: run_demo(args.host, args.port))


def worker_app() -> Litestar:
    """The app of one ``serve`` worker process (uvicorn's factory)."""
    settings = configured()
    app = create_app(build(settings), follow=os.environ.get(_FOLLOW_IN_WORKERS) == "1")
    # Every ingest batch makes tens of thousands of short-lived objects: the collector
    # runs less often, and the app made so far is frozen out of its way.
    tune_gc_for_batches(long_running=True)
    return app


def serve_command(args: argparse.Namespace) -> int:
    settings = configured()
    store = "postgresql" if settings.is_postgres else f"sqlite ({settings.sqlite_path})"
    # One worker keeps the projections and the billing loop in its own process;
    # several leave them to one `ledger projections run` child, so no two race for them.
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
    # Before any child starts, so every worker and the projections child write there.
    shared = share_directory(os.environ, args.workers)
    child = None
    if projections == "child process":
        command = [sys.executable, "-m", "api.cli", "projections", "run"]
        child = subprocess.Popen(command)  # noqa: S603 - our own interpreter and module
    # uvicorn answers SIGTERM/SIGINT gracefully, then raises the signal again for the
    # handler it found: this one, so a graceful stop exits 0 instead of dying by it.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _: log.info("stopped", signal=received))
    options: dict[str, Any] = {
        "factory": True,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "log_config": None,
        "access_log": False,
        # SIGTERM: stop accepting, let requests in flight finish within this time,
        # then the lifespan stops the loops (projections at a batch boundary).
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_seconds)),
    }
    try:
        if args.workers > 1:
            run_workers(uvicorn.Config("api.cli.serve:worker_app", **options))
        else:
            uvicorn.run("api.cli.serve:worker_app", **options)
    finally:
        if child is not None:
            child.terminate()
            try:
                child.wait(timeout=settings.shutdown_seconds + 15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=15)
            forget_process(child.pid)
        if shared is not None:
            forget_process(os.getpid())  # its own, had it imported metrics with the directory set
            shared.close(os.environ)
    return 0

"""``ledger projections run|status|rebuild``: the read models built from the log."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from api.cli.common import Commands, ProgressBar, container, log, log_done, refuse
from infrastructure.bootstrap import Container
from infrastructure.projections import NAMES
from infrastructure.rebuild import rebuild, tune_gc_for_batches
from infrastructure.runtime import Runtime, projection_position, status


def add_commands(commands: Commands) -> None:
    projections = commands.add_parser("projections", help="the read models built from the log")
    group = projections.add_subparsers(dest="projections_command", required=True)
    run = group.add_parser(
        "run", help="keep every projection up to date, and bill, in this process until stopped"
    )
    run.set_defaults(run=run_command)
    show = group.add_parser(
        "status", help="each projection's position and how far behind the log it is"
    )
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(run=status_command)
    again = group.add_parser(
        "rebuild", help="drop a projection (or all) and build it again from the log"
    )
    again.add_argument("name", nargs="?", help=f"one of {', '.join(NAMES)} (default: all)")
    again.set_defaults(run=rebuild_command)


def run_command(_: argparse.Namespace) -> int:
    """Keep every projection up to date and run the billing loop until SIGTERM or SIGINT."""
    built = container()
    runtime = Runtime(built)
    tune_gc_for_batches(long_running=True)  # it reads the log in batches all day long
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    runtime.start()
    log.info("projections_running", position=projection_position(built))
    try:
        stopping.wait()
    finally:
        runtime.stop()
        log.info("projections_stopped", position=projection_position(built))
        built.close()
    return 0


def status_command(args: argparse.Namespace) -> int:
    built = container()
    try:
        rows = status(built)
    finally:
        built.close()
    if args.json:
        found = [
            {"name": r.name, "position": r.position, "head": r.head, "behind": r.behind}
            for r in rows
        ]
        sys.stdout.write(json.dumps(found) + "\n")
        return 0
    sys.stdout.write(f"{'projection':<18}{'position':>14}{'log head':>14}{'behind':>14}\n")
    for r in rows:
        sys.stdout.write(f"{r.name:<18}{r.position:>14,}{r.head:>14,}{r.behind:>14,}\n")
    return 0


def rebuild_command(args: argparse.Namespace) -> int:
    if args.name is not None and args.name not in NAMES:
        return refuse(f"no projection {args.name!r}; there are: {', '.join(NAMES)}")
    built = container()
    tune_gc_for_batches()
    try:
        rebuild_all(built, [args.name] if args.name else list(NAMES))
    finally:
        built.close()
    return 0


def rebuild_all(built: Container, names: list[str]) -> None:
    """Each projection named, from the whole log, with a progress bar on a terminal."""
    head = built.ledger.head()
    for name in names:
        bar = ProgressBar(name, head)
        started = time.perf_counter()
        read = rebuild(built, name, bar.update)
        bar.done()
        log_done("projection_rebuilt", read, started, projection=name)

"""``ledger events export|import``: move the whole event log between stores.

Export writes the log as ``ledger-events`` NDJSON (see ``infrastructure.export``)
to stdout or a file; import loads such a file into an empty store in one
transaction, keeping every position, then rebuilds every projection. API keys
are not events: create them again on the new store.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from eventsourcing.persistence import IntegrityError

from api.cli.common import Commands, ProgressBar, container, log_done
from api.cli.projections import rebuild_all
from application.transfer import ExportReader, TransferError, export_events
from infrastructure.export import import_events
from infrastructure.projections import NAMES
from infrastructure.rebuild import tune_gc_for_batches


def add_commands(commands: Commands) -> None:
    events = commands.add_parser("events", help="the event log as a file, to move stores")
    event_commands = events.add_subparsers(dest="events_command", required=True)
    export = event_commands.add_parser(
        "export", help="write the whole log as ledger-events NDJSON (stdout by default)"
    )
    export.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE (it appears only when complete)"
    )
    export.set_defaults(run=export_command)
    load = event_commands.add_parser(
        "import", help="load an export into an EMPTY store, then rebuild the projections"
    )
    load.add_argument("file", nargs="?", default="-", metavar="FILE|-", help="default: stdin")
    load.set_defaults(run=import_command)


def export_command(args: argparse.Namespace) -> int:
    built = container()
    started = time.perf_counter()
    try:
        bar = ProgressBar("export", built.ledger.head())
        with _output(args.output) as out:
            summary = export_events(built.ledger, out, bar.update)
        bar.done()
    finally:
        built.close()
    log_done("events_exported", summary.count, started, head=summary.head, sha256=summary.sha256)
    return 0


@contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    partial = target.with_name(f"{target.name}.partial")
    try:
        with partial.open("wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def import_command(args: argparse.Namespace) -> int:
    if args.file == "-" and sys.stdin.isatty():
        return _refuse("give an export FILE, or pipe one in", code=2)
    try:
        source = sys.stdin.buffer if args.file == "-" else Path(args.file).open("rb")  # noqa: SIM115
    except OSError as error:
        return _refuse(f"cannot read {args.file}: {error.strerror}", code=2)
    built = container()
    tune_gc_for_batches()
    try:
        with source:
            started = time.perf_counter()
            try:
                reader = ExportReader(source)
                bar = ProgressBar("import", reader.header.head)
                summary = import_events(built.ledger, reader, bar.update)
            except (TransferError, IntegrityError) as error:
                return _refuse(f"refused, nothing written: {error}", code=1)
            bar.done()
        log_done("events_imported", summary.count, started, head=summary.head)
        rebuild_all(built, list(NAMES))  # if this fails: `ledger projections rebuild`
    finally:
        built.close()
    return 0


def _refuse(message: str, code: int) -> int:
    print(f"ledger: events import: {message}", file=sys.stderr)  # noqa: T201
    return code

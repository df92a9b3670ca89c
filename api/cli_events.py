"""``ledger events export|import``: move the whole event log between stores.

Export writes the log as ``ledger-events`` NDJSON (see ``infrastructure.export``)
to stdout or a file; import loads such a file into an empty store in one
transaction, keeping every position, then rebuilds every projection. API keys
are not events: create them again on the new store.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import structlog
from eventsourcing.persistence import IntegrityError

from application.transfer import ExportReader, TransferError, export_events
from infrastructure.bootstrap import Container, build
from infrastructure.export import import_events
from infrastructure.logging import configure_logging
from infrastructure.rebuild import tune_gc_for_batches

if TYPE_CHECKING:
    from api.cli import ProgressBar

log = structlog.get_logger("ledger.cli")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


# api.cli imports this module to wire it in, so its helpers are imported at call time.


def _container() -> Container:
    from api.cli import _settings  # noqa: PLC0415 - see above

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    return build(settings)


def _bar(label: str, total: int) -> ProgressBar:
    from api.cli import ProgressBar  # noqa: PLC0415 - see above

    return ProgressBar(label, total, sys.stderr)


def export_command(args: argparse.Namespace) -> int:
    container = _container()
    started = time.perf_counter()
    try:
        bar = _bar("export", container.ledger.recorder.max_notification_id() or 0)
        with _output(args.output) as out:
            summary = export_events(container.ledger, out, bar.update)
        bar.done()
    finally:
        container.close()
    _log_done("events_exported", summary.count, started, head=summary.head, sha256=summary.sha256)
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
    container = _container()
    tune_gc_for_batches()
    try:
        with source:
            started = time.perf_counter()
            try:
                reader = ExportReader(source)
                bar = _bar("import", reader.header.head)
                summary = import_events(container.ledger, reader, bar.update)
            except (TransferError, IntegrityError) as error:
                return _refuse(f"refused, nothing written: {error}", code=1)
            bar.done()
        _log_done("events_imported", summary.count, started, head=summary.head)
        rebuild_projections(container)  # if this fails: `ledger projections rebuild`
    finally:
        container.close()
    return 0


def _refuse(message: str, code: int) -> int:
    print(f"ledger: events import: {message}", file=sys.stderr)  # noqa: T201
    return code


def rebuild_projections(container: Container) -> None:
    """Every projection, from the whole log, with a progress bar on a terminal."""
    head = container.ledger.recorder.max_notification_id() or 0
    for follower in container.followers:
        name = follower.projection.name
        bar = _bar(name, head)
        started = time.perf_counter()
        read = container.rebuild(name, bar.update)
        bar.done()
        _log_done("projection_rebuilt", read, started, projection=name)


def _log_done(message: str, count: int, started: float, **fields: object) -> None:
    elapsed = time.perf_counter() - started
    log.info(
        message,
        count=count,
        seconds=round(elapsed, 2),
        per_second=round(count / elapsed) if elapsed else None,
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **fields,
    )

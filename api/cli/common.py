"""What every command group shares: settings read once, a progress bar, a done line."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from typing import TextIO, TypeAlias

import structlog

from infrastructure.bootstrap import Container, build
from infrastructure.logging import configure_logging
from infrastructure.settings import ConfigError, Settings

log = structlog.get_logger("ledger.cli")
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # argparse's own


def settings() -> Settings:
    """The settings from the environment; a bad one stops the command with one line."""
    try:
        return Settings.from_env(os.environ)
    except ConfigError as error:
        print(f"ledger: configuration error: {error}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


def configured() -> Settings:
    """The settings, with logging configured by them."""
    found = settings()
    configure_logging(found.log_format, found.log_level)
    return found


def container() -> Container:
    return build(configured())


class ProgressBar:
    """A one-line bar on a terminal; silent when the output is not one."""

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr) -> None:
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
            f"\r{self.label:<16} [{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} "
            f"{position:,}/{self.total:,}  {rate:,.0f}/s"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def log_done(message: str, count: int, started: float, **fields: object) -> None:
    """One log line for a long step: how many, how long, how fast, peak memory."""
    elapsed = time.perf_counter() - started
    log.info(
        message,
        count=count,
        seconds=round(elapsed, 2),
        per_second=round(count / elapsed) if elapsed else None,
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **fields,
    )


def refuse(message: str, code: int = 2) -> int:
    print(f"ledger: {message}", file=sys.stderr)  # noqa: T201
    return code

"""The ``ledger`` command: serve, projections, billing, audit, replay, events, keys, webhooks, demo.

One module per command group; each adds its commands to the parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from api.cli import audit, billing, events, keys, projections, replay, serve, webhooks


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ledger", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    for group in (serve, projections, billing, audit, replay, events, keys, webhooks):
        group.add_commands(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code

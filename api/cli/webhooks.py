"""``ledger webhooks replay``: send a range of messages again after a receiver's outage.

The messages keep their ``webhook-id``, so a receiver that already has one
drops the copy. A running server's delivery loop sends them (this command only
makes them due now).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from api.cli.common import Commands, container, refuse
from application.webhooks import replay_messages
from infrastructure.bootstrap import utc_now


def add_commands(commands: Commands) -> None:
    webhooks = commands.add_parser("webhooks", help="webhook delivery")
    group = webhooks.add_subparsers(dest="webhooks_command", required=True)
    replay = group.add_parser(
        "replay", help="make every message of facts since a moment due again, same ids"
    )
    replay.add_argument(
        "--since", required=True, help="ISO 8601 time (UTC if no offset): facts from then on"
    )
    replay.add_argument("--endpoint", help="only this endpoint's messages (wh_...)")
    replay.set_defaults(run=replay_command)


def replay_command(args: argparse.Namespace) -> int:
    try:
        since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
    except ValueError:
        return refuse(f"--since {args.since!r}: an ISO 8601 time, e.g. 2026-12-01T00:00:00Z")
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    built = container()
    try:
        count = replay_messages(built.ledger, built.reads, None, since, args.endpoint, utc_now())
    finally:
        built.close()
    where = f" of endpoint {args.endpoint}" if args.endpoint else ""
    sys.stdout.write(f"{count} messages{where} since {since.isoformat()} due again\n")
    return 0

"""``ledger keys create``: API keys, shown once and stored only as a hash."""

from __future__ import annotations

import argparse
import sys

from api.cli.common import Commands, container, refuse
from infrastructure.bootstrap import utc_now


def add_commands(commands: Commands) -> None:
    keys = commands.add_parser("keys", help="manage API keys")
    group = keys.add_subparsers(dest="keys_command", required=True)
    create = group.add_parser("create", help="create a key; printed once")
    create.add_argument("--business", required=True, help="the business the key acts for")
    create.add_argument("--scope", choices=["ingest", "admin"], default="admin")
    create.set_defaults(run=create_command)


def create_command(args: argparse.Namespace) -> int:
    built = container()
    try:
        token = built.keys.create(args.business, args.scope, utc_now())
    except ValueError as error:
        return refuse(str(error))
    finally:
        built.close()
    sys.stdout.write(f"{token}\n")
    sys.stderr.write(
        f"created a {args.scope} key for business {args.business!r}; "
        "it is shown once and stored only as a hash\n"
    )
    return 0

"""``ledger billing close``: do what is due now (for deployments that prefer cron)."""

from __future__ import annotations

import argparse
import sys

from api.cli.common import Commands, container
from infrastructure.runtime import tick


def add_commands(commands: Commands) -> None:
    billing = commands.add_parser("billing", help="invoices")
    group = billing.add_subparsers(dest="billing_command", required=True)
    close = group.add_parser(
        "close",
        help="renew, finalize every cycle that ended LEDGER_INVOICE_GRACE ago or more, "
        "and end expired credit grants",
    )
    close.set_defaults(run=close_command)


def close_command(_: argparse.Namespace) -> int:
    """Safe to repeat, and beside a running service: every task is idempotent."""
    built = container()
    try:
        done = tick(built, catch_up=True)
    finally:
        built.close()
    for record in done.finalized:
        sys.stdout.write(
            f"{record.invoice_id}  {record.subscription_id}  cycle {record.cycle_index}  "
            f"{record.total_minor} {record.currency} (minor units)  sha256 {record.sha256}\n"
        )
    sys.stderr.write(
        f"finalized {len(done.finalized)} invoice(s), renewed {done.renewed} subscription(s), "
        f"ended {done.expired} grant(s)\n"
    )
    return 0

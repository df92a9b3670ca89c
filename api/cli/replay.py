"""``ledger replay``: meters, credit balances and open invoices as they stood in the log.

``--at POSITION`` takes a log position (notification id); ``--as-of TIMESTAMP``
(ISO 8601 with a zone) the last position recorded at or before it. What is
shown, and which time an event was recorded at, is ``application.replay``'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from api.cli.common import Commands, container
from application.errors import LedgerError
from application.replay import Replay, position_at, replay
from application.usage_log import UsageLogProjection
from domain.errors import DomainError
from domain.usage import parse_timestamp
from infrastructure.bootstrap import Container


def add_commands(commands: Commands) -> None:
    command = commands.add_parser(
        "replay",
        help="meters, credit balances and open invoices as they stood at a log position",
        description=__doc__,
    )
    when = command.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", type=int, metavar="POSITION", help="a log position")
    when.add_argument(
        "--as-of",
        metavar="TIMESTAMP",
        help="ISO 8601 with a zone: the last position recorded at or before it",
    )
    command.add_argument("--customer", metavar="ID", help="only this customer")
    command.add_argument("--business", metavar="ID", default="default", help="default: default")
    command.add_argument("--json", action="store_true", help="print JSON instead of tables")
    command.set_defaults(run=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    built = container()
    try:
        found = _replay(built, args)
    except (LedgerError, DomainError) as error:
        print(f"ledger: {error.message}", file=sys.stderr)  # noqa: T201
        return 2
    finally:
        built.close()
    if args.json:
        sys.stdout.write(json.dumps(replay_json(found), indent=2) + "\n")
    else:
        sys.stdout.write(replay_table(found))
    return 0


def _replay(built: Container, args: argparse.Namespace) -> Replay:
    ledger = built.ledger
    moment = None if args.as_of is None else parse_timestamp(args.as_of)
    position: int = args.at if moment is None else position_at(ledger, moment)
    name = UsageLogProjection.name
    if built.projector.position(name) < position <= ledger.head():
        built.projector.catch_up(names=[name])  # the folds read the usage log up to it
    return replay(
        ledger,
        built.reads.usage_log,
        position=position,
        business_id=args.business,
        customer_id=args.customer,
        moment=moment,
    )


def replay_json(found: Replay) -> dict[str, Any]:
    """The replay as JSON values: decimals as exact strings, times in ISO 8601."""
    month = (
        None
        if found.month is None
        else {"start": _iso(found.month[0]), "end": _iso(found.month[1])}
    )
    return {
        "business_id": found.business_id,
        "customer_id": found.customer_id,
        "position": found.position,
        "moment": _iso(found.moment),
        "month": month,
        "meters": [
            {
                "meter_id": m.meter_id,
                "name": m.name,
                "archived": m.archived,
                "aggregation": m.aggregation,
                "customer_id": m.customer_id,
                "value": format(m.value, "f"),
                "event_count": m.events,
            }
            for m in found.meters
        ],
        "credit_balances": [
            {
                "credit_entitlement_id": b.entitlement_id,
                "customer_id": b.customer_id,
                "balance": format(b.balance, "f"),
                "created_at": _iso(b.created_at),
                "updated_at": _iso(b.updated_at),
                "last_transaction_at": _iso(b.last_transaction_at),
            }
            for b in found.balances
        ],
        "open_invoices": [
            {**i.document, "status": i.status, "cycle_index": i.cycle.index} for i in found.invoices
        ],
    }


def replay_table(found: Replay) -> str:
    """The replay as plain-text tables."""
    scope = f"business {found.business_id!r}"
    if found.customer_id is not None:
        scope += f", customer {found.customer_id!r}"
    if found.moment is None or found.month is None:
        return f"log position {found.position}: nothing recorded yet ({scope})\n"
    parts = [
        f"log position {found.position}, as of {_iso(found.moment)}; {scope}",
        f"\nMeters, this calendar month (UTC): {_iso(found.month[0])} to {_iso(found.month[1])}",
        _table(
            ("meter", "name", "customer", "aggregation", "value", "events"),
            [
                (m.meter_id, m.name, m.customer_id, _aggregation(m.aggregation), m.value, m.events)
                for m in found.meters
            ],
        ),
        "\nCredit balances",
        _table(
            ("entitlement", "customer", "balance", "last transaction"),
            [
                (b.entitlement_id, b.customer_id, b.balance, _iso(b.last_transaction_at) or "-")
                for b in found.balances
            ],
        ),
        f"\nOpen invoices (the cycle holding that moment, folded at cut {found.position})",
    ]
    for item in found.invoices:
        invoice = item.invoice
        parts.append(
            f"{item.subscription_id}  customer {item.customer_id}  cycle {item.cycle.index} "
            f"{_iso(item.cycle.start)} to {_iso(item.cycle.end)}  {item.status}  "
            f"total {invoice.total_minor} {invoice.currency} (minor units)  sha256 {invoice.sha256}"
        )
        rows = [
            (
                line.meter_id,
                line.consumed,
                line.chargeable,
                line.credits_applied,
                line.billed_units,
                line.amount_minor,
            )
            for line in invoice.lines
        ]
        headers = ("meter", "consumed", "chargeable", "credits", "billed units", "amount")
        parts.append(_table(headers, rows, indent="  "))
    if not found.invoices:
        parts.append("(none)")
    return "\n".join(parts) + "\n"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> str:
    if not rows:
        return f"{indent}(none)"
    cells = [list(headers)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        indent
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _aggregation(wire: dict[str, Any]) -> str:
    key = wire.get("key")
    return str(wire["type"]) if key is None else f"{wire['type']}({key})"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()

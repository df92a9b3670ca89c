"""``ledger keys create|list|revoke|rotate|audit``: API keys and who did what to them.

A key is printed once, on stdout, when it is made; it is stored only as a hash.
What the command line does is audited as ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from api.cli.common import Commands, container, refuse
from application.errors import LedgerError
from infrastructure.key_records import (
    MAX_PAGE,
    SCOPES,
    AuditQuery,
    KeyAuditEntry,
    KeyQuery,
    KeyRecord,
)
from infrastructure.settings import ConfigError, parse_duration

_SHORT_DURATION = re.compile(r"^(\d+)([smhdw])$", re.IGNORECASE)
_ISO_UNIT = {"s": "PT{}S", "m": "PT{}M", "h": "PT{}H", "d": "P{}D", "w": "P{}W"}


def add_commands(commands: Commands) -> None:
    keys = commands.add_parser("keys", help="manage API keys")
    group = keys.add_subparsers(dest="keys_command", required=True)
    create = group.add_parser("create", help="create a key; printed once")
    create.add_argument("--business", required=True, help="the business the key acts for")
    create.add_argument("--scope", choices=SCOPES, default="admin")
    create.add_argument("--name", help="what the key is for (shown in listings)")
    create.set_defaults(run=create_command)
    listing = group.add_parser("list", help="keys, newest first; never the keys themselves")
    listing.add_argument("--business", help="only this business's keys")
    listing.add_argument("--all", action="store_true", help="revoked and expired keys too")
    listing.add_argument("--limit", type=int, default=MAX_PAGE, help=f"at most (<= {MAX_PAGE})")
    listing.set_defaults(run=list_command)
    revoke = group.add_parser("revoke", help="revoke a key at once, on every server")
    revoke.add_argument("key_id", metavar="ID", help="the key's id (key_...)")
    revoke.set_defaults(run=revoke_command)
    rotate = group.add_parser("rotate", help="a new key like ID; ID keeps working for --grace")
    rotate.add_argument("key_id", metavar="ID", help="the key's id (key_...)")
    rotate.add_argument("--grace", required=True, help="how long ID still works: 1h, 30m, PT2H")
    rotate.set_defaults(run=rotate_command)
    audit = group.add_parser("audit", help="who created, rotated and revoked which key")
    audit.add_argument("--business", help="only this business's keys")
    audit.add_argument("--key", dest="audit_key", help="only this key's entries")
    audit.add_argument("--limit", type=int, default=MAX_PAGE, help=f"at most (<= {MAX_PAGE})")
    audit.set_defaults(run=audit_command)
    for command in (create, listing, revoke, rotate, audit):
        command.add_argument("--json", action="store_true", help="print JSON instead of text")


def actor() -> str:
    """``cli:`` and the operating-system user: who the audit trail says did it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "cli:unknown"


def grace_of(raw: str) -> timedelta:
    """``1h``, ``30m``, ``2d`` as well as what settings take (seconds, ISO 8601)."""
    short = _SHORT_DURATION.match(raw.strip())
    text = _ISO_UNIT[short[2].lower()].format(short[1]) if short else raw.strip()
    return parse_duration("--grace", text)


def create_command(args: argparse.Namespace) -> int:
    built = container()
    try:
        issued = built.keys.issue(
            args.business, args.scope, built.clock(), name=args.name, actor=actor()
        )
    except LedgerError as error:
        return refuse(error.message)
    finally:
        built.close()
    if args.json:
        _print_json({**record_json(issued.record, issued.record.created_at), "key": issued.token})
        return 0
    sys.stdout.write(f"{issued.token}\n")
    sys.stderr.write(
        f"created {issued.record.key_id}, a {args.scope} key for business {args.business!r}; "
        "it is shown once and stored only as a hash\n"
    )
    return 0


def list_command(args: argparse.Namespace) -> int:
    built = container()
    try:
        now = built.clock()
        query = KeyQuery(args.business, now, args.all, args.limit)
        found = built.keys.keys(query)
    except LedgerError as error:
        return refuse(error.message)
    finally:
        built.close()
    if args.json:
        _print_json([record_json(record, now) for record in found])
        return 0
    headers = ("id", "prefix", "business", "scope", "name", "status", "created", "created by")
    more = ("last used", "expires", "revoked", "revoked by")
    rows = [_record_row(record, now) for record in found]
    sys.stdout.write(table((*headers, *more), rows) + "\n")
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    built = container()
    try:
        now = built.clock()
        record = built.keys.revoke(None, args.key_id, actor(), now)
    except LedgerError as error:
        return refuse(error.message)
    finally:
        built.close()
    if args.json:
        _print_json(record_json(record, now))
        return 0
    when = _at(record.revoked_at)
    sys.stdout.write(
        f"{record.key_id} ({record.scope}, business {record.business_id!r}) revoked at {when} "
        f"by {record.revoked_by}\n"
    )
    return 0


def rotate_command(args: argparse.Namespace) -> int:
    try:
        grace = grace_of(args.grace)
    except ConfigError as error:
        return refuse(str(error))
    built = container()
    try:
        now = built.clock()
        new, old = built.keys.rotate(None, args.key_id, grace, actor(), now)
    except LedgerError as error:
        return refuse(error.message)
    finally:
        built.close()
    if args.json:
        created = {**record_json(new.record, now), "key": new.token}
        _print_json({**created, "previous": record_json(old, now)})
        return 0
    sys.stdout.write(f"{new.token}\n")
    sys.stderr.write(
        f"created {new.record.key_id} to replace {old.key_id}, which works until "
        f"{_at(old.expires_at)}; the new key is shown once\n"
    )
    return 0


def audit_command(args: argparse.Namespace) -> int:
    built = container()
    try:
        query = AuditQuery(args.business, args.audit_key, args.limit)
        found = built.keys.audit(query)
    except LedgerError as error:
        return refuse(error.message)
    finally:
        built.close()
    if args.json:
        _print_json([entry_json(entry) for entry in found])
        return 0
    rows = [
        (_at(e.at), e.business_id, e.key_id, e.action, e.actor, e.related_key_id or "-")
        for e in found
    ]
    headers = ("at", "business", "key", "action", "actor", "related key")
    sys.stdout.write(table(headers, rows) + "\n")
    return 0


def record_json(record: KeyRecord, now: datetime) -> dict[str, Any]:
    return {
        "id": record.key_id,
        "prefix": record.prefix,
        "business_id": record.business_id,
        "scope": record.scope,
        "name": record.name,
        "status": record.status(now),
        "created_at": _iso(record.created_at),
        "created_by": record.created_by,
        "last_used_at": _iso(record.last_used_at),
        "revoked_at": _iso(record.revoked_at),
        "revoked_by": record.revoked_by,
        "expires_at": _iso(record.expires_at),
    }


def entry_json(entry: KeyAuditEntry) -> dict[str, Any]:
    return {
        "id": entry.entry_id,
        "business_id": entry.business_id,
        "key_id": entry.key_id,
        "action": entry.action,
        "actor": entry.actor,
        "at": entry.at.isoformat(),
        "related_key_id": entry.related_key_id,
    }


def _record_row(record: KeyRecord, now: datetime) -> tuple[str, ...]:
    return (
        record.key_id,
        record.prefix,
        record.business_id,
        record.scope,
        record.name or "-",
        record.status(now),
        _at(record.created_at),
        record.created_by or "-",
        _at(record.last_used_at),
        _at(record.expires_at),
        _at(record.revoked_at),
        record.revoked_by or "-",
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "(none)"
    cells = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _at(moment: datetime | None) -> str:
    """To the second, in UTC: a table is read by a person."""
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")

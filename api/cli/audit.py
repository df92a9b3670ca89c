"""``ledger audit verify``: prove every number from the log; exit 1 listing each mismatch."""

from __future__ import annotations

import argparse
import json
import sys

from api.cli.common import Commands, ProgressBar, container, refuse
from application.audit import AuditReport
from domain.errors import DomainError
from domain.usage import parse_timestamp
from infrastructure.audit import audit


def add_commands(commands: Commands) -> None:
    audit_parser = commands.add_parser("audit", help="prove the numbers from the log")
    group = audit_parser.add_subparsers(dest="audit_command", required=True)
    verify = group.add_parser(
        "verify",
        help="check the log against its seal, fold every invoice again flat, rebuild and "
        "compare every projection; exit 1 listing each mismatch",
    )
    verify.add_argument("--customer", help="only this customer's invoices")
    verify.add_argument("--since", help="only invoices of cycles ending at or after (ISO 8601)")
    verify.add_argument("--json", action="store_true", help="print JSON instead of text")
    verify.set_defaults(run=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    """Exit 0 when the log, every invoice and every projection check out; 1 otherwise."""
    since = None
    if args.since is not None:
        try:
            since = parse_timestamp(args.since)
        except DomainError as error:
            return refuse(f"--since: {error.message}")
    built = container()
    head = built.ledger.head()
    bars: dict[str, ProgressBar] = {}

    def progress(check: str, done: int) -> None:
        bar = bars.setdefault(check, ProgressBar(check, head if check == "log" else 0))
        bar.update(done, done)

    try:
        report = audit(built, customer_id=args.customer, since=since, progress=progress)
    finally:
        for bar in bars.values():
            bar.done()
        built.close()
    if args.json:
        sys.stdout.write(json.dumps(summary(report), indent=2) + "\n")
    else:
        sys.stdout.write(text(report))
    return 0 if report.ok else 1


def summary(report: AuditReport) -> dict[str, object]:
    return {
        "ok": report.ok,
        "events_checked": report.events,
        "events_unsealed": report.unsealed,
        "invoices_checked": report.invoices,
        "projections_checked": report.projections,
        "mismatches": [
            {"check": m.check, "subject": m.subject, "detail": m.detail} for m in report.mismatches
        ],
    }


def text(report: AuditReport) -> str:
    lines = [
        f"log: {report.events:,} events checked against their seal"
        f" ({report.unsealed:,} not sealed yet)",
        f"invoices: {report.invoices:,} folded again flat and compared",
        f"projections: {', '.join(report.projections) or 'none'} rebuilt and compared",
        *(f"MISMATCH [{m.check}] {m.subject}: {m.detail}" for m in report.mismatches),
        "audit: OK" if report.ok else f"audit: {len(report.mismatches)} mismatch(es)",
    ]
    return "\n".join(lines) + "\n"

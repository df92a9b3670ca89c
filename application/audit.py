"""Audit: prove every number from the log, and find what was changed behind its back.

``verify`` runs three checks and lists every mismatch it finds:

- **log**: each stored event's digest (``domain.seal``) is recomputed from the
  bytes the store holds now and compared with the digest the seal projection
  recorded when it first read the event; the recorded chain is recomputed too.
  A changed event, one deleted, or one inserted among sealed positions is named
  by its position and what it is. Events the seal has not read yet are counted
  as unsealed, not judged.
- **invoices**: every finalized invoice is folded again, flat, from every event
  of its cycle at the cut it recorded (``application.billing.recompute``), every
  earlier cycle compared for an adjustment, and its bytes and SHA-256 compared:
  the finalized invoice was folded from hourly tallies, so this proves the
  shortcut on every audit. Its ``log_digest`` must equal the seal chain at its cut.
- **projections**: each projection is rebuilt in a scratch space and compared
  row by row with the live one (the comparison is given by the caller, who
  knows the stores: ``infrastructure.audit``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from eventsourcing.persistence import Notification

from application.billing import invoice_record, recompute
from application.ledger import Ledger
from application.reads import Reads
from application.seal import SealStore
from application.usage_log import UsageLogStore
from application.views import SealSegment, SealView
from domain.invoice import Invoice
from domain.invoice_record import InvoiceRecord
from domain.seal import GENESIS, chain, event_digest

PAGE = 1000
SEGMENTS_PAGE = 10  # segments of a batch each, up to thousands of events
Progress = Callable[[str, int], None]  # (check, items done so far)


@dataclass(frozen=True, slots=True)
class Mismatch:
    check: str  # log, invoice, projection
    subject: str  # what is wrong: an event, an invoice, a projection's table
    detail: str


@dataclass
class AuditReport:
    events: int = 0
    unsealed: int = 0
    invoices: int = 0
    projections: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def verify(
    ledger: Ledger,
    reads: Reads,
    *,
    projections: Callable[[], tuple[list[str], list[Mismatch]]] | None = None,
    customer_id: str | None = None,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> AuditReport:
    """Every check; ``customer_id`` and ``since`` (cycle end) narrow the invoices checked."""
    report = AuditReport()
    report.events, report.unsealed, found = verify_log(ledger, reads, progress)
    report.mismatches += found
    report.invoices, found = verify_invoices(ledger, reads, customer_id, since, progress)
    report.mismatches += found
    if projections is not None:
        report.projections, found = projections()
        report.mismatches += found
    return report


def verify_log(
    ledger: Ledger, reads: Reads, progress: Progress | None = None
) -> tuple[int, int, list[Mismatch]]:
    """(events checked, events not sealed yet, mismatches) of the log against its seal."""
    mismatches: list[Mismatch] = []
    checked = unsealed = 0
    index = _Labels(reads.seal, reads.usage_log)
    seals = _seals(reads.seal)
    seal = next(seals, None)
    previous = GENESIS
    for notification in _log(ledger):
        while seal is not None and seal[0].position < notification.id:
            mismatches.append(_deleted(seal[0], index))
            previous = _check_chain(seal, previous, mismatches, index)
            seal = next(seals, None)
        if seal is None:
            unsealed += 1
            continue
        checked += 1
        if seal[0].position > notification.id:
            mismatches.append(
                Mismatch(
                    "log",
                    f"position {notification.id} ({_label(notification)})",
                    "inserted: an event the seal never read, among sealed positions",
                )
            )
            continue
        if _digest(notification) != seal[0].digest:
            mismatches.append(
                Mismatch(
                    "log",
                    f"position {notification.id} ({index.label_of(seal[0])})",
                    "changed: the stored event is not the one the seal read",
                )
            )
        previous = _check_chain(seal, previous, mismatches, index)
        seal = next(seals, None)
        if progress is not None and checked % PAGE == 0:
            progress("log", checked)
    while seal is not None:
        mismatches.append(_deleted(seal[0], index))
        previous = _check_chain(seal, previous, mismatches, index)
        seal = next(seals, None)
    return checked, unsealed, mismatches


def verify_invoices(
    ledger: Ledger,
    reads: Reads,
    customer_id: str | None = None,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> tuple[int, list[Mismatch]]:
    """(invoices checked, mismatches): each folded again at its cut and compared."""
    mismatches: list[Mismatch] = []
    checked = 0
    for record in finalized_records(ledger, reads):
        if customer_id is not None and record.customer_id != customer_id:
            continue
        if since is not None and record.cycle_end < since:
            continue
        checked += 1
        mismatches += check_invoice(ledger, reads, record)[1]
        if progress is not None:
            progress("invoices", checked)
    return checked, mismatches


def check_invoice(
    ledger: Ledger, reads: Reads, record: InvoiceRecord
) -> tuple[Invoice, list[Mismatch]]:
    """One finalized invoice folded again at its cut, and what differs: its bytes, its
    SHA-256, the seal chain at its cut (the dashboard's re-fold button runs this too)."""
    mismatches: list[Mismatch] = []
    subject = f"invoice {record.invoice_id} ({record.business_id}, cycle {record.cycle_index})"
    again = recompute(ledger, reads, record)
    if again.canonical_bytes().decode("ascii") != record.document:
        mismatches.append(Mismatch("invoice", subject, _difference(record.document, again)))
    elif again.sha256 != record.sha256:
        mismatches.append(Mismatch("invoice", subject, "the recorded SHA-256 is wrong"))
    sealed = reads.seal.chain_at(record.cut)
    if sealed != record.log_digest:
        mismatches.append(
            Mismatch(
                "invoice",
                subject,
                f"the log up to its cut {record.cut} is not the log it was folded from "
                f"(seal chain {sealed[:12]}..., recorded {record.log_digest[:12]}...)",
            )
        )
    return again, mismatches


def _log(ledger: Ledger) -> Iterator[Notification]:
    after = 0
    while True:
        page = ledger.recorder.select_notifications(
            start=after, limit=PAGE, inclusive_of_start=False
        )
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].id


def finalized_records(ledger: Ledger, reads: Reads) -> Iterator[InvoiceRecord]:
    """Every finalized invoice, in the order it was recorded (listed by the catalogue)."""
    after = 0
    while True:
        page = reads.catalogue.invoices_after(after, PAGE)
        for _, view in page:
            yield invoice_record(ledger, view.business_id, view.invoice_id)
        if len(page) < PAGE:
            return
        after = page[-1][0]


class _Labels:
    """What a sealed event was, for a person: a usage event's id, else the aggregate."""

    def __init__(self, seal: SealStore, usage_log: UsageLogStore) -> None:
        self._seal = seal
        self._usage_log = usage_log

    def label_of(self, seal: SealView) -> str:
        found = self._usage_log.label_at(seal.position)
        return found or f"aggregate {seal.originator_id} v{seal.version}"


def _seals(store: SealStore) -> Iterator[tuple[SealView, SealSegment]]:
    """Every sealed event in log order, each with the segment it was sealed in."""
    after = 0
    while True:
        page = store.segments(after, SEGMENTS_PAGE)
        for segment in page:
            for seal in segment.seals:
                yield seal, segment
        if len(page) < SEGMENTS_PAGE:
            return
        after = page[-1].seals[0].position


def _digest(notification: Notification) -> str:
    return event_digest(
        notification.id,
        str(notification.originator_id),
        notification.originator_version,
        notification.topic,
        notification.state,
    )


def _check_chain(
    seal: tuple[SealView, SealSegment], previous: str, found: list[Mismatch], index: _Labels
) -> str:
    """The chain after ``seal``; a segment that does not start where the last ended, or
    does not end where its digests lead, was edited (or one before it removed)."""
    view, segment = seal
    if view is segment.seals[0] and segment.chain_before != previous:
        found.append(
            Mismatch(
                "log",
                f"seal before position {view.position} ({index.label_of(view)})",
                "the seal chain is broken here: the seal was edited, or a part of it removed",
            )
        )
        previous = segment.chain_before
    previous = chain(previous, view.digest)
    if view is segment.seals[-1] and segment.chain != previous:
        found.append(
            Mismatch(
                "log",
                f"seal from position {segment.seals[0].position} to {view.position}",
                "the seal chain is broken here: the seal was edited",
            )
        )
        previous = segment.chain
    return previous


def _deleted(seal: SealView, index: _Labels) -> Mismatch:
    return Mismatch(
        "log",
        f"position {seal.position} ({index.label_of(seal)})",
        "deleted: the seal read this event, the store no longer holds it",
    )


def _label(notification: Notification) -> str:
    kind = notification.topic.rsplit(":", 1)[-1]
    return f"{kind} {notification.originator_id} v{notification.originator_version}"  # forged


def _difference(recorded: str, again: Invoice) -> str:
    text = again.canonical_bytes().decode("ascii")
    at = next(
        (i for i, (a, b) in enumerate(zip(recorded, text, strict=False)) if a != b),
        min(len(recorded), len(text)),
    )
    return (
        f"folded again from the log it differs at byte {at}: recorded "
        f"...{recorded[max(at - 40, 0) : at + 40]}... now ...{text[max(at - 40, 0) : at + 40]}..."
    )

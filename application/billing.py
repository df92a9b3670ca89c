"""Invoices: a cycle's preview and its finalization are one decision, saved or not.

``plan_cycle`` takes every decision finalizing a cycle takes, on aggregates
loaded for it and without saving: the cycles begun up to it and their credit
grants, the meters it bills locked, the grants of earlier cycles ended, the
fold of its usage at the cut where the tallies are (``application.measure``)
with the adjustments of earlier cycles whose usage changed since they were
billed. The preview of the open cycle is that plan's invoice; finalization
saves the plan, the invoice record and the credit it drew in one transaction.
So the preview shows exactly what finalizing at the same cut would produce.

A finalized invoice is an ``InvoiceRecord`` whose id derives from (subscription,
cycle): two finalizers collide on the store's key and the first record stands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.persistence import IntegrityError

from application.errors import ConflictRetryExhaustedError, NotFoundError, UnavailableError
from application.grants import (
    AccountSet,
    drawn_grants,
    end_expired,
    renew,
    settle,
    usable_grants,
)
from application.invoicing import (
    Corrections,
    changed_cycles,
    cycle_adjustments,
    cycle_invoice,
    group_quantities,
    priced,
)
from application.ledger import Ledger
from application.measure import DefinitionMovedError
from application.reads import CATALOGUE, SEAL, USAGE, USAGE_LOG, Reads
from application.subscriptions import load, peers_of
from domain.cycles import Cycle
from domain.invoice import Invoice, price_cycle
from domain.invoice_record import InvoiceRecord, invoice_aggregate_id, invoice_id_of
from domain.meter import Meter, meter_aggregate_id
from domain.pricing import UsagePrice
from domain.subscription import Subscription

MAX_FINALIZE_ATTEMPTS = 8
MAX_PLAN_ATTEMPTS = 3  # a meter redefined while the plan read it: read it again


@dataclass
class CyclePlan:
    """What finalizing one cycle would do, decided on loaded aggregates, not saved."""

    subscription: Subscription
    cycle: Cycle
    invoice: Invoice
    corrections: Corrections  # for earlier cycles: adjustments, cuts, late overage
    accounts: AccountSet
    meters: list[Meter]
    price: UsagePrice  # in force at the cycle's start


def plan_cycle(
    ledger: Ledger,
    reads: Reads,
    business_id: str,
    subscription_id: str,
    cycle_index: int,
    now: datetime,
) -> CyclePlan:
    """Finalizing cycle ``cycle_index`` of the subscription now, decided but not saved
    (on the subscription and accounts as loaded for it)."""
    for _ in range(MAX_PLAN_ATTEMPTS):
        subscription = load(ledger, business_id, subscription_id)
        try:
            return _plan(ledger, reads, subscription, cycle_index, now)
        except DefinitionMovedError:
            continue
    raise UnavailableError("a meter of this invoice keeps being redefined; try again")


def _plan(
    ledger: Ledger, reads: Reads, subscription: Subscription, cycle_index: int, now: datetime
) -> CyclePlan:
    business_id, customer_id = subscription.business_id, subscription.customer_id
    cycle = subscription.cycle(cycle_index)
    billed = priced(ledger, subscription, cycle)
    # the cut is where the tallies are now; every fold of the plan is at it
    cut, tallies = reads.measure.measure(
        business_id, billed.specs, customer_id, cycle.start, cycle.end
    )
    candidates = changed_cycles(ledger, reads, subscription, cycle_index)
    corrections = cycle_adjustments(
        ledger, reads.measure, subscription, cycle_index, cut, candidates
    )
    accounts = AccountSet(ledger, business_id, customer_id)
    renew(ledger, subscription, cycle_index, accounts)  # the credit this cycle may draw on
    meters = []
    invoice_id = invoice_id_of(business_id, subscription.subscription_id, cycle_index)
    for meter_id in billed.specs:  # locked with the record: what it measures may not change
        meter = ledger.load(Meter, meter_aggregate_id(business_id, meter_id))
        if meter is not None:
            meter.lock(f"invoice {invoice_id}", now)
            meters.append(meter)
    # earlier cycles' grants end (and roll over) before this one draws
    peers = peers_of(ledger, reads, subscription)
    end_expired(ledger, subscription, billed.price, cycle.start, peers, accounts)
    consumed = {m: tallies[m].result(spec.aggregation) for m, spec in billed.specs.items()}
    invoice = price_cycle(
        cycle,
        billed.price,
        consumed,
        cut=cut,
        grants=usable_grants(billed.price, cycle, accounts),
        adjustments=corrections.adjustments,
        groups=group_quantities(reads.measure, subscription, cycle, billed, cut),
    )
    return CyclePlan(subscription, cycle, invoice, corrections, accounts, meters, billed.price)


def invoice_preview(
    ledger: Ledger, reads: Reads, business_id: str, subscription_id: str, *, now: datetime
) -> tuple[Subscription, Invoice]:
    """The open cycle's invoice so far: what finalizing it now would produce."""
    reads.fresh(CATALOGUE, USAGE_LOG, USAGE)
    subscription = load(ledger, business_id, subscription_id)
    index = subscription.cycle_at(now).index
    plan = plan_cycle(ledger, reads, business_id, subscription_id, index, now)
    return subscription, plan.invoice


def finalize_cycle(
    ledger: Ledger,
    reads: Reads,
    business_id: str,
    subscription_id: str,
    cycle_index: int,
    *,
    now: datetime,
    as_of: int | None = None,
) -> InvoiceRecord:
    """The finalized invoice of one cycle; finalizing again returns it unchanged.

    It waits for the read models to reach the log's head as it begins, or
    ``as_of`` (a billing round's start: what the round itself writes is no usage),
    and refuses (``UnavailableError``) if they do not, so the cut holds every event
    recorded by then. The plan, the record and the settlement of the credit it
    drew are saved in one transaction: if any of the aggregates moved meanwhile (a concurrent
    finalizer, a debit of the same account), the store refuses all and the
    cycle is planned again, unless another finalizer's record now stands.
    """
    invoice_id = invoice_id_of(business_id, subscription_id, cycle_index)
    aggregate_id = invoice_aggregate_id(business_id, invoice_id)
    existing = ledger.load(InvoiceRecord, aggregate_id)
    if existing is not None:
        return existing
    # Never at a cut behind what the log held when finalizing began: usage recorded on
    # time would be left to a later invoice (and lost on a subscription's last one).
    head = ledger.head() if as_of is None else as_of
    if not reads.freshness.wait([CATALOGUE, USAGE_LOG, USAGE, SEAL], head):
        raise UnavailableError(
            f"invoice {invoice_id}: the read models have not reached log position {head}; "
            "it is finalized once they have"
        )
    for _ in range(MAX_FINALIZE_ATTEMPTS):
        existing = ledger.load(InvoiceRecord, aggregate_id)
        if existing is not None:
            return existing
        plan = plan_cycle(ledger, reads, business_id, subscription_id, cycle_index, now)
        record = _record(reads, plan, invoice_id, now)
        settle(
            plan.accounts,
            invoice_id,
            json.loads(record.document),
            record.cycle_end,
            subscription_id=subscription_id,
            cycle_index=cycle_index,
            terms={t.entitlement_id: t for t in plan.price.credits},
            late=plan.corrections.late_overage,
        )
        changed = [record, plan.subscription, *plan.meters, *plan.accounts.changed()]
        try:
            ledger.save(*(a for a in changed if a.pending_events))
        except IntegrityError:
            continue  # someone else moved an aggregate of the plan: look again
        return record
    raise ConflictRetryExhaustedError(f"invoice {invoice_id}: the accounts kept changing")


def _record(reads: Reads, plan: CyclePlan, invoice_id: str, now: datetime) -> InvoiceRecord:
    invoice, subscription, cycle = plan.invoice, plan.subscription, plan.cycle
    if not reads.freshness.wait([SEAL], invoice.cut):
        raise UnavailableError(f"the seal has not reached position {invoice.cut}; try again")
    return InvoiceRecord(
        business_id=subscription.business_id,
        invoice_id=invoice_id,
        subscription_id=subscription.subscription_id,
        customer_id=subscription.customer_id,
        cycle_index=cycle.index,
        cycle_start=cycle.start,
        cycle_end=cycle.end,
        cut=invoice.cut,
        currency=invoice.currency,
        total_minor=invoice.total_minor,
        document=invoice.canonical_bytes().decode("ascii"),
        sha256=invoice.sha256,
        adjusted=plan.corrections.adjusted,
        finalized_at=now,
        log_digest=reads.seal.chain_at(invoice.cut),
    )


def recompute(ledger: Ledger, reads: Reads, record: InvoiceRecord) -> Invoice:
    """A finalized invoice folded again flat from the log at its cut: the same bytes, or
    tampering (or a fault in the tallies' shortcut).

    Every event of the cycle is folded (``FlatMeasure``), and every earlier cycle
    is compared for an adjustment, not only those the tallies name. The credit
    it drew is taken from its own document (the grants' balances then are gone).
    """
    subscription = load(ledger, record.business_id, record.subscription_id)
    cycle = subscription.cycle(record.cycle_index)
    index = record.cycle_index
    adjustments = cycle_adjustments(
        ledger, reads.flat, subscription, index, record.cut, range(index)
    ).adjustments
    return cycle_invoice(
        reads.flat,
        subscription,
        cycle,
        priced(ledger, subscription, cycle),
        at=record.cut,
        grants=drawn_grants(json.loads(record.document), cycle.start),
        adjustments=adjustments,
    )


def invoice_document(subscription: Subscription, invoice: Invoice) -> dict[str, Any]:
    """The canonical invoice, with who it is for and the SHA-256 of its bytes."""
    document: dict[str, Any] = json.loads(invoice.canonical_bytes())
    return {
        "subscription_id": subscription.subscription_id,
        "customer_id": subscription.customer_id,
        "product_id": subscription.product_id,
        "invoice": document,
        "sha256": invoice.sha256,
    }


def invoice_record(ledger: Ledger, business_id: str, invoice_id: str) -> InvoiceRecord:
    record = ledger.load(InvoiceRecord, invoice_aggregate_id(business_id, invoice_id))
    if record is None:
        raise NotFoundError(f"invoice {invoice_id!r} not found")
    return record

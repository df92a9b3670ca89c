"""Invoices: each cycle folded from its events at the price in force when it began."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.credits import (
    accounts_for,
    cycle_price,
    drawn_grants,
    expire_grants,
    grant_cycle,
    settle_accounts,
    started_cycles,
    usable_grants,
)
from application.errors import ConflictRetryExhaustedError, NotFoundError
from application.ledger import Ledger
from application.ports import EventIndex
from application.subscriptions import load
from domain.credits import Grant
from domain.cycles import Cycle
from domain.invoice import Adjustment, Invoice, adjustment, fold_invoice
from domain.invoice_record import InvoiceRecord, invoice_aggregate_id, invoice_id_of
from domain.meter import UsageRecord
from domain.subscription import Subscription


def invoice_of(
    ledger: Ledger,
    index: EventIndex,
    subscription: Subscription,
    cycle: Cycle,
    cut: int,
    *,
    up_to: int | None = None,
    adjustments: Sequence[Adjustment] = (),
    grants: Mapping[str, Sequence[Grant]] | None = None,
) -> Invoice:
    """The invoice of one cycle of ``subscription``, from the events the index holds.

    The product's price as it stood at the cycle's start; the fixed price counts
    once per unit of ``quantity``; each priced meter measured over the
    customer's events of the cycle.
    """
    business_id = subscription.business_id
    product = ledger.load_product(business_id, subscription.product_id)
    price = product.price_at(cycle.start)
    price = replace(price, fixed_price=price.fixed_price * subscription.quantity)
    specs = {m.meter_id: ledger.meter_spec(business_id, m.meter_id) for m in price.meters}
    names = sorted({spec.event_name for spec in specs.values()})

    def records() -> Iterator[UsageRecord]:
        for name in names:
            yield from index.stream_records(
                business_id, name, subscription.customer_id, cycle.start, cycle.end, up_to
            )

    return fold_invoice(
        cycle, price, specs, records(), cut=cut, grants=grants, adjustments=adjustments
    )


def invoice_preview(
    ledger: Ledger,
    index: EventIndex,
    business_id: str,
    subscription_id: str,
    *,
    now: datetime,
    cut: int,
) -> tuple[Subscription, Invoice]:
    """The open cycle's invoice so far."""
    subscription = load(ledger, business_id, subscription_id)
    current = subscription.cycle_at(now)
    grants = usable_grants(ledger, subscription, current.index, virtual=True)
    return subscription, invoice_of(ledger, index, subscription, current, cut, grants=grants)


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


def finalize_cycle(
    ledger: Ledger,
    index: EventIndex,
    subscription: Subscription,
    cycle_index: int,
    *,
    cut: int,
    now: datetime,
    peers: Sequence[Subscription] | None = None,
) -> InvoiceRecord:
    """The finalized invoice of one cycle, folded at log position ``cut``; idempotent.

    ``peers``: every subscription in the log (read from it when not given); a
    grant ends only once no cycle of its customer's may still draw on it.

    Earlier cycles whose usage changed since they were last folded (late events,
    voids) are carried as adjustments: fold at ``cut`` minus fold at their last
    cut. Finalizing again returns the invoice already recorded, unchanged.
    """
    business_id = subscription.business_id
    invoice_id = invoice_id_of(business_id, subscription.subscription_id, cycle_index)
    existing = _record(ledger, business_id, invoice_id)
    if existing is not None:
        return existing
    adjustments, adjusted = cycle_adjustments(ledger, index, subscription, cycle_index, cut)
    cycle = subscription.cycle(cycle_index)
    for started in range(cycle_index + 1):  # the credit this cycle may draw on
        grant_cycle(ledger, subscription, started)
    _, price = cycle_price(ledger, subscription, cycle_index)
    for meter in price.meters:  # locked before the fold: what it measures may not change
        ledger.lock_meter(business_id, meter.meter_id, f"invoice {invoice_id}", now)
    # earlier cycles' grants end (and roll over) before this one draws
    peers = [load(ledger, b, s) for b, s in all_subscriptions(ledger)] if peers is None else peers
    expire_grants(ledger, subscription, cycle.start, peers, own_only=True)
    for _ in range(MAX_FINALIZE_ATTEMPTS):
        # Fold from the accounts as loaded, then save the record and their settlement
        # in one transaction: if an account moved meanwhile, the store refuses both.
        accounts = accounts_for(ledger, subscription, cycle_index)
        grants = {e: a.usable_grants(cycle.start, cycle.end) for e, a in accounts.items()}
        invoice = invoice_of(
            ledger,
            index,
            subscription,
            cycle,
            cut,
            up_to=cut,
            adjustments=adjustments,
            grants=grants,
        )
        record = InvoiceRecord(
            business_id=business_id,
            invoice_id=invoice_id,
            subscription_id=subscription.subscription_id,
            customer_id=subscription.customer_id,
            cycle_index=cycle_index,
            cycle_start=cycle.start,
            cycle_end=cycle.end,
            cut=cut,
            currency=invoice.currency,
            total_minor=invoice.total_minor,
            document=invoice.canonical_bytes().decode("ascii"),
            sha256=invoice.sha256,
            adjusted=adjusted,
            finalized_at=now,
            log_digest=index.seal_chain_at(cut),
        )
        changed = settle_accounts(accounts, invoice_id, record.document, record.cycle_end)
        try:
            ledger.save(record, *changed)
        except IntegrityError:
            found = _record(ledger, business_id, invoice_id)
            if found is not None:  # another finalizer was first: its record stands
                return found
            continue  # a credit account moved under the fold: fold again
        return record
    raise ConflictRetryExhaustedError(f"invoice {invoice_id}: credit accounts kept changing")


def cycle_adjustments(
    ledger: Ledger, index: EventIndex, subscription: Subscription, cycle_index: int, cut: int
) -> tuple[list[Adjustment], dict[str, int]]:
    """What cycle ``cycle_index``'s invoice, folded at ``cut``, carries for earlier cycles.

    Each earlier finalized cycle is compared at the last cut an invoice brought
    it to and at ``cut``, with the credit its own invoice drew; a difference is
    an adjustment. Also returns, per adjusted cycle (as text), the cut it is now at.
    """
    business_id = subscription.business_id
    records = {
        earlier: _record(
            ledger, business_id, invoice_id_of(business_id, subscription.subscription_id, earlier)
        )
        for earlier in range(cycle_index)
    }
    last_cut: dict[int, int] = {}
    for earlier, record in records.items():
        if record is None:
            continue
        last_cut[earlier] = max(last_cut.get(earlier, 0), record.cut)
        for adjusted_index, adjusted_cut in record.adjusted.items():
            key = int(adjusted_index)
            last_cut[key] = max(last_cut.get(key, 0), adjusted_cut)
    adjustments: list[Adjustment] = []
    adjusted: dict[str, int] = {}
    for earlier, old_cut in sorted(last_cut.items()):
        if old_cut >= cut:
            continue
        past = subscription.cycle(earlier)
        first = records.get(earlier)
        drawn = drawn_grants(json.loads(first.document), past.start) if first else {}
        old = invoice_of(ledger, index, subscription, past, old_cut, up_to=old_cut, grants=drawn)
        new = invoice_of(ledger, index, subscription, past, cut, up_to=cut, grants=drawn)
        change = adjustment(old, new)
        if not change.is_zero:
            adjustments.append(change)
            adjusted[str(earlier)] = cut
    return adjustments, adjusted


def recompute(ledger: Ledger, index: EventIndex, record: InvoiceRecord) -> Invoice:
    """A finalized invoice folded again from the log at its cut: the same bytes, or tampering.

    The credit it drew is taken from its own document (the grants' balances then
    are gone); every quantity and amount is folded afresh from the events.
    """
    subscription = load(ledger, record.business_id, record.subscription_id)
    cycle = subscription.cycle(record.cycle_index)
    adjustments, _ = cycle_adjustments(ledger, index, subscription, record.cycle_index, record.cut)
    grants = drawn_grants(json.loads(record.document), cycle.start)
    return invoice_of(
        ledger,
        index,
        subscription,
        cycle,
        record.cut,
        up_to=record.cut,
        adjustments=adjustments,
        grants=grants,
    )


def finalized_records(ledger: Ledger) -> Iterator[InvoiceRecord]:
    """Every finalized invoice in the log, in the order it was finalized."""
    for created in ledger.created(InvoiceRecord.Finalized):
        found = _record(ledger, created.business_id, created.invoice_id)
        assert found is not None
        yield found


def due_cycles(subscription: Subscription, now: datetime, grace: timedelta) -> Iterator[int]:
    """Indexes of the cycles that ended at least ``grace`` ago (up to a cancellation)."""
    ends_at = subscription.ends_at
    index = 0
    while True:
        cycle = subscription.cycle(index)
        if cycle.end + grace > now or (ends_at is not None and cycle.start >= ends_at):
            return
        yield index
        index += 1


def finalize_due(
    ledger: Ledger, index: EventIndex, *, now: datetime, grace: timedelta, cut: int
) -> list[InvoiceRecord]:
    """Finalize every cycle of every subscription that is due; return those finalized now."""
    finalized: list[InvoiceRecord] = []
    subscriptions = [load(ledger, b, s) for b, s in all_subscriptions(ledger)]
    for subscription in subscriptions:
        business_id, subscription_id = subscription.business_id, subscription.subscription_id
        begun = list(started_cycles(subscription, now))
        if begun:  # earlier cycles were granted at subscription or by earlier ticks
            grant_cycle(ledger, subscription, begun[-1])
        for cycle_index in due_cycles(subscription, now, grace):
            invoice_id = invoice_id_of(business_id, subscription_id, cycle_index)
            if _record(ledger, business_id, invoice_id) is None:
                finalized.append(
                    finalize_cycle(
                        ledger,
                        index,
                        subscription,
                        cycle_index,
                        cut=cut,
                        now=now,
                        peers=subscriptions,
                    )
                )
    for subscription in subscriptions:  # once every due cycle has drawn on them
        expire_grants(ledger, subscription, now - grace, subscriptions)
    return finalized


def all_subscriptions(ledger: Ledger) -> list[tuple[str, str]]:
    """(business, subscription) of every subscription in the log, oldest first."""
    return [(c.business_id, c.subscription_id) for c in ledger.created(Subscription.Created)]


def invoice_record(ledger: Ledger, business_id: str, invoice_id: str) -> InvoiceRecord:
    record = _record(ledger, business_id, invoice_id)
    if record is None:
        raise NotFoundError(f"invoice {invoice_id!r} not found")
    return record


def _record(ledger: Ledger, business_id: str, invoice_id: str) -> InvoiceRecord | None:
    try:
        record: InvoiceRecord = ledger.repository.get(invoice_aggregate_id(business_id, invoice_id))
    except AggregateNotFoundError:
        return None
    return record


MAX_FINALIZE_ATTEMPTS = 8

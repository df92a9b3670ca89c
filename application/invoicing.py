"""A cycle's invoice from a measurement of its meters, and the adjustments it carries.

``cycle_invoice`` prices one cycle of a subscription at the price in force when
it began (the fixed price once per unit of ``quantity``), each priced meter
measured over the customer's events of the cycle as the log stood at a cut. The
measurement is a ``Measure``: the usage projection's tallies for routine work
(``application.measure.TallyMeasure``), every event flat for the audit
(``FlatMeasure``); both give the same bytes.

Invariant 8: a finalized cycle whose usage changed after the last cut an
invoice brought it to (late events, voids) is carried by the next invoice as an
adjustment, its fold at the new cut minus its fold at that last cut, with the
credit its own invoice drew. Which cycles changed is read from the tallies
(``changed_cycles``): the buckets that changed after the previous invoice's cut.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from functools import reduce
from typing import Protocol

from application.catalogue import CatalogueStore
from application.grants import LateOverage, drawn_grants
from application.ledger import Ledger
from application.reads import Reads
from application.views import InvoiceQuery
from domain.credits import Grant
from domain.cycles import Cycle
from domain.grouping import GroupValue
from domain.invoice import Adjustment, Invoice, adjustment, price_cycle
from domain.invoice_record import InvoiceRecord, invoice_aggregate_id, invoice_id_of
from domain.meter import MeterSpec, Tally
from domain.pricing import UsagePrice
from domain.subscription import Subscription

HOUR = timedelta(hours=1)
_EXACT = Context(prec=2000, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_ZERO = Decimal(0)


class Measure(Protocol):
    def measure(
        self,
        business_id: str,
        specs: Mapping[str, MeterSpec],
        customer_id: str | None,
        start: datetime,
        end: datetime,
        *,
        at: int,
    ) -> tuple[int, dict[str, Tally]]: ...

    def groups(
        self,
        business_id: str,
        spec: MeterSpec,
        key: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        *,
        at: int,
    ) -> dict[GroupValue, Tally]: ...


@dataclass(frozen=True, slots=True)
class Priced:
    """What a cycle is billed by: its price (fixed price times quantity) and meters."""

    price: UsagePrice
    specs: dict[str, MeterSpec]


def priced(ledger: Ledger, subscription: Subscription, cycle: Cycle) -> Priced:
    business_id = subscription.business_id
    product = ledger.load_product(business_id, subscription.product_id)
    price = product.price_at(cycle.start)
    price = replace(price, fixed_price=price.fixed_price * subscription.quantity)
    specs = {m.meter_id: ledger.meter_spec(business_id, m.meter_id) for m in price.meters}
    return Priced(price, specs)


def cycle_invoice(
    measure: Measure,
    subscription: Subscription,
    cycle: Cycle,
    billed: Priced,
    *,
    at: int,
    grants: Mapping[str, Sequence[Grant]] | None = None,
    adjustments: Sequence[Adjustment] = (),
) -> Invoice:
    """The invoice of one cycle as the log stood at ``at``."""
    cut, tallies = measure.measure(
        subscription.business_id,
        billed.specs,
        subscription.customer_id,
        cycle.start,
        cycle.end,
        at=at,
    )
    consumed = {
        meter_id: tallies[meter_id].result(spec.aggregation)
        for meter_id, spec in billed.specs.items()
    }
    return price_cycle(
        cycle,
        billed.price,
        consumed,
        cut=cut,
        grants=grants,
        adjustments=adjustments,
        groups=group_quantities(measure, subscription, cycle, billed, cut),
    )


def group_quantities(
    measure: Measure, subscription: Subscription, cycle: Cycle, billed: Priced, cut: int
) -> dict[str, dict[GroupValue, Decimal]]:
    """Each grouped line's quantity per value of its key, in the cycle at ``cut``."""
    quantities: dict[str, dict[GroupValue, Decimal]] = {}
    for meter in billed.price.meters:
        if meter.group_by is None:
            continue
        spec = billed.specs[meter.meter_id]
        tallies = measure.groups(
            subscription.business_id,
            spec,
            meter.group_by,
            subscription.customer_id,
            cycle.start,
            cycle.end,
            at=cut,
        )
        quantities[meter.meter_id] = {
            value: tally.result(spec.aggregation) for value, tally in tallies.items()
        }
    return quantities


class Records:
    """A subscription's finalized invoice records, each loaded once."""

    def __init__(self, ledger: Ledger, subscription: Subscription) -> None:
        self._ledger = ledger
        self._subscription = subscription
        self._found: dict[int, InvoiceRecord | None] = {}

    def get(self, cycle_index: int) -> InvoiceRecord | None:
        if cycle_index not in self._found:
            s = self._subscription
            invoice_id = invoice_id_of(s.business_id, s.subscription_id, cycle_index)
            aggregate_id = invoice_aggregate_id(s.business_id, invoice_id)
            self._found[cycle_index] = self._ledger.load(InvoiceRecord, aggregate_id)
        return self._found[cycle_index]

    def last_cut(self, cycle_index: int, before: int) -> int | None:
        """The last cut an invoice (its own, or a later one's adjustment before cycle
        ``before``) brought cycle ``cycle_index`` to; None if it is not finalized."""
        own = self.get(cycle_index)
        if own is None:
            return None
        cut = own.cut
        for later in range(cycle_index + 1, before):
            record = self.get(later)
            if record is not None:
                cut = max(cut, record.adjusted.get(str(cycle_index), 0))
        return cut


@dataclass(frozen=True, slots=True)
class Corrections:
    """What an invoice carries for earlier cycles: the adjustments, the cut each adjusted
    cycle is brought to (index as text), and the late overage they carry as a deficit."""

    adjustments: list[Adjustment]
    adjusted: dict[str, int]
    late_overage: dict[str, LateOverage]


def cycle_adjustments(
    ledger: Ledger,
    measure: Measure,
    subscription: Subscription,
    cycle_index: int,
    cut: int,
    candidates: Iterable[int],
) -> Corrections:
    """What cycle ``cycle_index``'s invoice, folded at ``cut``, carries for the earlier
    cycles among ``candidates``: each finalized one compared at the last cut an invoice
    brought it to and at ``cut``, with the credit its own invoice drew."""
    records = Records(ledger, subscription)
    found = Corrections([], {}, {})
    for earlier in sorted({c for c in candidates if 0 <= c < cycle_index}):
        old_cut = records.last_cut(earlier, cycle_index)
        record = records.get(earlier)
        if old_cut is None or record is None or old_cut >= cut:
            continue
        past = subscription.cycle(earlier)
        billed = priced(ledger, subscription, past)
        drawn = drawn_grants(json.loads(record.document), past.start)
        old = cycle_invoice(measure, subscription, past, billed, at=old_cut, grants=drawn)
        new = cycle_invoice(measure, subscription, past, billed, at=cut, grants=drawn)
        change = adjustment(old, new)
        if not change.is_zero:
            found.adjustments.append(change)
            found.adjusted[str(earlier)] = cut
            _add_late_overage(found.late_overage, billed.price, old, new)
    return found


def _add_late_overage(
    into: dict[str, LateOverage], price: UsagePrice, old: Invoice, new: Invoice
) -> None:
    """A deficit grows with late usage the credit did not cover; a void does not shrink
    it (as a void never gives credit back)."""
    for terms in price.credits:
        if not terms.carries_deficit:
            continue
        before, after = (_overage(i, terms.entitlement_id) for i in (old, new))
        if after <= before:
            continue
        carried = _EXACT.subtract(terms.carried(after), terms.carried(before))
        known = into.get(terms.entitlement_id, LateOverage(_ZERO, _ZERO, repays=False))
        into[terms.entitlement_id] = LateOverage(
            _EXACT.add(known.overage, _EXACT.subtract(after, before)),
            _EXACT.add(known.carried, carried),
            known.repays or terms.repays_deficit,
        )


def _overage(invoice: Invoice, entitlement_id: str) -> Decimal:
    items = (o.credits for o in invoice.overage if o.entitlement_id == entitlement_id)
    return reduce(_EXACT.add, items, _ZERO)


def latest_finalized(
    ledger: Ledger, catalogue: CatalogueStore, subscription: Subscription, before: int
) -> InvoiceRecord | None:
    """The subscription's last finalized invoice of a cycle before ``before``.

    The catalogue names the newest; the store is asked for any later record the
    catalogue has not reached yet (cycles are finalized in order).
    """
    query = InvoiceQuery(
        subscription.business_id, subscription_id=subscription.subscription_id, page_size=1
    )
    newest = catalogue.list_invoices(query)
    index = newest[0].cycle_index if newest else -1
    records = Records(ledger, subscription)
    if index >= before:  # an earlier cycle's is wanted (not a routine case): walk back
        index = before
        while index > 0 and records.get(index - 1) is None:
            index -= 1
        return records.get(index - 1) if index > 0 else None
    found = records.get(index) if index >= 0 else None
    while index + 1 < before and (later := records.get(index + 1)) is not None:
        found, index = later, index + 1
    return found


def changed_cycles(
    ledger: Ledger,
    reads: Reads,
    subscription: Subscription,
    cycle_index: int,
) -> set[int]:
    """The finalized cycles before ``cycle_index`` whose usage may have changed since the
    last invoice folded them: those holding an hour whose bucket changed after the cut
    of the subscription's latest invoice (every earlier cycle was compared at that cut).

    An hour that two cycles share names a cycle only if that cycle's part of the hour
    changed (asked of the usage log, one partial hour): the events of a new cycle's
    first hour do not make its predecessor look changed.
    """
    latest = latest_finalized(ledger, reads.catalogue, subscription, cycle_index)
    if latest is None:
        return set()
    business_id, customer_id = subscription.business_id, subscription.customer_id
    before = subscription.cycle(cycle_index).start
    changed: dict[datetime, set[str]] = {}
    for meter_id, hour in reads.usage.changed_since(business_id, customer_id, latest.cut, before):
        changed.setdefault(hour, set()).add(meter_id)
    touched: dict[int, set[str]] = {}
    for hour, meters in changed.items():
        first = subscription.cycle_at(hour)
        if first.end >= hour + HOUR:  # the hour lies within one cycle
            parts: list[tuple[Cycle, tuple[datetime, datetime] | None]] = [(first, None)]
        else:
            second = subscription.cycle(first.index + 1)
            parts = [(c, (max(hour, c.start), min(hour + HOUR, c.end))) for c in (first, second)]
        for part, span in parts:
            if part.index > latest.cycle_index:
                continue
            if span is None or reads.usage_log.changed_between(
                business_id, customer_id, span[0], span[1], latest.cut
            ):
                touched.setdefault(part.index, set()).update(meters)
    if not touched:
        return set()
    product = ledger.load_product(business_id, subscription.product_id)
    return {
        index
        for index, meters in touched.items()
        if meters & {m.meter_id for m in product.price_at(subscription.cycle(index).start).meters}
    }

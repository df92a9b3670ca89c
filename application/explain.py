"""Explain a finalized invoice: per line, what the meter counted and which credit it drew.

Each line is recomputed as the invoice's fold saw the log: the customer's
events of the cycle recorded at a log position up to the invoice's ``cut`` and
not voided at one, measured by the meter's definition (a billed meter's
definition is locked, ``Meter.lock``, so its current one is the one the fold
used). The counts come from the usage projection's hourly tallies
(``application.measure``, at the cut); the decisive event of a ``max`` or
``min`` meter is found in the one hour (or piece of one) that first reached
the extreme, read from the usage log; a ``last`` tally holds its event. The
counting rules and the choice of the decisive event are ``domain.explain``'s.

The line's own figures, its credit draws (in drawdown order) and its overage
come from the invoice's canonical document, as do the adjustments of earlier
cycles it carries (each with the cuts it compares and the invoice it corrects).
Decimals are canonical strings, as in the document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from application.billing import invoice_record
from application.ledger import Ledger
from application.measure import HOUR
from application.reads import Reads
from application.subscriptions import load
from application.tally import hour_of
from domain.credits import CreditLink
from domain.explain import Decisive, Explanation, deciding_part, explain_meter, explanation_of
from domain.invoice_record import InvoiceRecord, invoice_id_of
from domain.meter import MeterSpec, Tally, canonical_number
from domain.subscription import Subscription


def explain_invoice(
    ledger: Ledger, reads: Reads, business_id: str, invoice_id: str
) -> dict[str, Any]:
    """The explanation of finalized invoice ``invoice_id``; ``NotFoundError`` if unknown."""
    record = invoice_record(ledger, business_id, invoice_id)
    document: dict[str, Any] = json.loads(record.document)
    subscription = load(ledger, business_id, record.subscription_id)
    product = ledger.load_product(business_id, subscription.product_id)
    links = {m.meter_id: m.credit for m in product.price_at(record.cycle_start).meters}
    meter_ids = [line["meter_id"] for line in document["lines"]]
    specs = {meter_id: ledger.meter_spec(business_id, meter_id) for meter_id in meter_ids}
    found = explain_at(reads, record, specs)
    return {
        "invoice_id": record.invoice_id,
        "subscription_id": record.subscription_id,
        "customer_id": record.customer_id,
        "product_id": subscription.product_id,
        "cycle_index": record.cycle_index,
        "cycle_start": record.cycle_start,
        "cycle_end": record.cycle_end,
        "cut": record.cut,
        "currency": record.currency,
        "total_minor": record.total_minor,
        "sha256": record.sha256,
        "lines": [
            _line(ledger, business_id, line, specs, found, links.get(line["meter_id"]), document)
            for line in document["lines"]
        ],
        "adjustments": [
            _adjustment(item, subscription, record) for item in document["adjustments"]
        ],
    }


def explain_at(
    reads: Reads, record: InvoiceRecord, specs: Mapping[str, MeterSpec]
) -> dict[str, Explanation]:
    """Each meter's explanation over the invoice's cycle, at its cut."""
    start, end = record.cycle_start, record.cycle_end
    measured = reads.measure.parts(
        record.business_id, specs, record.customer_id, start, end, at=record.cut
    )
    found: dict[str, Explanation] = {}
    for meter_id, spec in specs.items():
        parts = measured.parts[meter_id]
        tally = Tally()
        for _, part in parts:
            tally = tally.merge(part)
        decisive = None
        at = deciding_part(spec.aggregation.kind, parts)
        if at is not None:  # read that part's events only
            span_start, span_end = max(at, start), min(hour_of(at) + HOUR, end)
            records = reads.usage_log.stream_records(
                record.business_id,
                spec.event_name,
                record.customer_id,
                span_start,
                span_end,
                record.cut,
            )
            decisive = explain_meter(spec, records, span_start, span_end).decisive
        found[meter_id] = explanation_of(spec, tally, decisive)
    return found


def _line(
    ledger: Ledger,
    business_id: str,
    line: Mapping[str, Any],
    specs: Mapping[str, MeterSpec],
    found: Mapping[str, Explanation],
    link: CreditLink | None,
    document: Mapping[str, Any],
) -> dict[str, Any]:
    meter_id = line["meter_id"]
    meter = ledger.meter(business_id, meter_id)
    wire = specs[meter_id].to_wire()
    explanation = found[meter_id]
    return {
        "meter": {
            "meter_id": meter_id,
            "name": meter.name,
            "event_name": wire["event_name"],
            "measurement_unit": meter.measurement_unit,
        },
        "aggregation": wire["aggregation"],
        "filter": wire["filter"],
        "events_counted": explanation.events_counted,
        "consumed": _decimal(explanation.consumed),
        "decisive_event": _decisive(explanation.decisive),
        **_credit(meter_id, link, document),
        "line": dict(line),
    }


def _credit(meter_id: str, link: CreditLink | None, document: Mapping[str, Any]) -> dict[str, Any]:
    """The entitlement the meter draws on, the grants it drew in order, and its overage."""
    return {
        "credit_link": None
        if link is None
        else {
            "credit_entitlement_id": link.entitlement_id,
            "meter_units_per_credit": _decimal(link.units_per_credit),
        },
        "credit_draws": [
            {k: v for k, v in draw.items() if k != "meter_id"}
            for draw in document["credit_draws"]
            if draw["meter_id"] == meter_id
        ],
        "credit_overage": [
            {k: v for k, v in item.items() if k != "meter_id"}
            for item in document["credit_overage"]
            if item["meter_id"] == meter_id
        ],
    }


def _decisive(decisive: Decisive | None) -> dict[str, Any] | None:
    if decisive is None:
        return None
    return {
        "event_id": decisive.event_id,
        "timestamp": decisive.timestamp,
        "value": _decimal(decisive.value),
    }


def _adjustment(
    item: Mapping[str, Any], subscription: Subscription, record: InvoiceRecord
) -> dict[str, Any]:
    """An adjustment as the document has it, and which earlier cycle (and invoice) it corrects."""
    start = datetime.fromisoformat(item["cycle"]["start"])
    cycle_index = next(
        (int(i) for i in record.adjusted if subscription.cycle(int(i)).start == start), None
    )
    invoice_id = (
        None
        if cycle_index is None
        else invoice_id_of(record.business_id, record.subscription_id, cycle_index)
    )
    return {"cycle_index": cycle_index, "invoice_id": invoice_id, **item}


def _decimal(value: Decimal) -> str:
    return format(canonical_number(value), "f")

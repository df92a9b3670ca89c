"""The invoice of one billing cycle: a pure fold of that cycle's usage events.

``fold_invoice`` takes the cycle, the ``UsagePrice`` in force when it began,
the spec of each priced meter, the customer's usage events (in any order, any
of them possibly outside the cycle), the credit units each meter may draw on
and the log position (``cut``) the events were read up to. It keeps the events
with ``cycle.start <= timestamp < cycle.end``, measures each meter over them
(``domain.meter``), and prices each meter with ``domain.pricing.meter_line``.
The result depends on the set of events only, never on their order.

The ``Invoice`` has one line per priced meter, sorted by ``meter_id``, the fixed
price, and any adjustments of earlier cycles it carries. ``total_minor`` is the
fixed price plus the sum of the rounded lines plus the adjustments.

``canonical_bytes`` is the invoice as JSON with sorted keys and no whitespace,
ASCII only; decimals are strings with one spelling per value (``"2.5"``, never
``"2.50"`` or ``"2.5E0"``), amounts are integers, datetimes are ISO 8601 UTC
ending in ``Z`` (with microseconds only when they are not zero). ``sha256`` is
the hex digest of those bytes.

Invariant 8: a cycle finalized at cut A that gains or loses usage by cut B is
corrected by ``adjustment(fold at A, fold at B)``: per meter, the new line minus
the old one, amounts included. Since amounts are differences of rounded lines,
the old invoice plus its adjustments always sums to what the cycle would have
cost had every event been there at A. For ``max``, ``min``, ``last`` and
``unique_count`` this is not the fold of the late events alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice

from domain.credits import CreditLink, Draw, Grant, Overage, cover
from domain.cycles import Cycle
from domain.errors import InvoiceMismatchError
from domain.grouping import group_chunk
from domain.line import GroupValue, Line, SubLine, chargeable_units, price_line
from domain.meter import MeterSpec, Tally, UsageRecord, canonical_number
from domain.price_model import PriceModel, TierCharge
from domain.pricing import MeterPrice, UsagePrice

FORMAT = "ledger.invoice/1"
CHUNK = 10_000  # events tallied at a time: bounds memory, amortises the per-chunk merge
JsonValue = str | int | None | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One priced meter's usage in the cycle."""

    meter_id: str
    consumed: Decimal
    free_threshold: int
    chargeable: Decimal
    credits_applied: Decimal
    billed_units: Decimal
    unit_price: Decimal
    amount_minor: int
    forgiven: Decimal = Decimal(0)
    price: MeterPrice | None = None  # None: plain per unit (domain.line.Line)
    tiers: tuple[TierCharge, ...] = ()
    packages: int | None = None
    priced_minor: int | None = None
    sub_lines: tuple[SubLine, ...] = ()

    @classmethod
    def of(cls, meter_id: str, line: Line) -> InvoiceLine:
        return cls(
            meter_id,
            line.consumed,
            line.free_threshold,
            line.chargeable,
            line.credits_applied,
            line.billed_units,
            line.unit_price,
            line.amount_minor,
            line.forgiven,
            line.price,
            line.tiers,
            line.packages,
            line.priced_minor,
            line.sub_lines,
        )


@dataclass(frozen=True, slots=True)
class AdjustmentLine:
    """How one meter's line of a finalized cycle changed: new minus old."""

    meter_id: str
    consumed: Decimal
    chargeable: Decimal
    credits_applied: Decimal
    billed_units: Decimal
    amount_minor: int
    forgiven: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Adjustment:
    """The correction of a finalized cycle: its fold at ``to_cut`` minus at ``from_cut``."""

    currency: str
    cycle_start: datetime
    cycle_end: datetime
    from_cut: int
    to_cut: int
    lines: tuple[AdjustmentLine, ...]

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    @property
    def is_zero(self) -> bool:
        """Nothing the late events changed shows on an invoice (an amount can change with
        every quantity the same: units moved between the values of a grouped line)."""
        return not any(
            line.consumed
            or line.chargeable
            or line.credits_applied
            or line.billed_units
            or line.forgiven
            or line.amount_minor
            for line in self.lines
        )


@dataclass(frozen=True, slots=True)
class Invoice:
    """A cycle's invoice at log position ``cut``; amounts in the currency's minor unit."""

    currency: str
    cycle_start: datetime
    cycle_end: datetime
    cut: int
    fixed_price_minor: int
    lines: tuple[InvoiceLine, ...]
    adjustments: tuple[Adjustment, ...] = ()
    draws: tuple[Draw, ...] = ()
    overage: tuple[Overage, ...] = ()

    @property
    def total_minor(self) -> int:
        usage = sum(line.amount_minor for line in self.lines)
        return self.fixed_price_minor + usage + sum(a.total_minor for a in self.adjustments)

    def line(self, meter_id: str) -> InvoiceLine:
        return next(line for line in self.lines if line.meter_id == meter_id)

    def canonical_bytes(self) -> bytes:
        document = {
            "format": FORMAT,
            "currency": self.currency,
            "cycle": {"start": _iso(self.cycle_start), "end": _iso(self.cycle_end)},
            "cut": self.cut,
            "fixed_price_minor": self.fixed_price_minor,
            "lines": [_line_json(line) for line in sorted(self.lines, key=_by_meter)],
            "adjustments": [_adjustment_json(a) for a in sorted(self.adjustments, key=_order)],
            "credit_draws": [_draw_json(draw) for draw in self.draws],
            "credit_overage": [_overage_json(item) for item in self.overage],
            "total_minor": self.total_minor,
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return text.encode("ascii")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()


Groups = Mapping[str, Mapping[GroupValue, Decimal]]
"""Per grouped meter, each value's quantity (``domain.grouping``)."""


def fold_invoice(
    cycle: Cycle,
    price: UsagePrice,
    meters: Mapping[str, MeterSpec],
    events: Iterable[UsageRecord],
    *,
    cut: int,
    credits: Mapping[str, Decimal | int] | None = None,
    grants: Mapping[str, Sequence[Grant]] | None = None,
    adjustments: Iterable[Adjustment] = (),
) -> Invoice:
    """The invoice of ``cycle`` over ``events``; those outside the cycle are ignored.

    ``grants`` are the credit grants usable in the cycle per attached entitlement,
    with their balances before it, drawn on by meters linked to an entitlement
    (``domain.credits.cover``); ``credits`` gives unlinked meters plain credit units.
    """
    tallies, grouped = _cycle_pass(cycle, price, meters, events)
    consumed = {
        meter_id: tally.result(meters[meter_id].aggregation) for meter_id, tally in tallies.items()
    }
    groups = {
        meter_id: {value: t.result(meters[meter_id].aggregation) for value, t in by_value.items()}
        for meter_id, by_value in grouped.items()
    }
    return price_cycle(
        cycle,
        price,
        consumed,
        cut=cut,
        credits=credits,
        grants=grants,
        adjustments=adjustments,
        groups=groups,
    )


def cycle_tallies(
    cycle: Cycle,
    price: UsagePrice,
    meters: Mapping[str, MeterSpec],
    events: Iterable[UsageRecord],
) -> dict[str, Tally]:
    """Each priced meter's tally of the events within ``cycle``; tallies merge across parts."""
    return _cycle_pass(cycle, price, meters, events)[0]


def _cycle_pass(
    cycle: Cycle,
    price: UsagePrice,
    meters: Mapping[str, MeterSpec],
    events: Iterable[UsageRecord],
) -> tuple[dict[str, Tally], dict[str, dict[GroupValue, Tally]]]:
    """Each priced meter's tally, and each grouped meter's tally per value, in one pass."""
    missing = sorted(meter.meter_id for meter in price.meters if meter.meter_id not in meters)
    if missing:
        raise InvoiceMismatchError(f"no meter definition for priced meters {missing}")
    start, end = cycle.start, cycle.end
    specs = [(meter.meter_id, meters[meter.meter_id]) for meter in price.meters]
    keys = {m.meter_id: m.group_by for m in price.meters if m.group_by is not None}
    tallies = {meter_id: Tally() for meter_id, _ in specs}
    grouped: dict[str, dict[GroupValue, Tally]] = {meter_id: {} for meter_id in keys}
    # One pass over ``events`` (it may be a stream), a chunk at a time, so memory
    # stays flat in the number of events; tallies merge into the tally of all.
    within = (record for record in events if start <= record[0] < end)
    while chunk := list(islice(within, CHUNK)):
        for meter_id, spec in specs:
            tallies[meter_id] = tallies[meter_id].merge(spec.tally(chunk))
            if meter_id in keys:
                merge_groups(grouped[meter_id], group_chunk(spec, keys[meter_id], chunk))
    return tallies, grouped


def merge_groups(into: dict[GroupValue, Tally], part: Mapping[GroupValue, Tally]) -> None:
    """Merge one part's tallies per value into ``into``."""
    for value, tally in part.items():
        into[value] = into.get(value, Tally()).merge(tally)


def price_cycle(
    cycle: Cycle,
    price: UsagePrice,
    consumed: Mapping[str, Decimal],
    *,
    cut: int,
    credits: Mapping[str, Decimal | int] | None = None,
    grants: Mapping[str, Sequence[Grant]] | None = None,
    adjustments: Iterable[Adjustment] = (),
    groups: Groups | None = None,
) -> Invoice:
    """The invoice of ``cycle`` given each priced meter's measured quantity.

    ``groups`` gives each grouped meter's quantity per value (``domain.line``).
    """
    credits = dict(credits or {})
    groups = groups or {}
    priced = {meter.meter_id for meter in price.meters}
    links: dict[str, CreditLink] = {m.meter_id: m.credit for m in price.meters if m.credit}
    if set(credits) & set(links):
        raise InvoiceMismatchError("a meter linked to a credit entitlement takes no plain credits")
    if set(consumed) != priced or not set(credits) <= priced:
        raise InvoiceMismatchError(
            f"quantities for {sorted(consumed)} and credits for {sorted(credits)} do not "
            f"match the priced meters {sorted(priced)}"
        )
    if type(cut) is not int or cut < 0:
        raise InvoiceMismatchError(f"cut must be a log position (an integer >= 0), not {cut!r}")
    carried = tuple(adjustments)
    if any(a.currency != price.currency for a in carried):
        raise InvoiceMismatchError(f"an adjustment in another currency than {price.currency}")
    chargeable = {
        m.meter_id: chargeable_units(consumed[m.meter_id], m.free_threshold) for m in price.meters
    }
    terms = {t.entitlement_id: t for t in price.credits}
    coverage, draws = cover(chargeable, links, terms, grants or {})
    forgiven: dict[str, Decimal | int] = {}
    for meter_id, covered in coverage.items():
        credits[meter_id] = covered.credit_units
        forgiven[meter_id] = covered.forgiven_units
    lines = (
        InvoiceLine.of(
            meter.meter_id,
            price_line(
                consumed[meter.meter_id],
                meter,
                credits.get(meter.meter_id, 0),
                forgiven.get(meter.meter_id, 0),
                groups.get(meter.meter_id),
            ),
        )
        for meter in price.meters
    )
    return Invoice(
        price.currency,
        cycle.start,
        cycle.end,
        cut,
        price.fixed_price,
        tuple(sorted(lines, key=_by_meter)),
        carried,
        draws,
        tuple(
            Overage(
                links[m].entitlement_id,
                m,
                c.overage_credits,
                c.billed_credits,
            )
            for m, c in sorted(coverage.items())
            if c.overage_credits
        ),
    )


def adjustment(old: Invoice, new: Invoice) -> Adjustment:
    """``new`` minus ``old``: the same cycle and prices, folded up to a later cut.

    Only the meter lines are compared; adjustments the two carry are not.
    """
    if (old.currency, old.cycle_start, old.cycle_end, old.fixed_price_minor) != (
        new.currency,
        new.cycle_start,
        new.cycle_end,
        new.fixed_price_minor,
    ) or new.cut < old.cut:
        raise InvoiceMismatchError("an adjustment compares one cycle at an earlier and later cut")
    before_lines = sorted(old.lines, key=_by_meter)
    after_lines = sorted(new.lines, key=_by_meter)
    if [_terms(line) for line in before_lines] != [_terms(line) for line in after_lines]:
        raise InvoiceMismatchError("an adjustment compares one cycle at the same prices")
    lines = tuple(
        AdjustmentLine(
            after.meter_id,
            _minus(after.consumed, before.consumed),
            _minus(after.chargeable, before.chargeable),
            _minus(after.credits_applied, before.credits_applied),
            _minus(after.billed_units, before.billed_units),
            after.amount_minor - before.amount_minor,
            _minus(after.forgiven, before.forgiven),
        )
        for before, after in zip(before_lines, after_lines, strict=True)
    )
    return Adjustment(new.currency, new.cycle_start, new.cycle_end, old.cut, new.cut, lines)


def _terms(line: InvoiceLine) -> tuple[str, int, object]:
    """What prices a line: the same in both folds of an adjustment."""
    if line.price is None:
        return (line.meter_id, line.free_threshold, line.unit_price)
    return (line.meter_id, line.free_threshold, replace(line.price, credit=None))


def _minus(after: Decimal, before: Decimal) -> Decimal:
    return canonical_number(after - before)


def _by_meter(line: InvoiceLine | AdjustmentLine) -> str:
    return line.meter_id


def _order(item: Adjustment) -> tuple[datetime, int, int]:
    return (item.cycle_start, item.from_cut, item.to_cut)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _line_json(line: InvoiceLine | AdjustmentLine) -> dict[str, JsonValue]:
    """A line's plain fields; a line priced by our extensions adds how (``_pricing_json``)."""
    document: dict[str, JsonValue] = {}
    for field in fields(line):
        value = getattr(line, field.name)
        if isinstance(value, Decimal):
            document[field.name] = _decimal(value)
        elif isinstance(value, int | str) and field.name not in _EXTENSION_FIELDS:
            document[field.name] = value
    if isinstance(line, InvoiceLine) and line.price is not None:
        document.update(_pricing_json(line, line.price))
    return document


_EXTENSION_FIELDS = frozenset({"packages", "priced_minor"})  # written by _pricing_json


def _pricing_json(line: InvoiceLine, price: MeterPrice) -> dict[str, JsonValue]:
    document: dict[str, JsonValue] = {}
    if price.group_by is not None:
        document["group_by"] = price.group_by
        document["sub_lines"] = [_sub_line_json(sub) for sub in line.sub_lines]
    else:
        document.update(_model_json(price.pricing, line.tiers, line.packages))
    if line.priced_minor is not None:
        document["priced_minor"] = line.priced_minor
    bounds = {"minimum_amount": price.minimum_minor, "maximum_amount": price.maximum_minor}
    document.update({name: value for name, value in bounds.items() if value is not None})
    return document


def _sub_line_json(sub: SubLine) -> dict[str, JsonValue]:
    document: dict[str, JsonValue] = {
        "value": sub.value,
        "consumed": _decimal(sub.consumed),
        "billed_units": _decimal(sub.billed_units),
        "unit_price": _decimal(sub.unit_price),
        "amount_minor": sub.amount_minor,
    }
    if sub.rest:
        document["values_merged"] = sub.rest
    document.update(_model_json(sub.model, sub.tiers, sub.packages))
    return document


def _model_json(
    model: PriceModel, charged: tuple[TierCharge, ...], packages: int | None
) -> dict[str, JsonValue]:
    """How a model priced: each tier with what it charged, or the packages."""
    document: dict[str, JsonValue] = {"pricing_model": model.kind.value}
    if model.tiers:
        used = {part.index: part for part in charged}
        document["tiers"] = [
            {
                "up_to": None if tier.up_to is None else _decimal(tier.up_to),
                "price_per_unit": _decimal(tier.price_per_unit),
                "flat_fee": tier.flat_fee,
                "units": _decimal(used[i].units) if i in used else "0",
                "amount": _decimal(used[i].amount) if i in used else "0",
            }
            for i, tier in enumerate(model.tiers)
        ]
    if packages is not None:
        document["package_size"] = model.package_size
        document["package_price"] = _decimal(model.package_price)
        document["package_rounding"] = model.rounding.value
        document["packages"] = packages
    return document


def _adjustment_json(item: Adjustment) -> dict[str, JsonValue]:
    return {
        "cycle": {"start": _iso(item.cycle_start), "end": _iso(item.cycle_end)},
        "from_cut": item.from_cut,
        "to_cut": item.to_cut,
        "lines": [_line_json(line) for line in sorted(item.lines, key=_by_meter)],
        "total_minor": item.total_minor,
    }


def _draw_json(draw: Draw) -> dict[str, JsonValue]:
    return {
        "credit_entitlement_id": draw.entitlement_id,
        "meter_id": draw.meter_id,
        "grant_id": draw.grant_id,
        "credits": _decimal(draw.credits),
    }


def _overage_json(item: Overage) -> dict[str, JsonValue]:
    return {
        "credit_entitlement_id": item.entitlement_id,
        "meter_id": item.meter_id,
        "credits": _decimal(item.credits),
        "billed_credits": _decimal(item.billed_credits),
    }


def _decimal(value: Decimal) -> str:
    return format(canonical_number(value), "f")

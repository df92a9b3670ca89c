"""A meter's line: its usage in one cycle, priced, rounded once.

- ``chargeable = max(consumed - free_threshold, 0)``
- ``credits_applied = min(credit_units, chargeable)``: credits cover usage above
  the free threshold first.
- ``billed_units = chargeable - credits_applied - forgiven``, where ``forgiven``
  is usage credits did not cover that the credit entitlement's overage settings
  say is not billed (``domain.credits``).
- ``amount_minor``: the line's model (``domain.price_model``) applied to
  ``billed_units``, computed exactly and then rounded ONCE to a whole number of
  minor units with ROUND_HALF_EVEN (banker's rounding: a half goes to the even
  neighbour, so 0.5 -> 0, 1.5 -> 2, 2.5 -> 2), then held within the line's
  ``minimum_amount`` and ``maximum_amount`` (a minimum is charged with no usage
  too). This is THE rounding mode of the ledger; nothing else is ever rounded,
  and an invoice's total is the sum of its rounded lines.

A grouped line (``group_by``) measures each value of the metadata key apart:
``consumed`` is the sum of the values' quantities (the meter's own, for a count
or sum meter). The units the line does not bill (free threshold, credits,
forgiven) are taken from its sub-lines in the order they are shown: the values
the price lists, in its order, then the others by value (an event without the
key last). Each sub-line prices its billed units by its value's model (the
line's own for unlisted values) and is rounded once; the line's amount is the
sum of its sub-lines, then held within its minimum and maximum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation
from decimal import Overflow as DecimalOverflow

from domain.errors import InvalidPriceError, InvoiceMismatchError
from domain.meter import canonical_number
from domain.price_model import Charge, PriceModel, TierCharge, exact_sum
from domain.pricing import MAX_SUB_LINES, MeterPrice

_EXACT = Context(prec=2000, traps=[InvalidOperation, DivisionByZero, DecimalOverflow, Inexact])
_ZERO = Decimal(0)
GroupValue = str | None


@dataclass(frozen=True, slots=True)
class SubLine:
    """One value of a grouped line: its usage and what it billed.

    ``rest`` counts the unlisted values beyond ``MAX_SUB_LINES`` this sub-line
    carries together (then ``value`` is None); 0 for a sub-line of one value.
    """

    value: GroupValue
    consumed: Decimal
    billed_units: Decimal
    unit_price: Decimal
    amount_minor: int
    model: PriceModel
    tiers: tuple[TierCharge, ...] = ()
    packages: int | None = None
    rest: int = 0


@dataclass(frozen=True, slots=True)
class Line:
    """One meter's usage in one cycle, priced. Quantities are canonical Decimals.

    The fields after ``forgiven`` are empty for a plain per-unit line, so its
    canonical form is what it has always been.
    """

    consumed: Decimal
    free_threshold: int
    chargeable: Decimal
    credits_applied: Decimal
    billed_units: Decimal
    unit_price: Decimal
    amount_minor: int
    forgiven: Decimal = _ZERO
    price: MeterPrice | None = None  # None: plain per unit at ``unit_price``
    tiers: tuple[TierCharge, ...] = ()
    packages: int | None = None
    priced_minor: int | None = None  # before the minimum and maximum
    sub_lines: tuple[SubLine, ...] = ()


def chargeable_units(consumed: Decimal, free_threshold: int) -> Decimal:
    """What of ``consumed`` lies above the free threshold."""
    return canonical_number(max(_EXACT.subtract(consumed, free_threshold), _ZERO))


def meter_line(
    consumed: Decimal,
    free_threshold: int,
    price_per_unit: Decimal,
    credit_units: Decimal | int = 0,
    forgiven_units: Decimal | int = 0,
) -> Line:
    """A plain per-unit line (``price_line`` with ``MeterPrice(.., price_per_unit)``)."""
    price = MeterPrice("meter", price_per_unit, free_threshold)
    return price_line(consumed, price, credit_units, forgiven_units)


def price_line(
    consumed: Decimal,
    price: MeterPrice,
    credit_units: Decimal | int = 0,
    forgiven_units: Decimal | int = 0,
    groups: Mapping[GroupValue, Decimal] | None = None,
) -> Line:
    """Price ``consumed`` units; ``credit_units`` of credit cover what they can first.

    ``forgiven_units`` of what credit did not cover are not billed (capped at that).
    A grouped price needs ``groups``: each value's quantity, adding up to ``consumed``.
    """
    if not _is_count(credit_units):
        raise InvalidPriceError(f"credit units must be a non-negative number, not {credit_units}")
    if not _is_count(forgiven_units):
        raise InvalidPriceError(f"forgiven units must be non-negative, not {forgiven_units}")
    chargeable = chargeable_units(consumed, price.free_threshold)
    credits_applied = canonical_number(min(Decimal(credit_units), chargeable))
    uncovered = _EXACT.subtract(chargeable, credits_applied)
    forgiven = canonical_number(min(Decimal(forgiven_units), uncovered))
    billed = canonical_number(_EXACT.subtract(uncovered, forgiven))
    head = (
        canonical_number(consumed),
        price.free_threshold,
        chargeable,
        credits_applied,
        billed,
    )
    if price.is_plain:
        charge = price.pricing.charge(billed)
        return Line(*head, charge.unit_price, round_minor(charge.amount), forgiven)
    if price.group_by is not None:
        sub_lines = _sub_lines(price, consumed, billed, groups)
        priced = sum(sub.amount_minor for sub in sub_lines)
        unit_price = price.pricing.charge(_ZERO).unit_price
        amount = _bounded(price, priced)
        return Line(*head, unit_price, amount, forgiven, price, (), None, priced, sub_lines)
    charge = price.pricing.charge(billed)
    priced = round_minor(charge.amount)
    return Line(
        *head,
        charge.unit_price,
        _bounded(price, priced),
        forgiven,
        price,
        charge.tiers,
        charge.packages,
        priced,
    )


def round_minor(amount: Decimal) -> int:
    """``amount`` minor units rounded to a whole one, half to even: the ledger's one rounding."""
    return int(amount.to_integral_value(rounding=ROUND_HALF_EVEN))


def sub_line_order(price: MeterPrice, values: list[GroupValue]) -> list[GroupValue]:
    """Listed values in the price's order, then the others by value, no value last."""
    listed = [group.value for group in price.groups]
    others = sorted(v for v in values if v is not None and v not in listed)
    return listed + others + ([None] if None in values else [])


def _sub_lines(
    price: MeterPrice,
    consumed: Decimal,
    billed: Decimal,
    groups: Mapping[GroupValue, Decimal] | None,
) -> tuple[SubLine, ...]:
    if groups is None:
        raise InvoiceMismatchError(f"a line grouped by {price.group_by!r} needs its groups")
    total = exact_sum(groups.values())
    if canonical_number(total) != canonical_number(consumed):
        raise InvoiceMismatchError(
            f"the groups of a line add up to {canonical_number(total)}, not {consumed}: a "
            "grouped line needs a count or sum meter"
        )
    measured = [(value, canonical_number(groups.get(value, _ZERO))) for value in groups]
    order = sub_line_order(price, [value for value, _ in measured])
    quantities = dict(measured)
    shown = [(value, quantities.get(value, _ZERO), 0) for value in order]
    if len(shown) > MAX_SUB_LINES:
        tail = shown[MAX_SUB_LINES - 1 :]
        merged = exact_sum(quantity for _, quantity, _ in tail)
        shown = [*shown[: MAX_SUB_LINES - 1], (None, canonical_number(merged), len(tail))]
    unbilled = _EXACT.subtract(consumed, billed)
    sub_lines = []
    for value, quantity, rest in shown:
        taken = min(unbilled, quantity)
        unbilled = _EXACT.subtract(unbilled, taken)
        units = canonical_number(_EXACT.subtract(quantity, taken))
        model = price.pricing if rest else price.model_for(value)
        charge: Charge = model.charge(units)
        sub_lines.append(
            SubLine(
                value,
                quantity,
                units,
                charge.unit_price,
                round_minor(charge.amount),
                model,
                charge.tiers,
                charge.packages,
                rest,
            )
        )
    return tuple(sub_lines)


def _bounded(price: MeterPrice, amount: int) -> int:
    if price.minimum_minor is not None:
        amount = max(amount, price.minimum_minor)
    if price.maximum_minor is not None:
        amount = min(amount, price.maximum_minor)
    return amount


def _is_count(units: object) -> bool:
    if type(units) is int:
        return units >= 0
    return isinstance(units, Decimal) and units.is_finite() and units >= 0

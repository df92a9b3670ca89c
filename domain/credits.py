"""Credit grants: the order they are spent in, and what rolls over at a cycle's end.

A ``Grant`` is credit given to a customer at ``granted_at``, usable until
``expires_at`` (exclusive; ``None``: never expires), with ``balance`` units
left. ``draw_down`` spends units from the grants usable at a moment in ONE
fixed order, whatever order the grants are given in:

1. the grant that expires soonest first; grants that never expire last;
2. then the oldest grant (smallest ``granted_at``);
3. then the smallest ``grant_id``.

Each grant gives what it has before the next is touched; what the grants do
not cover is the overage. Units and balances are exact Decimals, never rounded:
the deductions and the overage add up to the units asked for.

``RolloverRule`` splits a grant's unused balance at cycle end into what rolls
over (``percentage`` of it, while the credit has rolled over fewer than
``max_count`` times) and what is forfeited. With a ``precision`` the carried
part is rounded DOWN to that many decimal places, so rolling over never
creates credit; the forfeited part is the exact rest.

Credit-based billing (``cover``): a priced meter may be linked to a credit
entitlement the product attaches (``CreditLink``: ``meter_units_per_credit``
meter units cost one credit). Within a cycle, the linked meters draw, in
``meter_id`` order, on the grants usable in that cycle, in the drawdown order
above. A meter's chargeable units (above its free threshold) need
``chargeable / meter_units_per_credit`` credits, rounded UP to the
entitlement's ``precision``; the grants give what they have. What they do not
cover is overage: billed at the meter's ``price_per_unit`` only when the
entitlement's overage is enabled with ``overage_behavior`` ``invoice_at_billing``,
and then at most ``overage_limit`` credits' worth per cycle (``None``: no limit);
every other overage unit is not billed on the invoice. With ``overage_behavior``
``carry_deficit`` or ``carry_deficit_auto_repay`` (overage enabled) the cycle's
overage, up to ``overage_limit`` credits, is not reset when the cycle is settled:
it stays on the account as a deficit (``domain.credit_account``); the rest is
forgiven.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
)

from domain.cycles import Frequency
from domain.errors import InvalidCreditError
from domain.meter import canonical_number

_EXACT = Context(prec=1000, traps=[InvalidOperation, Overflow, Inexact])
_ROUNDING = Context(prec=1000, traps=[InvalidOperation, Overflow])  # rounds on purpose
_CEILING = Context(prec=1000, rounding=ROUND_CEILING, traps=[InvalidOperation, Overflow])
_ZERO = Decimal(0)
MAX_PRECISION = 12
OVERAGE_BEHAVIORS = (
    "forgive_at_reset",
    "invoice_at_billing",
    "carry_deficit",
    "carry_deficit_auto_repay",
)
BILLED_OVERAGE = "invoice_at_billing"
REPAID_DEFICIT = "carry_deficit_auto_repay"


@dataclass(frozen=True, slots=True)
class Grant:
    """Credit usable from ``granted_at`` until ``expires_at`` (exclusive; None: forever)."""

    grant_id: str
    balance: Decimal
    granted_at: datetime
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.grant_id, str) or not self.grant_id:
            raise InvalidCreditError("grant_id must be a non-empty string")
        object.__setattr__(self, "balance", _units("balance", self.balance))
        if self.expires_at is not None and self.expires_at <= self.granted_at:
            raise InvalidCreditError(f"grant {self.grant_id!r} expires before it is granted")

    def is_usable(self, at: datetime) -> bool:
        return self.granted_at <= at and (self.expires_at is None or at < self.expires_at)

    def drawdown_key(self) -> tuple[bool, datetime, datetime, str]:
        """Where the grant comes in the drawdown order (see the module docstring)."""
        expiry = self.granted_at if self.expires_at is None else self.expires_at
        return (self.expires_at is None, expiry, self.granted_at, self.grant_id)


@dataclass(frozen=True, slots=True)
class Deduction:
    grant_id: str
    units: Decimal
    balance_before: Decimal
    balance_after: Decimal


@dataclass(frozen=True, slots=True)
class Drawdown:
    """Which grants paid for ``covered`` units, in order, and the ``overage`` they did not."""

    deductions: tuple[Deduction, ...]
    covered: Decimal
    overage: Decimal


def drawdown_order(grants: Iterable[Grant]) -> list[Grant]:
    """The grants in the order they are spent; refuses two grants with one id."""
    ordered = sorted(grants, key=Grant.drawdown_key)
    ids = [grant.grant_id for grant in ordered]
    if len(set(ids)) != len(ids):
        raise InvalidCreditError("each grant must have its own grant_id")
    return ordered


def draw_down(grants: Iterable[Grant], units: Decimal | int, at: datetime | None) -> Drawdown:
    """Spend ``units`` from the grants usable at ``at`` (None: all given), in the fixed order."""
    wanted = remaining = _units("units", units)
    deductions = []
    for grant in drawdown_order(grants):
        if not remaining:
            break
        if not grant.balance or (at is not None and not grant.is_usable(at)):
            continue
        taken = min(grant.balance, remaining)
        remaining = canonical_number(_EXACT.subtract(remaining, taken))
        after = canonical_number(_EXACT.subtract(grant.balance, taken))
        deductions.append(Deduction(grant.grant_id, taken, grant.balance, after))
    covered = canonical_number(_EXACT.subtract(wanted, remaining))
    return Drawdown(tuple(deductions), covered, remaining)


@dataclass(frozen=True, slots=True)
class RolloverRule:
    """``percentage`` (0 to 100) of unused credit rolls over, at most ``max_count`` times."""

    percentage: int
    max_count: int | None = None
    precision: int | None = None

    def __post_init__(self) -> None:
        if type(self.percentage) is not int or not 0 <= self.percentage <= 100:
            raise InvalidCreditError("rollover percentage must be an integer from 0 to 100")
        if self.max_count is not None and (type(self.max_count) is not int or self.max_count < 0):
            raise InvalidCreditError("max_rollover_count must be a non-negative integer or null")
        if self.precision is not None and (
            type(self.precision) is not int or not 0 <= self.precision <= MAX_PRECISION
        ):
            raise InvalidCreditError(f"precision must be an integer from 0 to {MAX_PRECISION}")

    def split(self, unused: Decimal | int, times_rolled: int) -> tuple[Decimal, Decimal]:
        """``(carried, forfeited)`` of ``unused`` credit that has rolled over ``times_rolled``."""
        unused = _units("unused", unused)
        if type(times_rolled) is not int or times_rolled < 0:
            raise InvalidCreditError("times_rolled must be a non-negative integer")
        if self.max_count is not None and times_rolled >= self.max_count:
            return _ZERO, unused
        carried = _EXACT.multiply(unused, Decimal(self.percentage).scaleb(-2))
        if self.precision is not None:
            step = Decimal(1).scaleb(-self.precision)
            carried = carried.quantize(step, ROUND_FLOOR, _ROUNDING)
        carried = canonical_number(carried)
        return carried, canonical_number(_EXACT.subtract(unused, carried))


def _units(name: str, value: object) -> Decimal:
    if type(value) is int and value >= 0:
        return Decimal(value)
    if isinstance(value, Decimal) and value.is_finite() and value >= 0:
        return canonical_number(value)
    raise InvalidCreditError(f"{name} must be a non-negative number, not {value!r}")


@dataclass(frozen=True, slots=True)
class CreditLink:
    """A priced meter draws on ``entitlement_id``: ``units_per_credit`` units cost 1 credit."""

    entitlement_id: str
    units_per_credit: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.entitlement_id, str) or not self.entitlement_id:
            raise InvalidCreditError("credit_entitlement_id must be a non-empty string")
        value = self.units_per_credit
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            raise InvalidCreditError("meter_units_per_credit must be a positive number")
        object.__setattr__(self, "units_per_credit", canonical_number(value))


@dataclass(frozen=True, slots=True)
class CreditTerms:
    """A credit entitlement as a product attaches it: what each cycle grants, and its rules."""

    entitlement_id: str
    credits_amount: Decimal
    precision: int = 0
    overage_enabled: bool = False
    overage_behavior: str = "forgive_at_reset"
    overage_limit: Decimal | None = None
    rollover: RolloverRule | None = None
    expires_after_days: int | None = None
    rollover_timeframe: Frequency | None = None
    trial_credits: Decimal = Decimal(0)  # granted once, when a subscription's trial begins
    trial_credits_expire_after_trial: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.entitlement_id, str) or not self.entitlement_id:
            raise InvalidCreditError("credit_entitlement_id must be a non-empty string")
        if type(self.precision) is not int or not 0 <= self.precision <= MAX_PRECISION:
            raise InvalidCreditError(f"precision must be an integer from 0 to {MAX_PRECISION}")
        object.__setattr__(
            self, "credits_amount", self.at_precision("credits_amount", self.credits_amount)
        )
        object.__setattr__(
            self, "trial_credits", self.at_precision("trial_credits", self.trial_credits)
        )
        if self.overage_behavior not in OVERAGE_BEHAVIORS:
            raise InvalidCreditError(
                f"overage_behavior must be one of {', '.join(OVERAGE_BEHAVIORS)}, "
                f"not {self.overage_behavior!r}"
            )
        if self.overage_limit is not None:
            limit = self.at_precision("overage_limit", self.overage_limit)
            object.__setattr__(self, "overage_limit", limit)
        if self.expires_after_days is not None and (
            type(self.expires_after_days) is not int or not 1 <= self.expires_after_days <= 36_600
        ):
            raise InvalidCreditError("expires_after_days must be an integer from 1 to 36600")

    @property
    def bills_overage(self) -> bool:
        return self.overage_enabled and self.overage_behavior == BILLED_OVERAGE

    @property
    def carries_deficit(self) -> bool:
        """A cycle's overage outlives its settlement (Dodo: preserved at reset)."""
        return self.overage_enabled and self.overage_behavior.startswith("carry_deficit")

    @property
    def repays_deficit(self) -> bool:
        """Credit given after a deficit was carried pays it back first."""
        return self.carries_deficit and self.overage_behavior == REPAID_DEFICIT

    def carried(self, overage: Decimal) -> Decimal:
        """Of a cycle's ``overage``, the credits carried as a deficit (the rest is reset)."""
        if not self.carries_deficit:
            return _ZERO
        limit = self.overage_limit
        return canonical_number(overage if limit is None else min(overage, limit))

    def at_precision(self, name: str, value: object) -> Decimal:
        """``value`` as credit units, refused when finer than the entitlement's precision."""
        units = _units(name, value)
        exponent = units.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -self.precision:
            raise InvalidCreditError(
                f"{name} {units} has more than {self.precision} decimal places (the precision)"
            )
        if units.adjusted() >= 18:
            raise InvalidCreditError(f"{name} must be below 10^18")
        return units

    def credits_for(self, units: Decimal, link: CreditLink) -> Decimal:
        """The credits ``units`` meter units cost, rounded up to the precision."""
        exact = _CEILING.divide(units, link.units_per_credit)
        step = Decimal(1).scaleb(-self.precision)
        return canonical_number(exact.quantize(step, ROUND_CEILING, _CEILING))


@dataclass(frozen=True, slots=True)
class Draw:
    """``credits`` taken from grant ``grant_id`` of ``entitlement_id`` for ``meter_id``."""

    entitlement_id: str
    meter_id: str
    grant_id: str
    credits: Decimal


@dataclass(frozen=True, slots=True)
class Overage:
    """``credits`` of usage on ``meter_id`` no grant covered; ``billed_credits`` of it billed."""

    entitlement_id: str
    meter_id: str
    credits: Decimal
    billed_credits: Decimal  # of ``credits``: the rest is forgiven


@dataclass(frozen=True, slots=True)
class Coverage:
    """What credit did for one meter: units it covered, overage billed and forgiven."""

    credit_units: Decimal
    forgiven_units: Decimal
    credits_drawn: Decimal
    overage_credits: Decimal
    billed_credits: Decimal = _ZERO


def cover(
    chargeable: Mapping[str, Decimal],
    links: Mapping[str, CreditLink],
    terms: Mapping[str, CreditTerms],
    grants: Mapping[str, Sequence[Grant]],
) -> tuple[dict[str, Coverage], tuple[Draw, ...]]:
    """Each linked meter's coverage from the grants (all usable), and the draws in order.

    ``chargeable`` holds every priced meter's units above its free threshold;
    only meters in ``links`` draw. See the module docstring for the rules.
    """
    balances = {entitlement: list(found) for entitlement, found in grants.items()}
    limits = {e: t.overage_limit for e, t in terms.items()}
    coverage: dict[str, Coverage] = {}
    draws: list[Draw] = []
    for meter_id in sorted(links):
        link = links[meter_id]
        entitlement = terms.get(link.entitlement_id)
        if entitlement is None:
            raise InvalidCreditError(f"meter {meter_id!r} draws on an unattached entitlement")
        units = chargeable.get(meter_id, _ZERO)
        needed = entitlement.credits_for(units, link)
        drawdown = draw_down(balances.get(link.entitlement_id, ()), needed, None)
        spent = {d.grant_id: d.balance_after for d in drawdown.deductions}
        balances[link.entitlement_id] = [
            replace(g, balance=spent[g.grant_id]) if g.grant_id in spent else g
            for g in balances.get(link.entitlement_id, ())
        ]
        draws.extend(
            Draw(link.entitlement_id, meter_id, d.grant_id, d.units) for d in drawdown.deductions
        )
        covered = min(
            units, canonical_number(_EXACT.multiply(drawdown.covered, link.units_per_credit))
        )
        uncovered = canonical_number(_EXACT.subtract(units, covered))
        billable = billed_credits = _ZERO
        if entitlement.bills_overage:
            limit = limits[link.entitlement_id]
            if limit is None:
                billable, billed_credits = uncovered, drawdown.overage
            else:
                allowed = min(drawdown.overage, limit)
                limits[link.entitlement_id] = canonical_number(_EXACT.subtract(limit, allowed))
                billable = min(
                    uncovered, canonical_number(_EXACT.multiply(allowed, link.units_per_credit))
                )
                billed_credits = allowed
        coverage[meter_id] = Coverage(
            credit_units=canonical_number(covered),
            forgiven_units=canonical_number(_EXACT.subtract(uncovered, billable)),
            credits_drawn=drawdown.covered,
            overage_credits=drawdown.overage,
            billed_credits=billed_credits,
        )
    return coverage, tuple(draws)

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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Context, Decimal, Inexact, InvalidOperation, Overflow

from domain.errors import InvalidCreditError
from domain.meter import canonical_number

_EXACT = Context(prec=1000, traps=[InvalidOperation, Overflow, Inexact])
_ROUNDING = Context(prec=1000, traps=[InvalidOperation, Overflow])  # rounds on purpose
_ZERO = Decimal(0)
MAX_PRECISION = 12


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


def draw_down(grants: Iterable[Grant], units: Decimal | int, at: datetime) -> Drawdown:
    """Spend ``units`` from the grants usable at ``at``, in the fixed order."""
    wanted = remaining = _units("units", units)
    deductions = []
    for grant in drawdown_order(grants):
        if not remaining:
            break
        if not grant.balance or not grant.is_usable(at):
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

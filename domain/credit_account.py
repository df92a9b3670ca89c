"""Credit entitlements and each customer's credit account under one.

A ``CreditEntitlement`` is a kind of credit a business gives (API calls,
tokens...) with its rules: ``precision`` (decimal places of a credit),
overage, rollover, expiry. A product attaches it with ``credits_amount`` per
cycle; the attachment may override the rules, and the resolved rules are kept
with the product's price (``CreditTerms``), so a cycle is always billed under
the terms in force when it began.

A ``CreditAccount`` is one customer's credit under one entitlement: a log of
grants, debits, cycle settlements and expiries, every one an immutable event.
Its state is the grants with what is left of each, and the ledger entries
(``balance_before``/``after``, ``overage_before``/``after``) those events
produced, so the balance projection and the API read exactly what the log
says. Amounts are exact Decimals at the entitlement's precision.

- A cycle's grant has a deterministic id (subscription, entitlement, cycle),
  so granting it twice changes nothing.
- ``settle`` records what a finalized invoice drew (``domain.credits.cover``)
  and its overage, which is billed or forgiven, then reset, at once.
- ``expire`` ends a grant: its remaining balance rolls over by the terms'
  ``RolloverRule`` into a new grant (``source_type`` ``rollover``, its
  ``rollover_count`` one more) and the rest is forfeited, or all of it expires.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.credits import MAX_PRECISION, CreditTerms, Grant, RolloverRule, draw_down
from domain.cycles import Frequency, Interval
from domain.errors import DomainError, InsufficientCreditError, InvalidCreditError
from domain.meter import canonical_number
from domain.pricing import minor_unit_exponent, parse_price_per_unit
from domain.text import is_storable

CREDIT_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/credit")
_ZERO = Decimal(0)
_SEP = "\x1f"
_DECIMAL_TEXT = re.compile(r"[0-9]{1,18}(\.[0-9]{1,12})?")


def entitlement_aggregate_id(business_id: str, entitlement_id: str) -> UUID:
    return uuid5(CREDIT_NAMESPACE, f"entitlement\x1f{business_id}\x1f{entitlement_id}")


def account_aggregate_id(business_id: str, entitlement_id: str, customer_id: str) -> UUID:
    return uuid5(CREDIT_NAMESPACE, f"account\x1f{business_id}\x1f{entitlement_id}\x1f{customer_id}")


def cycle_grant_id(subscription_id: str, entitlement_id: str, cycle_index: int) -> str:
    """The id of the grant a subscription's cycle gives: the same for every granter."""
    key = f"cycle\x1f{subscription_id}\x1f{entitlement_id}\x1f{cycle_index}"
    return f"grt_{uuid5(CREDIT_NAMESPACE, key).hex[:24]}"


def rollover_grant_id(parent_grant_id: str) -> str:
    return f"grt_{uuid5(CREDIT_NAMESPACE, 'rollover' + _SEP + parent_grant_id).hex[:24]}"


def entry_id_of(account: UUID, sequence: int) -> str:
    return f"cle_{uuid5(CREDIT_NAMESPACE, f'{account}{_SEP}{sequence}').hex[:24]}"


class CreditEntitlement(Aggregate):
    """A business's kind of credit, with its rules as canonical wire fields."""

    class Created(Aggregate.Created):
        business_id: str
        entitlement_id: str
        settings: dict[str, Any]
        created_at: datetime

    @event(Created)
    def __init__(
        self, business_id: str, entitlement_id: str, settings: dict[str, Any], created_at: datetime
    ) -> None:
        self.business_id = business_id
        self.entitlement_id = entitlement_id
        self.settings = settings
        self.created_at = created_at

    @staticmethod
    def create_id(business_id: str, entitlement_id: str) -> UUID:
        return entitlement_aggregate_id(business_id, entitlement_id)


@dataclass(frozen=True, slots=True)
class GrantState:
    """A grant as the account holds it."""

    grant: Grant
    initial: Decimal
    source_type: str
    source_id: str | None
    parent_grant_id: str | None
    rollover_count: int
    created_at: datetime
    updated_at: datetime
    expired: bool = False
    rolled_over: bool = False


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One movement of an account, with the balance and overage around it."""

    entry_id: str
    transaction_type: str
    amount: Decimal
    is_credit: bool
    balance_before: Decimal
    balance_after: Decimal
    overage_before: Decimal
    overage_after: Decimal
    created_at: datetime
    grant_id: str | None = None
    reference_type: str | None = None
    reference_id: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None


class CreditAccount(Aggregate):
    """One customer's credit under one entitlement."""

    class Opened(Aggregate.Created):
        business_id: str
        entitlement_id: str
        customer_id: str
        opened_at: datetime

    class Granted(Aggregate.Event):
        grant_id: str
        amount: Decimal
        source_type: str
        source_id: str | None
        parent_grant_id: str | None
        rollover_count: int
        granted_at: datetime
        expires_at: datetime | None
        reason: str | None
        metadata: dict[str, Any] | None
        idempotency_key: str | None

    class Debited(Aggregate.Event):
        amount: Decimal
        deductions: list[tuple[str, Decimal]]
        at: datetime
        reason: str | None
        metadata: dict[str, Any] | None
        idempotency_key: str | None

    class Settled(Aggregate.Event):
        invoice_id: str
        deductions: list[tuple[str, Decimal]]
        overage: Decimal
        overage_billed: bool
        at: datetime

    class Expired(Aggregate.Event):
        grant_id: str
        carried: Decimal
        forfeited: Decimal
        child_grant_id: str | None
        child_expires_at: datetime | None
        at: datetime

    @event(Opened)
    def __init__(
        self, business_id: str, entitlement_id: str, customer_id: str, opened_at: datetime
    ) -> None:
        self.business_id = business_id
        self.entitlement_id = entitlement_id
        self.customer_id = customer_id
        self.opened_at = opened_at
        self.updated_at = opened_at
        self.last_transaction_at: datetime | None = None
        self.grants: dict[str, GrantState] = {}
        self.entries: list[LedgerEntry] = []
        self.settled: set[str] = set()
        self.keys: dict[str, str] = {}  # idempotency key -> entry id

    @staticmethod
    def create_id(business_id: str, entitlement_id: str, customer_id: str) -> UUID:
        return account_aggregate_id(business_id, entitlement_id, customer_id)

    @property
    def balance(self) -> Decimal:
        live = (s.grant.balance for s in self.grants.values() if not s.expired)
        return canonical_number(sum(live, _ZERO))

    def usable_grants(self, start: datetime, end: datetime) -> list[Grant]:
        """Grants with credit left that a cycle from ``start`` to ``end`` may draw on."""
        return [
            s.grant
            for s in self.grants.values()
            if not s.expired
            and s.grant.balance > 0
            and s.grant.granted_at < end
            and (s.grant.expires_at is None or s.grant.expires_at > start)
        ]

    def entry_for(self, idempotency_key: str) -> LedgerEntry | None:
        entry_id = self.keys.get(idempotency_key)
        return next((e for e in self.entries if e.entry_id == entry_id), None)

    # --- commands -------------------------------------------------------------

    def grant(
        self,
        grant_id: str,
        amount: Decimal,
        *,
        source_type: str,
        source_id: str | None,
        granted_at: datetime,
        expires_at: datetime | None,
        parent_grant_id: str | None = None,
        rollover_count: int = 0,
        reason: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> bool:
        """Give a grant once; False when ``grant_id`` (or the key) was given before."""
        if grant_id in self.grants or (idempotency_key and idempotency_key in self.keys):
            return False
        Grant(grant_id, amount, granted_at, expires_at)  # validates
        self._on_granted(
            grant_id,
            amount,
            source_type,
            source_id,
            parent_grant_id,
            rollover_count,
            granted_at,
            expires_at,
            reason,
            metadata,
            idempotency_key,
        )
        return True

    def debit(
        self,
        amount: Decimal,
        at: datetime,
        *,
        reason: str | None,
        metadata: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> None:
        """Take ``amount`` from the grants usable at ``at``, in the drawdown order."""
        grants = [s.grant for s in self.grants.values() if not s.expired]
        drawdown = draw_down(grants, amount, at)
        if drawdown.overage:
            raise InsufficientCreditError(
                f"a debit of {amount} exceeds the {drawdown.covered} credits usable now"
            )
        deductions = [(d.grant_id, d.units) for d in drawdown.deductions]
        self._on_debited(amount, deductions, at, reason, metadata, idempotency_key)

    def settle(
        self,
        invoice_id: str,
        deductions: list[tuple[str, Decimal]],
        overage: Decimal,
        overage_billed: bool,
        at: datetime,
    ) -> bool:
        """Record what a finalized invoice drew; once per invoice.

        A grant that lost credit since the invoice was folded (a manual debit
        in between) gives what it still has: the balance never goes negative.
        """
        if invoice_id in self.settled:
            return False
        available = []
        for grant_id, credits in deductions:
            state = self.grants.get(grant_id)
            if state is None:
                raise InvalidCreditError(f"invoice {invoice_id} draws on unknown grant {grant_id}")
            left = _ZERO if state.expired else state.grant.balance
            available.append((grant_id, min(credits, left)))
        deductions = [(grant_id, credits) for grant_id, credits in available if credits]
        self._on_settled(invoice_id, deductions, overage, overage_billed, at)
        return True

    def expire(
        self,
        grant_id: str,
        carried: Decimal,
        child_expires_at: datetime | None,
        at: datetime,
    ) -> None:
        """End a grant; ``carried`` of its balance rolls into a new grant, the rest is lost."""
        state = self.grants[grant_id]
        if state.expired:
            return
        if not _ZERO <= carried <= state.grant.balance:
            raise InvalidCreditError("a rollover carries at most the grant's balance")
        forfeited = canonical_number(state.grant.balance - carried)
        child = rollover_grant_id(grant_id) if carried else None
        self._on_expired(
            grant_id, carried, forfeited, child, child_expires_at if child else None, at
        )

    # --- events ---------------------------------------------------------------

    def _entry(
        self,
        kind: str,
        amount: Decimal,
        before: tuple[Decimal, Decimal],
        at: datetime,
        *,
        is_credit: bool,
        **extra: Any,
    ) -> None:
        entry = LedgerEntry(
            entry_id_of(self.id, len(self.entries)),
            kind,
            canonical_number(amount),
            is_credit,
            before[0],
            self.balance,
            before[1],
            extra.pop("overage_after", _ZERO),
            at,
            **extra,
        )
        self.entries.append(entry)
        if entry.idempotency_key:
            self.keys[entry.idempotency_key] = entry.entry_id
        self.updated_at = self.last_transaction_at = at

    def _take(self, grant_id: str, credits: Decimal, at: datetime) -> None:
        state = self.grants[grant_id]
        left = canonical_number(state.grant.balance - credits)
        self.grants[grant_id] = replace(
            state, grant=replace(state.grant, balance=left), updated_at=at
        )

    @event(Granted)
    def _on_granted(
        self,
        grant_id: str,
        amount: Decimal,
        source_type: str,
        source_id: str | None,
        parent_grant_id: str | None,
        rollover_count: int,
        granted_at: datetime,
        expires_at: datetime | None,
        reason: str | None,
        metadata: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> None:
        before = (self.balance, _ZERO)
        self.grants[grant_id] = GrantState(
            Grant(grant_id, amount, granted_at, expires_at),
            canonical_number(amount),
            source_type,
            source_id,
            parent_grant_id,
            rollover_count,
            granted_at,
            granted_at,
        )
        kind = "manual_adjustment" if source_type == "api" else "credit_added"
        self._entry(
            kind,
            amount,
            before,
            granted_at,
            is_credit=True,
            grant_id=grant_id,
            reference_type=source_type,
            reference_id=source_id,
            description=reason,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )

    @event(Debited)
    def _on_debited(
        self,
        amount: Decimal,
        deductions: list[tuple[str, Decimal]],
        at: datetime,
        reason: str | None,
        metadata: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> None:
        before = (self.balance, _ZERO)
        for grant_id, credits in deductions:
            self._take(grant_id, credits, at)
        first = deductions[0][0] if len(deductions) == 1 else None
        self._entry(
            "manual_adjustment",
            amount,
            before,
            at,
            is_credit=False,
            grant_id=first,
            reference_type="api",
            description=reason,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )

    @event(Settled)
    def _on_settled(
        self,
        invoice_id: str,
        deductions: list[tuple[str, Decimal]],
        overage: Decimal,
        overage_billed: bool,
        at: datetime,
    ) -> None:
        self.settled.add(invoice_id)
        for grant_id, credits in deductions:
            before = (self.balance, _ZERO)
            self._take(grant_id, credits, at)
            self._entry(
                "credit_deducted",
                credits,
                before,
                at,
                is_credit=False,
                grant_id=grant_id,
                reference_type="invoice",
                reference_id=invoice_id,
            )
        if overage:
            balance = self.balance
            self._entry(
                "overage_charged",
                overage,
                (balance, _ZERO),
                at,
                is_credit=False,
                overage_after=canonical_number(overage),
                reference_type="invoice",
                reference_id=invoice_id,
                description="billed on the invoice" if overage_billed else "forgiven",
            )
            self._entry(
                "overage_reset",
                overage,
                (balance, canonical_number(overage)),
                at,
                is_credit=True,
                reference_type="invoice",
                reference_id=invoice_id,
            )

    @event(Expired)
    def _on_expired(
        self,
        grant_id: str,
        carried: Decimal,
        forfeited: Decimal,
        child_grant_id: str | None,
        child_expires_at: datetime | None,
        at: datetime,
    ) -> None:
        if forfeited:  # what is lost leaves the balance first
            before = (self.balance, _ZERO)
            self._take(grant_id, forfeited, at)
            kind = "rollover_forfeited" if child_grant_id else "credit_expired"
            self._entry(kind, forfeited, before, at, is_credit=False, grant_id=grant_id)
        state = self.grants[grant_id]
        before = (self.balance, _ZERO)
        self.grants[grant_id] = replace(
            state,
            grant=replace(state.grant, balance=_ZERO),
            expired=True,
            rolled_over=child_grant_id is not None,
            updated_at=at,
        )
        if child_grant_id is not None:  # the rest moves to a new grant: the balance stays
            self.grants[child_grant_id] = GrantState(
                Grant(child_grant_id, carried, at, child_expires_at),
                canonical_number(carried),
                "rollover",
                state.source_id,
                grant_id,
                state.rollover_count + 1,
                at,
                at,
            )
            self._entry(
                "credit_rolled_over",
                carried,
                before,
                at,
                is_credit=True,
                grant_id=child_grant_id,
                reference_type="grant",
                reference_id=grant_id,
            )


# --- wire forms ---------------------------------------------------------------------------

OVERAGE_CHOICES = (
    "forgive_at_reset",
    "invoice_at_billing",
    "carry_deficit",
    "carry_deficit_auto_repay",
)
_ENTITLEMENT_FIELDS = frozenset(
    {
        "name",
        "description",
        "unit",
        "precision",
        "currency",
        "price_per_unit",
        "overage_enabled",
        "overage_behavior",
        "overage_limit",
        "rollover_enabled",
        "rollover_percentage",
        "max_rollover_count",
        "rollover_timeframe_count",
        "rollover_timeframe_interval",
        "expires_after_days",
    }
)
_ATTACH_FIELDS = frozenset(
    {
        "credit_entitlement_id",
        "credits_amount",
        "currency",
        "expires_after_days",
        "low_balance_threshold_percent",
        "max_rollover_count",
        "overage_behavior",
        "overage_enabled",
        "overage_limit",
        "price_per_unit",
        "proration_behavior",
        "rollover_enabled",
        "rollover_percentage",
        "rollover_timeframe_count",
        "rollover_timeframe_interval",
        "trial_credits",
        "trial_credits_expire_after_trial",
    }
)
_RULES = (
    "overage_enabled",
    "overage_behavior",
    "overage_limit",
    "rollover_enabled",
    "rollover_percentage",
    "max_rollover_count",
    "rollover_timeframe_count",
    "rollover_timeframe_interval",
    "expires_after_days",
)


def parse_entitlement(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical settings of a new entitlement; ``InvalidCreditError`` naming the field."""
    unknown = sorted(set(raw) - _ENTITLEMENT_FIELDS)
    if unknown:
        raise InvalidCreditError(f"unknown field {unknown[0]!r}")
    name, unit = raw.get("name"), raw.get("unit")
    if not isinstance(name, str) or not name.strip() or len(name) > 255 or not is_storable(name):
        raise InvalidCreditError("name must be 1 to 255 characters, not blank")
    if not isinstance(unit, str) or not unit.strip() or len(unit) > 50 or not is_storable(unit):
        raise InvalidCreditError("unit must be 1 to 50 characters, not blank")
    description = raw.get("description")
    if description is not None and (
        not isinstance(description, str) or len(description) > 2000 or not is_storable(description)
    ):
        raise InvalidCreditError("description must be a string of at most 2000 characters")
    precision = raw.get("precision")
    if type(precision) is not int or not 0 <= precision <= MAX_PRECISION:
        raise InvalidCreditError(f"precision must be an integer from 0 to {MAX_PRECISION}")
    for flag in ("overage_enabled", "rollover_enabled"):
        if type(raw.get(flag)) is not bool:
            raise InvalidCreditError(f"{flag} must be true or false")
    currency, price = raw.get("currency"), raw.get("price_per_unit")
    if currency is not None:
        if not isinstance(currency, str):
            raise InvalidCreditError("currency must be an ISO 4217 code")
        _guard(minor_unit_exponent, currency)
    if price is not None:
        price = format(_guard(parse_price_per_unit, price), "f")
    overage_limit = raw.get("overage_limit")
    if overage_limit is not None and (type(overage_limit) is not int or overage_limit < 0):
        raise InvalidCreditError("overage_limit must be a non-negative integer or null")
    settings = {
        "name": name,
        "description": description,
        "unit": unit,
        "precision": precision,
        "currency": currency,
        "price_per_unit": price,
        "overage_enabled": raw["overage_enabled"],
        "overage_behavior": raw.get("overage_behavior") or "forgive_at_reset",
        "overage_limit": overage_limit,
        "rollover_enabled": raw["rollover_enabled"],
        "rollover_percentage": raw.get("rollover_percentage"),
        "max_rollover_count": raw.get("max_rollover_count"),
        "rollover_timeframe_count": raw.get("rollover_timeframe_count"),
        "rollover_timeframe_interval": raw.get("rollover_timeframe_interval"),
        "expires_after_days": raw.get("expires_after_days"),
    }
    _terms(settings, "cet_check", Decimal(0))  # the rules must make sense on their own
    return settings


def resolve_attachment(
    raw: object, index: int, entitlements: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """An attachment of an entitlement to a product, with every rule resolved.

    ``entitlements`` maps each known entitlement id to its settings; fields the
    attachment sets override them. The result is what the price keeps.
    """
    path = f"credit_entitlements[{index}]"
    if not isinstance(raw, Mapping):
        raise InvalidCreditError(f"{path}: must be an object")
    unknown = sorted(set(raw) - _ATTACH_FIELDS)
    if unknown:
        raise InvalidCreditError(f"{path}: unknown field {unknown[0]!r}")
    entitlement_id = raw.get("credit_entitlement_id")
    if not isinstance(entitlement_id, str) or entitlement_id not in entitlements:
        raise InvalidCreditError(f"{path}.credit_entitlement_id: no such credit entitlement")
    if raw.get("trial_credits") not in (None, "0"):
        raise InvalidCreditError(f"{path}.trial_credits: trial credits are not supported")
    settings = entitlements[entitlement_id]
    resolved = {rule: raw[rule] if raw.get(rule) is not None else settings[rule] for rule in _RULES}
    limit = resolved["overage_limit"]
    if isinstance(limit, str):
        resolved["overage_limit"] = _decimal_text(limit, f"{path}.overage_limit")
    amount = raw.get("credits_amount")
    if not isinstance(amount, str):
        raise InvalidCreditError(f"{path}.credits_amount: a decimal string is required")
    wire = {
        "credit_entitlement_id": entitlement_id,
        "credit_entitlement_name": settings["name"],
        "credit_entitlement_unit": settings["unit"],
        "credits_amount": amount,
        "precision": settings["precision"],
        "currency": raw.get("currency") or settings["currency"],
        "price_per_unit": raw.get("price_per_unit") or settings["price_per_unit"],
        "proration_behavior": raw.get("proration_behavior") or "prorate",
        "low_balance_threshold_percent": raw.get("low_balance_threshold_percent"),
        **resolved,
    }
    try:
        terms = terms_from_wire(wire)
    except InvalidCreditError as error:
        raise InvalidCreditError(f"{path}: {error.message}") from None
    wire["credits_amount"] = format(terms.credits_amount, "f")
    if terms.overage_limit is not None:
        wire["overage_limit"] = format(terms.overage_limit, "f")
    return wire


def terms_from_wire(wire: Mapping[str, Any]) -> CreditTerms:
    """The ``CreditTerms`` a stored attachment stands for."""
    amount = _decimal_text(wire.get("credits_amount"), "credits_amount")
    return _terms(wire, wire["credit_entitlement_id"], amount)


def _terms(wire: Mapping[str, Any], entitlement_id: str, amount: Decimal) -> CreditTerms:
    behavior = wire.get("overage_behavior") or "forgive_at_reset"
    if behavior not in OVERAGE_CHOICES:
        raise InvalidCreditError(f"overage_behavior must be one of {', '.join(OVERAGE_CHOICES)}")
    if behavior.startswith("carry_deficit"):
        raise InvalidCreditError(f"overage_behavior {behavior!r} is not supported yet")
    rollover = None
    timeframe = None
    count, interval = wire.get("rollover_timeframe_count"), wire.get("rollover_timeframe_interval")
    if (count is None) != (interval is None):
        raise InvalidCreditError(
            "rollover_timeframe_count and rollover_timeframe_interval go together"
        )
    if wire.get("rollover_enabled"):
        percentage = wire.get("rollover_percentage")
        rollover = RolloverRule(
            100 if percentage is None else percentage,
            wire.get("max_rollover_count"),
            wire.get("precision"),
        )
        if count is not None:
            timeframe = _guard(lambda: Frequency(Interval.parse(interval), count))
    limit = wire.get("overage_limit")
    return CreditTerms(
        entitlement_id,
        amount,
        wire.get("precision", 0),
        bool(wire.get("overage_enabled")),
        behavior,
        None if limit is None else _decimal_text(str(limit), "overage_limit"),
        rollover,
        wire.get("expires_after_days"),
        timeframe,
    )


def _decimal_text(raw: object, name: str) -> Decimal:
    if not isinstance(raw, str) or not _DECIMAL_TEXT.fullmatch(raw):
        raise InvalidCreditError(f"{name} must be a decimal string such as '100' or '2.5'")
    return canonical_number(Decimal(raw))


def _guard(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except DomainError as error:
        raise InvalidCreditError(error.message) from None

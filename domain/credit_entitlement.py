"""Credit entitlements: the kinds of credit a business gives, and how products attach them.

A ``CreditEntitlement`` is a kind of credit (API calls, tokens...) with its
rules: ``precision`` (decimal places of a credit), overage, rollover, expiry.
A product attaches it with ``credits_amount`` per cycle; the attachment may
override the rules, and the resolved rules are kept with the product's price
(``CreditTerms``), so a cycle is always billed under the terms in force when
it began.

An update changes the entitlement's own rules: they are the defaults of
attachments made from then on (a product created, or a product whose
``credit_entitlements`` are sent again, which is a price change from the next
cycle on). Products that attach it already keep the rules they resolved, so no
cycle, begun or not, changes under them. A delete is soft: grants, drawdown and
renewals of whatever attaches it go on; a product may not attach it anew until
it is undeleted. ``precision`` never changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.credit_account import CREDIT_NAMESPACE
from domain.credits import MAX_PRECISION, CreditTerms, RolloverRule
from domain.cycles import Frequency, Interval
from domain.errors import DomainError, InvalidCreditError
from domain.meter import canonical_number
from domain.pricing import minor_unit_exponent, parse_price_per_unit
from domain.text import is_storable

_DECIMAL_TEXT = re.compile(r"[0-9]{1,18}(\.[0-9]{1,12})?")


def entitlement_aggregate_id(business_id: str, entitlement_id: str) -> UUID:
    return uuid5(CREDIT_NAMESPACE, f"entitlement\x1f{business_id}\x1f{entitlement_id}")


class CreditEntitlement(Aggregate):
    """A business's kind of credit, with its rules as canonical wire fields."""

    class Created(Aggregate.Created):
        business_id: str
        entitlement_id: str
        settings: dict[str, Any]
        created_at: datetime

    class Updated(Aggregate.Event):
        settings: dict[str, Any]
        updated_at: datetime

    class Deleted(Aggregate.Event):
        deleted_at: datetime

    class Undeleted(Aggregate.Event):
        undeleted_at: datetime

    @event(Created)
    def __init__(
        self, business_id: str, entitlement_id: str, settings: dict[str, Any], created_at: datetime
    ) -> None:
        self.business_id = business_id
        self.entitlement_id = entitlement_id
        self.settings = settings
        self.created_at = created_at
        self.updated_at = created_at
        self.deleted_at: datetime | None = None

    @staticmethod
    def create_id(business_id: str, entitlement_id: str) -> UUID:
        return entitlement_aggregate_id(business_id, entitlement_id)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def check_not_deleted(self, path: str = "") -> None:
        if self.deleted_at is not None:
            raise CreditEntitlementDeletedError(
                f"{path}credit entitlement {self.entitlement_id!r} is deleted; undelete it first",
                path=f"$.{path.rstrip(': ')}" if path else "$.id",
            )

    def update(self, changes: Mapping[str, Any], at: datetime) -> None:
        """New rules for attachments made from now on (see ``parse_update``)."""
        self.check_not_deleted()
        settings = parse_update(self.settings, changes)
        if settings != self.settings:
            self._on_updated(settings, at)

    def delete(self, at: datetime) -> None:
        """Soft: what already attaches it keeps using it; no product may attach it anew."""
        if self.deleted_at is None:
            self._on_deleted(at)

    def undelete(self, at: datetime) -> None:
        if self.deleted_at is not None:
            self._on_undeleted(at)

    @event(Updated)
    def _on_updated(self, settings: dict[str, Any], updated_at: datetime) -> None:
        self.settings = settings
        self.updated_at = updated_at

    @event(Deleted)
    def _on_deleted(self, deleted_at: datetime) -> None:
        self.deleted_at = self.updated_at = deleted_at

    @event(Undeleted)
    def _on_undeleted(self, undeleted_at: datetime) -> None:
        self.deleted_at = None
        self.updated_at = undeleted_at


class CreditEntitlementDeletedError(DomainError):
    """A deleted entitlement serves what already attaches it, and nothing new."""

    code = "credit_entitlement_deleted"

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.detail = {"path": path}


OVERAGE_CHOICES = (
    "forgive_at_reset",
    "invoice_at_billing",
    "carry_deficit",
    "carry_deficit_auto_repay",
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
_ENTITLEMENT_FIELDS = frozenset(
    {"name", "description", "unit", "precision", "currency", "price_per_unit", *_RULES}
)
_ATTACH_FIELDS = frozenset(
    {
        "credit_entitlement_id",
        "credits_amount",
        "currency",
        "price_per_unit",
        "low_balance_threshold_percent",
        "proration_behavior",
        "trial_credits",
        "trial_credits_expire_after_trial",
        *_RULES,
    }
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
    check_rules(raw)
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


_UPDATE_FIELDS = _ENTITLEMENT_FIELDS - {"precision"}


def parse_update(settings: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """The settings after an update: the fields given replace theirs (null clears an
    optional one), checked as a new entitlement's are. ``precision`` never changes:
    every amount already in the ledger is at it."""
    if "precision" in raw:
        raise InvalidCreditError("precision cannot change once an entitlement exists")
    unknown = sorted(set(raw) - _UPDATE_FIELDS)
    if unknown:
        raise InvalidCreditError(f"unknown field {unknown[0]!r}")
    return parse_entitlement({**settings, **raw})


_OPTIONAL_COUNTS = (
    ("rollover_percentage", 0, 100),
    ("max_rollover_count", 0, 1000),
    ("rollover_timeframe_count", 1, 1000),
    ("expires_after_days", 1, 36_600),
)


def check_rules(raw: Mapping[str, Any], path: str = "") -> None:
    """Each rule the wire may set is of its type, whether or not it is used."""
    for flag in ("overage_enabled", "rollover_enabled"):
        if raw.get(flag) is not None and type(raw.get(flag)) is not bool:
            raise InvalidCreditError(f"{path}{flag} must be true or false")
    for name, low, high in _OPTIONAL_COUNTS:
        value = raw.get(name)
        if value is not None and (type(value) is not int or not low <= value <= high):
            raise InvalidCreditError(f"{path}{name} must be an integer from {low} to {high}")
    behavior = raw.get("overage_behavior")
    if behavior is not None and behavior not in OVERAGE_CHOICES:
        raise InvalidCreditError(
            f"{path}overage_behavior must be one of {', '.join(OVERAGE_CHOICES)}"
        )
    interval = raw.get("rollover_timeframe_interval")
    if interval is not None and interval not in ("Day", "Week", "Month", "Year"):
        raise InvalidCreditError(
            f"{path}rollover_timeframe_interval must be Day, Week, Month or Year"
        )


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
    check_rules(raw, f"{path}.")
    currency, price, proration, threshold = _attachment_fields(raw, path)
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
        "currency": currency or settings["currency"],
        "price_per_unit": price or settings["price_per_unit"],
        "proration_behavior": proration or "prorate",
        "low_balance_threshold_percent": threshold,
        **resolved,
    }
    trial = raw.get("trial_credits")
    if trial is not None and not isinstance(trial, str):
        raise InvalidCreditError(f"{path}.trial_credits: a decimal string is required")
    if trial is not None:
        wire["trial_credits"] = trial
        wire["trial_credits_expire_after_trial"] = bool(raw.get("trial_credits_expire_after_trial"))
    try:
        terms = terms_from_wire(wire)
    except InvalidCreditError as error:
        raise InvalidCreditError(f"{path}: {error.message}") from None
    wire["credits_amount"] = format(terms.credits_amount, "f")
    if trial is not None:
        wire["trial_credits"] = format(terms.trial_credits, "f")
    if terms.overage_limit is not None:
        wire["overage_limit"] = format(terms.overage_limit, "f")
    return wire


def _attachment_fields(raw: Mapping[str, Any], path: str) -> tuple[Any, Any, Any, Any]:
    """An attachment's own fields, checked: currency, price per unit, proration, threshold."""
    proration = raw.get("proration_behavior")
    if proration is not None and proration not in ("prorate", "no_prorate"):
        raise InvalidCreditError(f"{path}.proration_behavior must be prorate or no_prorate")
    threshold = raw.get("low_balance_threshold_percent")
    if threshold is not None and (type(threshold) is not int or not 0 <= threshold <= 100):
        raise InvalidCreditError(f"{path}.low_balance_threshold_percent: an integer from 0 to 100")
    if raw.get("trial_credits_expire_after_trial") not in (None, True, False):
        raise InvalidCreditError(f"{path}.trial_credits_expire_after_trial must be true or false")
    currency, price = raw.get("currency"), raw.get("price_per_unit")
    if currency is not None and not isinstance(currency, str):
        raise InvalidCreditError(f"{path}.currency must be an ISO 4217 code")
    if currency is not None:
        _guard(minor_unit_exponent, currency)
    if price is not None:
        price = format(_guard(parse_price_per_unit, price), "f")
    return currency, price, proration, threshold


def terms_from_wire(wire: Mapping[str, Any]) -> CreditTerms:
    """The ``CreditTerms`` a stored attachment stands for."""
    amount = _decimal_text(wire.get("credits_amount"), "credits_amount")
    return _terms(wire, wire["credit_entitlement_id"], amount)


def _terms(wire: Mapping[str, Any], entitlement_id: str, amount: Decimal) -> CreditTerms:
    behavior = wire.get("overage_behavior") or "forgive_at_reset"
    if behavior not in OVERAGE_CHOICES:
        raise InvalidCreditError(f"overage_behavior must be one of {', '.join(OVERAGE_CHOICES)}")
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
    trial = wire.get("trial_credits")
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
        Decimal(0) if trial is None else _decimal_text(trial, "trial_credits"),
        bool(wire.get("trial_credits_expire_after_trial")),
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

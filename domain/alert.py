"""Usage alerts: tell the business when a customer's use of a meter reaches a quantity.

An alert names a meter, optionally one customer (else every customer), a
threshold quantity and a period: ``cycle`` (the customer's billing cycle),
``day`` or ``month`` (UTC). ``usage.threshold_reached`` fires once per customer
and period, when the meter's value over the period first reaches the threshold.
Like an endpoint, an alert is an aggregate in the log, so which alerts stood at
any position is a fact the outbox projection reads.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError
from domain.meter import canonical_number
from domain.text import is_storable

ALERT_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/alert")
PERIODS = ("cycle", "day", "month")
MAX_THRESHOLD = Decimal("1e18")
MAX_ID_LENGTH = 255


class InvalidAlertError(DomainError):
    code = "invalid_alert"


def alert_aggregate_id(business_id: str, alert_id: str) -> UUID:
    return uuid5(ALERT_NAMESPACE, f"{business_id}\x1f{alert_id}")


def check_threshold(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise InvalidAlertError("threshold: a number at least 0 (an integer or a decimal string)")
    try:
        threshold = Decimal(value)
    except InvalidOperation:
        raise InvalidAlertError(f"threshold: {str(value)[:50]!r} is not a number") from None
    if not threshold.is_finite() or threshold < 0 or threshold > MAX_THRESHOLD:
        raise InvalidAlertError("threshold: a number from 0 to 10^18")
    return canonical_number(threshold)


def check_period(value: object) -> str:
    if value is None:
        return "cycle"
    if value not in PERIODS:
        raise InvalidAlertError(f"period: one of {', '.join(PERIODS)}")
    return str(value)


def check_customer(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH or not is_storable(value):
        raise InvalidAlertError(f"customer_id: 1 to {MAX_ID_LENGTH} characters")
    return value


def calendar_period(period: str, moment: datetime) -> tuple[datetime, datetime]:
    """The UTC day or month holding ``moment``: [start, end)."""
    moment = moment.astimezone(UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if period == "month":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days = monthrange(start.year, start.month)[1]
        return start, start + timedelta(days=days)
    raise ValueError(f"{period!r} is not a calendar period")


class UsageAlert(Aggregate):
    class Created(Aggregate.Created):
        business_id: str
        alert_id: str
        meter_id: str
        customer_id: str | None
        threshold: Decimal
        period: str
        name: str
        created_at: datetime

    class Deleted(Aggregate.Event):
        deleted_at: datetime

    @event(Created)
    def __init__(
        self,
        business_id: str,
        alert_id: str,
        meter_id: str,
        customer_id: str | None,
        threshold: Decimal,
        period: str,
        name: str,
        created_at: datetime,
    ) -> None:
        self.business_id = business_id
        self.alert_id = alert_id
        self.meter_id = meter_id
        self.customer_id = customer_id
        self.threshold = threshold
        self.period = period
        self.name = name
        self.created_at = created_at
        self.deleted_at: datetime | None = None

    @staticmethod
    def create_id(business_id: str, alert_id: str) -> UUID:
        return alert_aggregate_id(business_id, alert_id)

    def delete(self, at: datetime) -> None:
        if self.deleted_at is None:
            self._on_deleted(at)

    @event(Deleted)
    def _on_deleted(self, deleted_at: datetime) -> None:
        self.deleted_at = deleted_at

"""Usage alerts: create, list, retrieve, delete (``domain.alert``).

An alert is an aggregate in the log; the outbox projection keeps the alerts
that stand (listing reads them there) and fires ``usage.threshold_reached``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from eventsourcing.persistence import IntegrityError

from application.errors import NotFoundError
from application.ledger import Ledger
from application.outbox import AlertRule
from application.reads import OUTBOX, Reads
from application.webhooks import keyed_id
from domain.alert import (
    InvalidAlertError,
    UsageAlert,
    alert_aggregate_id,
    check_customer,
    check_period,
    check_threshold,
)
from domain.text import is_storable

MAX_NAME_LENGTH = 255
FIELDS = frozenset({"meter_id", "customer_id", "threshold", "period", "name", "idempotency_key"})


def create_alert(
    ledger: Ledger, business_id: str, fields: Mapping[str, Any], now: datetime
) -> UsageAlert:
    """A new alert; ``InvalidAlertError`` naming the field that is wrong."""
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise InvalidAlertError(
            f"{unknown[0]}: not a field of an alert; it takes {', '.join(sorted(FIELDS))}"
        )
    meter_id = fields.get("meter_id")
    if not isinstance(meter_id, str) or not meter_id:
        raise InvalidAlertError("meter_id: the meter to watch is required")
    try:
        ledger.meter(business_id, meter_id)
    except NotFoundError:
        raise InvalidAlertError(f"meter_id: there is no meter {meter_id[:100]!r}") from None
    customer_id = check_customer(fields.get("customer_id"))
    if customer_id is not None:
        try:
            ledger.customer(business_id, customer_id)
        except NotFoundError:
            raise InvalidAlertError(
                f"customer_id: there is no customer {customer_id[:100]!r}"
            ) from None
    if "threshold" not in fields:
        raise InvalidAlertError("threshold: the quantity to alert at is required")
    threshold = check_threshold(fields["threshold"])
    period = check_period(fields.get("period"))
    name = fields.get("name") or ""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not is_storable(name):
        raise InvalidAlertError(f"name: at most {MAX_NAME_LENGTH} characters, no NUL")
    key = fields.get("idempotency_key")
    if key is not None and (
        not isinstance(key, str) or not 1 <= len(key) <= MAX_NAME_LENGTH or not is_storable(key)
    ):
        raise InvalidAlertError("idempotency_key: 1 to 255 characters")
    alert_id = _alert_id(business_id, key)
    existing = ledger.load(UsageAlert, alert_aggregate_id(business_id, alert_id))
    if existing is not None:
        return existing
    alert = UsageAlert(
        business_id=business_id,
        alert_id=alert_id,
        meter_id=meter_id,
        customer_id=customer_id,
        threshold=threshold,
        period=period,
        name=name,
        created_at=now,
    )
    try:
        ledger.save(alert)
    except IntegrityError:  # the same idempotency key, at the same moment
        found = ledger.load(UsageAlert, alert.id)
        assert found is not None
        return found
    return alert


def _alert_id(business_id: str, key: str | None) -> str:
    return keyed_id("alrt_", business_id, key)


def list_alerts(reads: Reads, business_id: str) -> list[AlertRule]:
    reads.fresh(OUTBOX)
    return reads.outbox.alert_rules(business_id)


def get_alert(ledger: Ledger, business_id: str, alert_id: str) -> UsageAlert:
    found = ledger.load(UsageAlert, alert_aggregate_id(business_id, alert_id))
    if found is None or found.deleted_at is not None:
        raise NotFoundError(f"alert {alert_id!r} not found")
    return found


def delete_alert(ledger: Ledger, business_id: str, alert_id: str, now: datetime) -> None:
    alert = get_alert(ledger, business_id, alert_id)
    alert.delete(now)
    try:
        ledger.save(alert)
    except IntegrityError:
        return  # deleted meanwhile: the alert has only one change

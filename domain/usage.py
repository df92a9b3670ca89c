"""A usage event: one thing a customer did, recorded once and never changed.

The aggregate's id is derived from ``(business, event_id)``, so a second
recording of the same event collides on the event store's primary key: the
database, not memory, is what makes ingest idempotent.

A usage event recorded by mistake is voided: a second event on the same
aggregate says it no longer counts. Nothing is deleted; a void carries the
recorded event's identity (business, customer, name, timestamp) so that read
models can find what it affects without loading the aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha1
from uuid import NAMESPACE_URL, UUID, SafeUUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    DomainError,
    InvalidEventIdError,
    InvalidEventNameError,
    InvalidTimestampError,
    TimestampOutOfWindowError,
)
from domain.metadata import Metadata
from domain.text import is_storable

USAGE_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/usage-event")
MAX_ID_LENGTH = 255
MAX_VOID_REASON_LENGTH = 500


class InvalidVoidReasonError(DomainError):
    code = "invalid_void_reason"


def usage_event_id(business_id: str, event_id: str) -> UUID:
    """The aggregate id of ``event_id`` within ``business_id``; stable forever.

    Exactly ``uuid5(USAGE_NAMESPACE, business_id + "\\x1f" + event_id)``, built
    without ``UUID.__init__``'s checks: ingest derives one per event.
    """
    digest = sha1(_USAGE_PREFIX + f"{business_id}\x1f{event_id}".encode()).digest()  # noqa: S324 - uuid5 is SHA-1
    value = int.from_bytes(digest[:16]) & _CLEAR_VERSION | _VERSION_5
    found: UUID = object.__new__(UUID)
    object.__setattr__(found, "int", value)
    object.__setattr__(found, "is_safe", SafeUUID.unknown)
    return found


_USAGE_PREFIX = USAGE_NAMESPACE.bytes
# RFC 4122: the variant bits 10 and the version 5, as uuid.UUID(bytes=..., version=5) sets
_CLEAR_VERSION = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_VERSION_5 = (0x8000 << 48) | (5 << 76)


class UsageEvent(Aggregate):
    """A recorded usage event. Corrections are new events, never edits."""

    class Recorded(Aggregate.Created):
        business_id: str
        event_id: str
        customer_id: str
        event_name: str
        timestamp: datetime
        metadata: Metadata
        received_at: datetime

    class Voided(Aggregate.Event):
        """The event no longer counts. ``timestamp`` (the envelope's) is ``voided_at``."""

        business_id: str
        event_id: str
        customer_id: str
        event_name: str
        event_timestamp: datetime  # the recorded event's own timestamp
        voided_at: datetime
        reason: str | None

    @event(Recorded)
    def __init__(
        self,
        business_id: str,
        event_id: str,
        customer_id: str,
        event_name: str,
        timestamp: datetime,
        metadata: Metadata,
        received_at: datetime,
    ) -> None:
        self.business_id = business_id
        self.event_id = event_id
        self.customer_id = customer_id
        self.event_name = event_name
        self.timestamp = timestamp
        self.metadata = metadata
        self.received_at = received_at
        self.voided_at: datetime | None = None
        self.void_reason: str | None = None

    @staticmethod
    def create_id(business_id: str, event_id: str) -> UUID:
        return usage_event_id(business_id, event_id)

    @property
    def is_voided(self) -> bool:
        return self.voided_at is not None

    def void(self, reason: str | None, at: datetime) -> None:
        """Stop the event counting; voiding a voided event changes nothing.

        ``reason`` is free text for people; a blank one is no reason (``None``).
        """
        check_void_reason(reason)
        if self.is_voided:
            return
        if reason is not None and not reason.strip():
            reason = None
        self._on_voided(
            business_id=self.business_id,
            event_id=self.event_id,
            customer_id=self.customer_id,
            event_name=self.event_name,
            event_timestamp=self.timestamp,
            voided_at=at,
            reason=reason,
            timestamp=at,  # else the library would stamp the envelope from the clock
        )

    @event(Voided)
    def _on_voided(
        self,
        business_id: str,
        event_id: str,
        customer_id: str,
        event_name: str,
        event_timestamp: datetime,
        voided_at: datetime,
        reason: str | None,
        timestamp: datetime,
    ) -> None:
        del business_id, event_id, customer_id, event_name, event_timestamp, timestamp
        self.voided_at = voided_at
        self.void_reason = reason


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far from the receive time an event's timestamp may lie."""

    backdate: timedelta
    future_skew: timedelta

    def check(self, timestamp: datetime, now: datetime) -> None:
        if timestamp < _shift(now, -self.backdate):
            raise TimestampOutOfWindowError(
                f"timestamp {timestamp.isoformat()} is older than the backdate window "
                f"({_describe(self.backdate)} before the receive time)"
            )
        if timestamp > _shift(now, self.future_skew):
            raise TimestampOutOfWindowError(
                f"timestamp {timestamp.isoformat()} is more than "
                f"{_describe(self.future_skew)} in the future"
            )


def _shift(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, saturating at the ends of the calendar instead of overflowing."""
    try:
        return moment + delta
    except OverflowError:
        if delta < timedelta(0):
            return datetime.min.replace(tzinfo=UTC)
        return datetime.max.replace(tzinfo=UTC)


def parse_timestamp(raw: str) -> datetime:
    """Parse an ISO 8601 timestamp that names its zone; return it in UTC."""
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidTimestampError(f"timestamp {raw[:40]!r} is not ISO 8601") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidTimestampError(
            f"timestamp {raw[:40]!r} has no zone; add 'Z' or an offset such as '+00:00'"
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 lies before year 1 in UTC
        raise InvalidTimestampError(
            f"timestamp {raw[:40]!r} lies outside the years 1 to 9999 in UTC"
        ) from None


def check_event_id(event_id: str) -> None:
    if not event_id.strip() or len(event_id) > MAX_ID_LENGTH:
        raise InvalidEventIdError(f"event_id must be 1 to {MAX_ID_LENGTH} characters, not blank")
    if not is_storable(event_id):
        raise InvalidEventIdError("event_id must not contain the NUL character (U+0000)")


def check_void_reason(reason: str | None) -> None:
    if reason is None:
        return
    if len(reason) > MAX_VOID_REASON_LENGTH:
        raise InvalidVoidReasonError(
            f"reason must be at most {MAX_VOID_REASON_LENGTH} characters, not {len(reason)}"
        )
    if not is_storable(reason):
        raise InvalidVoidReasonError("reason must not contain the NUL character (U+0000)")


def check_event_name(event_name: str) -> None:
    if not event_name.strip() or len(event_name) > MAX_ID_LENGTH:
        raise InvalidEventNameError(
            f"event_name must be 1 to {MAX_ID_LENGTH} characters, not blank"
        )
    if not is_storable(event_name):
        raise InvalidEventNameError("event_name must not contain the NUL character (U+0000)")


def _describe(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"

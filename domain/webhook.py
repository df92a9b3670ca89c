"""Webhook endpoints: where a business wants its facts delivered, and which ones.

An endpoint is an aggregate in the log, so which messages it was due at any
position is a fact of the log: the outbox projection that derives messages
reads it. Its signing secret and custom headers are not events (they would
travel with every export): they are kept beside the API keys.

``filter_types`` names the message types it receives (none: every type); a
disabled endpoint receives nothing while it is disabled, a deleted one nothing
ever again. ``rate_limit`` is at most that many deliveries per second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError
from domain.text import is_storable

WEBHOOK_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/webhook")
MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 1000
MAX_METADATA_KEYS = 50
MAX_RATE_LIMIT = 10_000  # deliveries per second
MESSAGE_TYPES = (
    "credit.added",
    "credit.deducted",
    "credit.expired",
    "credit.rolled_over",
    "credit.rollover_forfeited",
    "credit.overage_charged",
    "credit.overage_reset",
    "credit.manual_adjustment",
    "credit.balance_low",
    "subscription.active",
    "subscription.updated",
    "subscription.renewed",
    "subscription.cancelled",
    "subscription.expired",
    "invoice.finalized",
    "invoice.adjusted",
    "usage.threshold_reached",
)


class InvalidWebhookError(DomainError):
    code = "invalid_webhook"


def webhook_aggregate_id(business_id: str, endpoint_id: str) -> UUID:
    return uuid5(WEBHOOK_NAMESPACE, f"{business_id}\x1f{endpoint_id}")


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH or not is_storable(url):
        raise InvalidWebhookError(
            f"url: an http or https URL of at most {MAX_URL_LENGTH} characters"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhookError("url: must be an http or https URL with a host")
    return url


def check_filter_types(types: object) -> list[str]:
    if types is None:
        return []
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise InvalidWebhookError("filter_types: a list of message types")
    for index, name in enumerate(types):
        if name not in MESSAGE_TYPES:
            raise InvalidWebhookError(
                f"filter_types[{index}]: {name[:100]!r} is not a message type this ledger sends; "
                f"one of {', '.join(MESSAGE_TYPES)}"
            )
    return sorted(set(types))


def check_metadata(metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or len(metadata) > MAX_METADATA_KEYS:
        raise InvalidWebhookError(f"metadata: an object of at most {MAX_METADATA_KEYS} strings")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 100 or len(value) > 500:
            raise InvalidWebhookError(
                f"metadata.{str(key)[:100]}: a string of at most 500 characters"
            )
        if not is_storable(key) or not is_storable(value):
            raise InvalidWebhookError("metadata: must not contain the NUL character (U+0000)")
    return dict(metadata)


def check_description(description: object) -> str:
    if description is None:
        return ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidWebhookError(f"description: at most {MAX_DESCRIPTION_LENGTH} characters")
    if not is_storable(description):
        raise InvalidWebhookError("description: must not contain the NUL character (U+0000)")
    return description


def check_rate_limit(rate_limit: object) -> int | None:
    if rate_limit is None:
        return None
    if type(rate_limit) is not int or not 1 <= rate_limit <= MAX_RATE_LIMIT:
        raise InvalidWebhookError(f"rate_limit: an integer from 1 to {MAX_RATE_LIMIT:,} a second")
    return rate_limit


def check_disabled(disabled: object) -> bool:
    if disabled is None:
        return False
    if type(disabled) is not bool:
        raise InvalidWebhookError("disabled: true or false")
    return disabled


class WebhookEndpoint(Aggregate):
    """A business's webhook endpoint; its secret and headers are kept elsewhere."""

    class Created(Aggregate.Created):
        business_id: str
        endpoint_id: str
        url: str
        description: str
        disabled: bool
        filter_types: list[str]
        metadata: dict[str, str]
        rate_limit: int | None
        created_at: datetime

    class Updated(Aggregate.Event):
        url: str
        description: str
        disabled: bool
        filter_types: list[str]
        metadata: dict[str, str]
        rate_limit: int | None
        updated_at: datetime

    class Disabled(Aggregate.Event):
        """Disabled by the delivery loop: every attempt failed for a day."""

        reason: str
        disabled_at: datetime

    class Deleted(Aggregate.Event):
        deleted_at: datetime

    @event(Created)
    def __init__(
        self,
        business_id: str,
        endpoint_id: str,
        url: str,
        description: str,
        disabled: bool,
        filter_types: list[str],
        metadata: dict[str, str],
        rate_limit: int | None,
        created_at: datetime,
    ) -> None:
        self.business_id = business_id
        self.endpoint_id = endpoint_id
        self.url = url
        self.description = description
        self.disabled = disabled
        self.filter_types = filter_types
        self.metadata = metadata
        self.rate_limit = rate_limit
        self.created_at = created_at
        self.updated_at = created_at
        self.disabled_reason: str | None = None
        self.deleted_at: datetime | None = None

    @staticmethod
    def create_id(business_id: str, endpoint_id: str) -> UUID:
        return webhook_aggregate_id(business_id, endpoint_id)

    @classmethod
    def define(
        cls, business_id: str, endpoint_id: str, fields: Mapping[str, Any], at: datetime
    ) -> WebhookEndpoint:
        """A new endpoint from the wire's fields; ``InvalidWebhookError`` naming a bad one."""
        return cls(
            business_id=business_id,
            endpoint_id=endpoint_id,
            url=check_url(fields.get("url")),
            description=check_description(fields.get("description")),
            disabled=check_disabled(fields.get("disabled")),
            filter_types=check_filter_types(fields.get("filter_types")),
            metadata=check_metadata(fields.get("metadata")),
            rate_limit=check_rate_limit(fields.get("rate_limit")),
            created_at=at,
        )

    def receives(self, message_type: str) -> bool:
        """Whether a message of this type is due to the endpoint now."""
        if self.deleted_at is not None or self.disabled:
            return False
        return not self.filter_types or message_type in self.filter_types

    def change(self, changes: Mapping[str, Any], at: datetime) -> None:
        """Change the given fields; no event if nothing changes."""
        self.check_not_deleted()

        def pick(name: str, check: Any, current: object) -> Any:
            return check(changes[name]) if name in changes else current

        fields = (
            pick("url", check_url, self.url),
            pick("description", check_description, self.description),
            pick("disabled", check_disabled, self.disabled),
            pick("filter_types", check_filter_types, self.filter_types),
            pick("metadata", check_metadata, self.metadata),
            pick("rate_limit", check_rate_limit, self.rate_limit),
        )
        current = (
            self.url,
            self.description,
            self.disabled,
            self.filter_types,
            self.metadata,
            self.rate_limit,
        )
        if fields != current:
            self._on_updated(*fields, at)

    def disable_for_failures(self, reason: str, at: datetime) -> None:
        if not self.disabled and self.deleted_at is None:
            self._on_disabled(reason, at)

    def delete(self, at: datetime) -> None:
        if self.deleted_at is None:
            self._on_deleted(at)

    def check_not_deleted(self) -> None:
        if self.deleted_at is not None:
            raise InvalidWebhookError(f"webhook {self.endpoint_id!r} has been deleted")

    @event(Updated)
    def _on_updated(
        self,
        url: str,
        description: str,
        disabled: bool,
        filter_types: Sequence[str],
        metadata: Mapping[str, str],
        rate_limit: int | None,
        updated_at: datetime,
    ) -> None:
        self.url = url
        self.description = description
        self.disabled = disabled
        self.filter_types = list(filter_types)
        self.metadata = dict(metadata)
        self.rate_limit = rate_limit
        self.updated_at = updated_at
        if not disabled:
            self.disabled_reason = None

    @event(Disabled)
    def _on_disabled(self, reason: str, disabled_at: datetime) -> None:
        self.disabled = True
        self.disabled_reason = reason
        self.updated_at = disabled_at

    @event(Deleted)
    def _on_deleted(self, deleted_at: datetime) -> None:
        self.deleted_at = deleted_at
        self.updated_at = deleted_at

"""Domain errors: each names a rule that an input broke, with a machine-readable code."""

from __future__ import annotations


class DomainError(Exception):
    """A domain rule was broken. ``code`` is stable and machine-readable."""

    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.detail: dict[str, object] = {}


class InvalidMetadataError(DomainError):
    code = "invalid_metadata"


class InvalidTimestampError(DomainError):
    code = "invalid_timestamp"


class TimestampOutOfWindowError(DomainError):
    code = "timestamp_out_of_window"


class InvalidEventIdError(DomainError):
    code = "invalid_event_id"


class InvalidEventNameError(DomainError):
    code = "invalid_event_name"


class InvalidCustomerError(DomainError):
    code = "invalid_customer"


class InvalidMeterError(DomainError):
    """A meter definition is malformed; the message starts with the offending path."""

    code = "invalid_meter"


class MeterDefinitionLockedError(DomainError):
    """Events have been billed against the meter: what it measures can no longer change."""

    code = "meter_definition_locked"


class InvalidBillingFrequencyError(DomainError):
    """A billing frequency's interval is unknown or its count is out of range."""

    code = "invalid_billing_frequency"


class CycleOutOfRangeError(DomainError):
    """A billing cycle before the subscription's start, or past the calendar's end."""

    code = "cycle_out_of_range"


class InvalidPriceError(DomainError):
    """A price is malformed; the message starts with the offending field."""

    code = "invalid_price"


class InvalidCreditError(DomainError):
    """Credits are malformed: a negative amount, an expiry before the grant, a bad rule."""

    code = "invalid_credit"


class InsufficientCreditError(DomainError):
    """A debit asks for more credit than the account has usable."""

    code = "insufficient_credits"


class InvoiceMismatchError(DomainError):
    """Invoice inputs do not fit together (a meter without a spec, two different cycles)."""

    code = "invoice_mismatch"


class InvalidProductError(DomainError):
    code = "invalid_product"


class InvalidSubscriptionError(DomainError):
    code = "invalid_subscription"


class ProductArchivedError(DomainError):
    """An archived product takes no new subscriptions (those it has keep billing)."""

    code = "product_archived"

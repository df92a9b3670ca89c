"""Application errors. The API maps each base class to one HTTP status."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error this service reports to a client."""

    code = "ledger_error"

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NotFoundError(LedgerError):
    code = "not_found"


class InvalidRequestError(LedgerError):
    """The request as a whole is not acceptable; nothing was written."""

    code = "invalid_request"


class BatchSizeError(InvalidRequestError):
    code = "batch_size_out_of_range"


class DuplicateEventInRequestError(InvalidRequestError):
    code = "duplicate_event_id_in_request"


class IdempotencyKeyReusedError(LedgerError):
    """An idempotency key sent again with a different request."""

    code = "idempotency_key_reused"


class ConflictRetryExhaustedError(LedgerError):
    """Concurrent writers kept colliding; the client may retry safely."""

    code = "conflict_retry_exhausted"


class UnavailableError(LedgerError):
    code = "unavailable"


class InvalidParameterError(InvalidRequestError):
    """A query parameter is malformed or out of range (answered 400 like Litestar's own)."""

    code = "invalid_parameter"

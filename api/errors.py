"""Every error leaves as JSON with a machine-readable code; a 500 is a bug and is logged."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from api.middleware import REQUEST_ID_KEY, loggable_path
from api.response import ExactJSONResponse
from api.schemas import ErrorRead
from application.errors import (
    ConflictRetryExhaustedError,
    IdempotencyKeyReusedError,
    InvalidParameterError,
    InvalidRequestError,
    LedgerError,
    NotFoundError,
    UnavailableError,
)
from domain.errors import DomainError, MeterDefinitionLockedError
from infrastructure.store import database_unavailable

log = structlog.get_logger(__name__)
RETRY_AFTER_SECONDS = 2  # a restarting PostgreSQL takes about that; the pool reconnects by itself

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, 404),
    (InvalidParameterError, 400),
    (InvalidRequestError, 422),
    (UnavailableError, 503),
    (ConflictRetryExhaustedError, 503),
    (IdempotencyKeyReusedError, 409),
    (LedgerError, 400),
    (MeterDefinitionLockedError, 409),
    (DomainError, 422),
)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}
_PATH = re.compile(r"at `(\$[^`]*)`")


def error_response(
    request: Request[Any, Any, Any], status: int, code: str, message: str, **detail: Any
) -> Response[Any]:
    body = ErrorRead(code=code, message=message, detail=detail or None)
    request_id = request.scope.get("state", {}).get(REQUEST_ID_KEY)
    headers = {"x-request-id": request_id} if request_id else None
    return ExactJSONResponse(body, status_code=status, headers=headers)


def ledger_error(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    status = next(s for kind, s in _STATUS if isinstance(error, kind))
    detail = getattr(error, "detail", None) or {}
    message = getattr(error, "message", str(error))
    response = error_response(request, status, getattr(error, "code", "error"), message, **detail)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def body_error(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    message = str(error)
    if isinstance(error, msgspec.ValidationError):
        match = _PATH.search(message)
        path = match.group(1) if match else "$"
        return error_response(request, 422, "invalid_request", message, path=path)
    return error_response(
        request, 400, "invalid_json", f"request body is not valid JSON: {message}"
    )


def http_error(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    assert isinstance(error, HTTPException)
    status = error.status_code
    if isinstance(error, ValidationException):
        return error_response(
            request, 400, "invalid_parameter", str(error.detail), errors=error.extra or None
        )
    code = getattr(error, "code", None) or _HTTP_CODES.get(status, f"http_{status}")
    detail = error.extra if isinstance(error.extra, dict) else {}
    response = error_response(request, status, code, str(error.detail), **detail)
    for name, value in (error.headers or {}).items():
        response.headers[name] = value
    return response


def internal_error(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    if database_unavailable(error):
        return unavailable(request, error)
    log.exception("unhandled_error", path=loggable_path(request.url.path), error=str(error))
    return error_response(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal_error",
        "an internal error occurred; it has been logged",
    )


def unavailable(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """The store cannot be reached: nothing was acknowledged, the client may send it again."""
    log.warning(
        "database_unavailable", path=loggable_path(request.url.path), error=str(error)[:200]
    )
    response = error_response(
        request,
        503,
        "database_unavailable",
        "the database is unreachable or restarting; nothing of this request was acknowledged, "
        "send it again after Retry-After seconds",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    LedgerError: ledger_error,
    DomainError: ledger_error,
    msgspec.DecodeError: body_error,
    HTTPException: http_error,
    Exception: internal_error,
}

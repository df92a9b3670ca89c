"""One structured log line per request, with a request id echoed back to the client."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

log = structlog.get_logger("ledger.http")
REQUEST_ID_KEY = "ledger_request_id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SECRET_PATHS = ("/portal/",)  # the rest of the path is a credential (a portal link's token)


def loggable_path(path: str) -> str:
    """The path as a log line may hold it: a credential in it is replaced by a mark."""
    for prefix in _SECRET_PATHS:
        if path.startswith(prefix):
            return f"{prefix}[redacted]"
    return path


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        http_scope: HTTPScope = scope
        headers = dict(http_scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                present = [h for h in message.get("headers", []) if h[0] == b"x-request-id"]
                if not present:
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode()),
                    ]
            await send(message)

        # Errors raised by an inner middleware (a 401) are answered outside this one,
        # by the app's error handlers: they find the id here.
        scope.setdefault("state", {})[REQUEST_ID_KEY] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            # Raised by a middleware (e.g. a 401); the app's handler answers it outside us.
            status = getattr(error, "status_code", 500)
            raise
        finally:
            user = scope.get("user")
            log.info(
                "request",
                method=http_scope["method"],
                path=loggable_path(scope["path"]),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                business=getattr(user, "business_id", None),
            )
            structlog.contextvars.unbind_contextvars("request_id")

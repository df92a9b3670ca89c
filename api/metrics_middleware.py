"""Every HTTP request counted and timed, by method, route template and final status.

Litestar runs its middleware after routing, so a request no route matches (a
404 or 405) never reaches one. ``install`` therefore wraps the app's whole
handler, outside routing, the exception handlers and CORS: every answer is
seen with the status it left with, a 401 from the key middleware included.
"""

from __future__ import annotations

import time

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from infrastructure.metrics import IN_PROGRESS, record_request


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        status = 500  # what an exception escaping every handler becomes
        started = time.perf_counter()

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_seen)
        finally:
            IN_PROGRESS.dec()
            # The router names the matched route's template (``/meters/{meter_id}``),
            # never the raw path: one series per route, whatever ids clients send.
            route = scope.get("path_template")
            record_request(scope["method"], route, status, time.perf_counter() - started)


def install(app: Litestar) -> None:
    """Put the request metrics outside everything the app does with a request."""
    app.asgi_handler = RequestMetricsMiddleware(app.asgi_handler)

"""The dashboard: the operator's web interface, served under ``/dashboard`` by ``ledger serve``.

Server-rendered HTML (Jinja2 templates in ``api/templates/dashboard``, one
stylesheet, charts drawn as SVG on the server, a little JavaScript of our own in
``api/static/dashboard.js``); every form works without JavaScript. A signed-in
session (``api.dashboard.session``) acts for its key's business only: every read
and write goes through the same application services as the HTTP API, scoped by
that business, so another business's ids are not found here either.

One module per section; this one only assembles them into a router with the
session and CSRF middleware and the error pages, and registers that router on
the app at the app's first request for a dashboard path
(``DashboardOnFirstUse``): its some 170 handlers take Litestar about as long to
prepare as the rest of the app, and an app that never serves a page (an API-only
process, most tests) need not pay for them.
"""

from __future__ import annotations

import threading

from litestar import Litestar, Router, get
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.response import Redirect
from litestar.types import ASGIApp, Receive, Scope, Send

from api.dashboard import (
    alerts,
    api_keys,
    credits,
    customers,
    events,
    invoices,
    meters,
    overview,
    products,
    subscriptions,
    webhooks,
)
from api.dashboard.pages import ERROR_PAGES
from api.dashboard.session import (
    HOME,
    SignInRequiredError,
    csrf_config,
    session_config,
    sign_in,
    sign_in_page,
    sign_in_required,
    sign_out,
    signed_in,
)
from api.html import PUBLIC
from infrastructure.bootstrap import Container

SECTIONS = (
    overview,
    meters,
    alerts,
    products,
    credits,
    customers,
    subscriptions,
    invoices,
    events,
    api_keys,
    webhooks,
)


@get("/", opt=PUBLIC, include_in_schema=False, sync_to_thread=False)
def root() -> Redirect:
    """``/`` is the dashboard."""
    return Redirect(HOME, status_code=302)


def dashboard_router(container: Container) -> Router:
    handlers = [sign_in_page, sign_in, sign_out]
    for section in SECTIONS:
        handlers.extend(section.HANDLERS)
    return Router(
        path=HOME,
        route_handlers=handlers,
        middleware=[
            session_config(container).middleware,
            DefineMiddleware(CSRFMiddleware, config=csrf_config(container)),
        ],
        guards=[signed_in],
        opt=PUBLIC,  # no bearer key: the session is the credential
        exception_handlers={**ERROR_PAGES, SignInRequiredError: sign_in_required},
        include_in_schema=False,
    )


class DashboardOnFirstUse:
    """The app's handler, which registers the dashboard's router on the app first when
    a request's path may be a dashboard path (one naming ``dashboard`` anywhere: more
    than the router's, never fewer, whatever the root path and slashes).

    It runs before routing, so that request is routed with the dashboard's routes.
    From then on they are the app's own routes, as if they had been given to
    ``Litestar`` at the start: the same middleware, guards, error handlers, templates
    and ``app.state``. The registration runs once, in the event loop and without
    awaiting, so no other request of that loop is routed while the routes are added
    (it holds the loop about 0.2 s, once); a lock keeps it once when two event loops
    share one app (two test clients).
    """

    def __init__(self, app: Litestar, container: Container) -> None:
        self._litestar = app
        self._container = container
        self._lock = threading.Lock()
        self._registered = False
        self.app: ASGIApp = app.asgi_handler

    @classmethod
    def install(cls, app: Litestar, container: Container) -> DashboardOnFirstUse:
        """Put it in front of ``app``'s handler; it stays in ``app.state.dashboard``."""
        handler = cls(app, container)
        app.asgi_handler = handler
        app.state.dashboard = handler
        return handler

    def register(self) -> None:
        """Register the dashboard's routes now, if that has not been done yet."""
        if self._registered:
            return
        with self._lock:
            if not self._registered:
                self._litestar.register(dashboard_router(self._container))
                self._registered = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._registered and _MARK in scope.get("path", ""):
            self.register()
        await self.app(scope, receive, send)


_MARK = HOME.strip("/")  # in every path the dashboard's router serves

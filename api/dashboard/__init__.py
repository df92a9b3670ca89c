"""The dashboard: the operator's web interface, served under ``/dashboard`` by ``ledger serve``.

Server-rendered HTML (Jinja2 templates in ``api/templates/dashboard``, one
stylesheet, charts drawn as SVG on the server, a little JavaScript of our own in
``api/static/dashboard.js``); every form works without JavaScript. A signed-in
session (``api.dashboard.session``) acts for its key's business only: every read
and write goes through the same application services as the HTTP API, scoped by
that business, so another business's ids are not found here either.

One module per section; this one only assembles them into a router with the
session and CSRF middleware and the error pages.
"""

from __future__ import annotations

from litestar import Router, get
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.response import Redirect

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

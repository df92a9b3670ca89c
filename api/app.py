"""The Litestar application, built around a container from ``infrastructure.bootstrap``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from litestar import Litestar, Request, Response
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from api.auth import PUBLIC_PATHS, BearerKeyMiddleware, scope_guard
from api.dashboard import DashboardOnFirstUse, root
from api.dashboard.pages import http_error as dashboard_http_error
from api.dashboard.session import HOME
from api.errors import EXCEPTION_HANDLERS
from api.errors import http_error as api_http_error
from api.html import static_files, template_config
from api.limits import RateLimits
from api.metrics_middleware import install as install_request_metrics
from api.middleware import RequestLogMiddleware
from api.response import ExactJSONResponse
from api.routes.alerts import AlertController
from api.routes.api_keys import ApiKeyController
from api.routes.credits import CreditEntitlementController
from api.routes.customers import CustomerController
from api.routes.events import EventController
from api.routes.health import health
from api.routes.invoices import InvoiceController
from api.routes.meters import MeterController
from api.routes.metrics import metrics
from api.routes.portal import portal_page
from api.routes.products import ProductController
from api.routes.subscriptions import SubscriptionController
from api.routes.webhooks import WebhookController
from application.dashboard import OpenCycleTotals, open_cycles_total
from infrastructure.bootstrap import Container
from infrastructure.runtime import Runtime


def refuse_unstorable_parameters(request: Request[Any, Any, Any]) -> None:
    """No query value may hold U+0000: no store can hold it, so nothing could match it."""
    for name, value in request.query_params.items():
        if "\x00" in value:
            raise ValidationException(f"query parameter {name!r} contains the NUL character")


def cors_config(origins: tuple[str, ...]) -> CORSConfig | None:
    """Browsers at ``origins`` may call the API (none by default: no CORS headers at all).

    Keys travel in ``Authorization``, never in cookies, so credentials stay off;
    a preflight from any other origin is refused by Litestar with no CORS headers.
    """
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["authorization", "content-type", "x-request-id"],
        expose_headers=["x-request-id", "retry-after"],
        allow_credentials=False,
        max_age=600,
    )


def http_error(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """An HTTP error outside any route (no such path, wrong method): a page under
    ``/dashboard``, JSON everywhere else."""
    if request.url.path == HOME or request.url.path.startswith(f"{HOME}/"):
        return dashboard_http_error(request, error)
    return api_http_error(request, error)


def create_app(container: Container, *, follow: bool = True) -> Litestar:
    """The HTTP app; with ``follow`` it also keeps the read models up to date."""

    runtime = Runtime(container)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Without ``follow`` nothing runs here but, with several processes, the
        # metrics' pool sampler.
        container.acquire()
        runtime.start(projections=follow, billing=follow, delivery=follow)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(app.state.open_cycles.stop)
            last = container.release()  # two apps on one container: the last one closes it
            runtime.stop(projector=last)
            if last:
                container.close()

    app = Litestar(
        route_handlers=[
            health,
            metrics,
            CustomerController,
            EventController,
            MeterController,
            ProductController,
            SubscriptionController,
            InvoiceController,
            CreditEntitlementController,
            WebhookController,
            AlertController,
            ApiKeyController,
            portal_page,
            static_files,
            root,
        ],
        middleware=[
            RequestLogMiddleware,
            DefineMiddleware(BearerKeyMiddleware, exclude=PUBLIC_PATHS),
        ],
        guards=[scope_guard],
        before_request=refuse_unstorable_parameters,
        exception_handlers={**EXCEPTION_HANDLERS, HTTPException: http_error},
        response_class=ExactJSONResponse,
        template_config=template_config(),
        cors_config=cors_config(container.settings.cors_origins),
        request_max_body_size=container.settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="ledger", version="0.1.0", path="/schema"),
        lifespan=[lifespan],
        logging_config=None,
        debug=False,
    )
    app.state.container = container
    app.state.open_cycles = OpenCycleTotals(
        lambda business_id, now: open_cycles_total(
            container.ledger, container.reads, business_id, now
        ),
        container.clock,
    )
    DashboardOnFirstUse.install(app, container)  # /dashboard: its routes at its first request
    install_request_metrics(app)
    app.state.limits = RateLimits.per_second(
        container.settings.rate_limit_requests, container.settings.rate_limit_events
    )
    return app

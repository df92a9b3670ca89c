"""The Litestar application, built around a container from ``infrastructure.bootstrap``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar.exceptions import ValidationException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from api.auth import PUBLIC_PATHS, BearerKeyMiddleware, scope_guard
from api.errors import EXCEPTION_HANDLERS
from api.middleware import RequestLogMiddleware
from api.response import ExactJSONResponse
from api.routes.alerts import AlertController
from api.routes.credits import CreditEntitlementController
from api.routes.customers import CustomerController
from api.routes.events import EventController
from api.routes.health import health
from api.routes.invoices import InvoiceController
from api.routes.meters import MeterController
from api.routes.products import ProductController
from api.routes.subscriptions import SubscriptionController
from api.routes.webhooks import WebhookController
from infrastructure.bootstrap import Container
from infrastructure.runtime import Runtime


def refuse_unstorable_parameters(request: Request[Any, Any, Any]) -> None:
    """No query value may hold U+0000: no store can hold it, so nothing could match it."""
    for name, value in request.query_params.items():
        if "\x00" in value:
            raise ValidationException(f"query parameter {name!r} contains the NUL character")


def create_app(container: Container, *, follow: bool = True) -> Litestar:
    """The HTTP app; with ``follow`` it also keeps the read models up to date."""

    runtime = Runtime(container)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        if follow:
            runtime.start()
        try:
            yield
        finally:
            runtime.stop()
            container.close()

    app = Litestar(
        route_handlers=[
            health,
            CustomerController,
            EventController,
            MeterController,
            ProductController,
            SubscriptionController,
            InvoiceController,
            CreditEntitlementController,
            WebhookController,
            AlertController,
        ],
        middleware=[
            RequestLogMiddleware,
            DefineMiddleware(BearerKeyMiddleware, exclude=PUBLIC_PATHS),
        ],
        guards=[scope_guard],
        before_request=refuse_unstorable_parameters,
        exception_handlers=EXCEPTION_HANDLERS,
        response_class=ExactJSONResponse,
        request_max_body_size=container.settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="ledger", version="0.1.0", path="/schema"),
        lifespan=[lifespan],
        logging_config=None,
        debug=False,
    )
    app.state.container = container
    return app

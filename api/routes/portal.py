"""The customer portal: ``POST /customers/{id}/customer-portal/session`` signs a link,
``GET /portal/{token}`` opens the read-only page it grants.

The page needs no API key: the token is the credential (``application.portal_link``).
So the route is marked to skip the key middleware, and the request log and error
logs write its path without the token (``api.middleware.loggable_path``). Every
portal answer, the refusal too, is ``no-store`` (the page is one customer's), sends
no referrer (the token is in the URL) and carries a strict Content-Security-Policy:
the page has no script, no inline style, nothing from another origin.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response, get
from litestar.enums import MediaType
from litestar.params import FromPath
from litestar.response import Template
from litestar.template.base import TemplateEngineProtocol

from api.errors import RETRY_AFTER_SECONDS, internal_error
from api.html import PUBLIC
from api.middleware import loggable_path
from api.routes.common import container_of
from application.errors import UnavailableError
from application.portal import customer_portal
from application.portal_link import PortalLinkError, PortalLinkExpiredError
from infrastructure.store import database_unavailable

log = structlog.get_logger(__name__)
PORTAL_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class CustomerPortalSessionRead(msgspec.Struct):
    """The SDK's ``CustomerPortalSession``."""

    link: str


def refused(request: Request[Any, Any, Any], error: Exception) -> Response[str]:
    """403 with a page that says why: expired (ask for a new link) or not valid."""
    engine: TemplateEngineProtocol[Any, Any] | None = request.app.template_engine
    assert engine is not None  # the app is made with template_config()
    expired = isinstance(error, PortalLinkExpiredError)
    html = engine.get_template("portal/refused.html").render(expired=expired, request=request)
    return Response(html, status_code=403, media_type=MediaType.HTML, headers=PORTAL_HEADERS)


def unavailable_page(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """503 as a page when the read models lag or the database is restarting (the link
    still works: open it again shortly); anything else is a bug, answered as the API does."""
    if not isinstance(error, UnavailableError) and not database_unavailable(error):
        return internal_error(request, error)
    log.warning("portal_unavailable", path=loggable_path(request.url.path), error=str(error)[:200])
    engine: TemplateEngineProtocol[Any, Any] | None = request.app.template_engine
    assert engine is not None  # the app is made with template_config()
    html = engine.get_template("portal/unavailable.html").render(request=request)
    headers = {**PORTAL_HEADERS, "Retry-After": str(RETRY_AFTER_SECONDS)}
    return Response(html, status_code=503, media_type=MediaType.HTML, headers=headers)


@get(
    "/portal/{token:str}",
    summary="The customer portal page a portal link opens (HTML; the token is the key)",
    media_type=MediaType.HTML,
    opt=PUBLIC,
    tags=["customers"],
    sync_to_thread=True,
    exception_handlers={
        PortalLinkError: refused,
        UnavailableError: unavailable_page,
        Exception: unavailable_page,
    },
)
def portal_page(request: Request[Any, Any, Any], token: FromPath[str]) -> Template:
    container = container_of(request)
    page = customer_portal(
        container.ledger, container.reads, container.portal, token, now=container.clock()
    )
    return Template("portal/page.html", context={"page": page}, headers=PORTAL_HEADERS)

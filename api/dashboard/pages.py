"""How every dashboard page is answered: one layout, its headers, paging, and error pages.

``render`` gives a template the layout's context (who is signed in, the
navigation, the messages left by the last form) and the headers every page
carries: ``no-store`` (a page shows one business's figures), no framing, and a
Content-Security-Policy that allows only this origin's own files: no inline
script, no inline style, nothing from a CDN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import structlog
from litestar import Request, Response
from litestar.enums import MediaType
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.response import Template
from litestar.template.base import TemplateEngineProtocol

from api.errors import RETRY_AFTER_SECONDS
from api.middleware import REQUEST_ID_KEY
from application.errors import NotFoundError, UnavailableError
from infrastructure.keys import Principal
from infrastructure.store import database_unavailable

log = structlog.get_logger(__name__)
PRINCIPAL = "dashboard_principal"  # where the guard leaves who is signed in (scope state)
PAGE_SIZE = 25
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    path: str


NAV = (
    NavItem("Overview", "/dashboard"),
    NavItem("Meters", "/dashboard/meters"),
    NavItem("Products", "/dashboard/products"),
    NavItem("Customers", "/dashboard/customers"),
    NavItem("Subscriptions", "/dashboard/subscriptions"),
    NavItem("Invoices", "/dashboard/invoices"),
    NavItem("Events", "/dashboard/events"),
    NavItem("Credits", "/dashboard/credits"),
    NavItem("Alerts", "/dashboard/alerts"),
    NavItem("Webhooks", "/dashboard/webhooks"),
    NavItem("API keys", "/dashboard/api-keys"),
)


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """Who is signed in (the guard ``session.signed_in`` put it there)."""
    principal: Principal = request.scope["state"][PRINCIPAL]
    return principal


def business(request: Request[Any, Any, Any]) -> str:
    return principal_of(request).business_id


def flash(request: Request[Any, Any, Any], message: str) -> None:
    """A message for the next page shown, after the redirect that follows a form."""
    messages = list(request.session.get("flash", ()))[-4:]
    request.session["flash"] = [*messages, message]


def _take_flashes(request: Request[Any, Any, Any]) -> list[str]:
    session = request.scope.get("session")
    if not isinstance(session, dict) or not session.get("flash"):
        return []
    return [str(message) for message in session.pop("flash")]


def _section(path: str) -> str:
    """The navigation item a path belongs to: the longest matching prefix."""
    return max(
        (item.path for item in NAV if path == item.path or path.startswith(item.path + "/")),
        key=len,
        default="/dashboard",
    )


def render(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> Template:
    """The page ``template`` (under ``api/templates``) in the layout."""
    state = request.scope.get("state", {})
    principal = state.get(PRINCIPAL)
    context.setdefault("signed_out", principal is None)
    layout = {
        "principal": principal,
        "nav": NAV,
        "section": _section(request.url.path),
        "flashes": _take_flashes(request) if principal is not None else [],
        "request_id": state.get(REQUEST_ID_KEY, ""),
    }
    return Template(
        template,
        context={**layout, **context},
        status_code=status_code,
        headers={**HEADERS, **(headers or {})},
    )


@dataclass(frozen=True, slots=True)
class Pager:
    """Page ``number`` (0-based) of ``size`` rows; links keep the page's other parameters."""

    number: int
    size: int
    shown: int  # rows on this page
    path: str
    params: tuple[tuple[str, str], ...]

    @property
    def has_previous(self) -> bool:
        return self.number > 0

    @property
    def has_next(self) -> bool:
        return self.shown >= self.size

    def link(self, number: int) -> str:
        query = [(k, v) for k, v in self.params if k != "page"]
        if number:
            query.append(("page", str(number)))
        return self.path + (f"?{urlencode(query)}" if query else "")

    @property
    def previous(self) -> str:
        return self.link(self.number - 1)

    @property
    def next(self) -> str:
        return self.link(self.number + 1)

    @property
    def first_row(self) -> int:
        return self.number * self.size + 1


def digits(raw: str, most: int = 9) -> int | None:
    """``raw`` as a whole number when it is 1 to ``most`` ASCII digits; else None
    (``"²".isdigit()`` is true, but ``int("²")`` fails; a huge number is refused too)."""
    text = raw.strip()
    if not text or len(text) > most or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def page_number(request: Request[Any, Any, Any]) -> int:
    """The ``page`` query parameter, 0-based; anything unreadable is the first page."""
    found = digits(request.query_params.get("page", "0"), 6)
    return 0 if found is None else min(found, 100_000)


def pager(request: Request[Any, Any, Any], shown: int, size: int = PAGE_SIZE) -> Pager:
    params = tuple((k, v) for k, v in request.query_params.items() if v != "")
    return Pager(page_number(request), size, shown, request.url.path, params)


def _error_page(
    request: Request[Any, Any, Any], status: int, title: str, message: str, **headers: str
) -> Response[Any]:
    engine: TemplateEngineProtocol[Any, Any] | None = request.app.template_engine
    assert engine is not None  # the app is made with api.html.template_config()
    principal = request.scope.get("state", {}).get(PRINCIPAL)
    html = engine.get_template("dashboard/error.html").render(
        request=request,
        principal=principal,
        signed_out=principal is None,
        nav=NAV,
        section=_section(request.url.path),
        flashes=[],
        status=status,
        title=title,
        message=message,
        request_id=request.scope.get("state", {}).get(REQUEST_ID_KEY, ""),
        csrf_input="",
    )
    return Response(
        html,
        status_code=status,
        media_type=MediaType.HTML,
        headers={**HEADERS, **headers},
    )


def not_found(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    message = getattr(error, "message", None) or "There is no such page."
    return _error_page(request, 404, "Not found", str(message))


def forbidden(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    detail = getattr(error, "detail", "")
    if "CSRF" in str(detail):
        message = (
            "This form was not sent from this dashboard, or the page was open too long. "
            "Go back, reload the page and send the form again."
        )
        return _error_page(request, 403, "Form refused", message)
    return _error_page(request, 403, "Forbidden", str(detail) or "Not allowed.")


def http_error(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    assert isinstance(error, HTTPException)
    if isinstance(error, NotFoundException):
        return not_found(request, error)
    if isinstance(error, PermissionDeniedException):
        return forbidden(request, error)
    status = error.status_code
    return _error_page(request, status, "Request refused", str(error.detail))


def unavailable_or_bug(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """503 while the read models lag or the database restarts; anything else is a bug."""
    if isinstance(error, UnavailableError) or database_unavailable(error):
        log.warning("dashboard_unavailable", path=request.url.path, error=str(error)[:200])
        return _error_page(
            request,
            503,
            "Temporarily unavailable",
            "The database is restarting or the read models are catching up. "
            "Reload the page in a few seconds.",
            **{"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    log.exception("dashboard_error", path=request.url.path, error=str(error))
    return _error_page(
        request,
        500,
        "Something went wrong",
        "An internal error occurred; it has been logged with the request id below.",
    )


ERROR_PAGES: dict[type[Exception] | int, Any] = {
    NotFoundError: not_found,
    HTTPException: http_error,
    Exception: unavailable_or_bug,
}

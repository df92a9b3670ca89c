"""Signing in to the dashboard: an admin API key exchanged for a session cookie.

The key is checked once, at sign-in, and never kept: the session (Litestar's
client-side sessions, AES-GCM with the server's ``dashboard_sessions`` secret)
holds the key's public id, its business and when the sign-in ends. Every request
checks that id again (``KeyStore.principal``), so revoking the key signs its
sessions out at once on every process. The cookie is HttpOnly, SameSite=Strict,
Secure when the request came over https, and it ends after
``dashboard_session_seconds`` whatever the activity (the ``until`` it holds).

Every form carries Litestar's CSRF token (``csrf_input``) and every POST is
checked against the CSRF cookie by Litestar's middleware, the sign-in form too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar
from urllib.parse import quote, urlsplit

import anyio
from litestar import Request, Response, get, post
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import RequestEncodingType
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.client_side import (
    ClientSideSessionBackend,
    CookieBackendConfig,
)
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template
from litestar.types import Empty, Message, ScopeSession

from api.dashboard.pages import PRINCIPAL, render
from api.routes.common import container_of
from infrastructure.bootstrap import Container

SESSION_COOKIE = "ledger_session"
CSRF_COOKIE = "ledger_csrf"
SIGN_IN = "/dashboard/sign-in"
HOME = "/dashboard"
ANONYMOUS = "anonymous"  # opt of the handlers one reaches signed out: sign-in, sign-out


def _derive(secret: bytes, purpose: str) -> bytes:
    """One key per use from the server's secret: the cookie's AES key, the CSRF HMAC key."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


class SchemeAwareSessionBackend(ClientSideSessionBackend):
    """Litestar's cookie sessions, with ``Secure`` set when the request came over https
    (one process may serve both: behind a TLS proxy and on localhost)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SchemeAwareSessionBackend:
        return self  # Litestar copies a router's middleware; the AES key is not copyable

    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: Message,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        secure = connection.scope.get("scheme") in {"https", "wss"}
        headers = MutableScopeHeaders.from_message(message)
        sent = self.get_cookie_key_set(connection)
        written: set[str] = set()
        if scope_session and scope_session is not Empty:
            for cookie in self._create_session_cookies(
                self.dump_data(scope_session, connection.scope)
            ):
                cookie.secure = secure
                headers.add("Set-Cookie", cookie.to_header(header=""))
                written.add(cookie.key)
        for key in sent - written:
            params = {**self._clear_cookie_params, "secure": secure}
            headers.add(
                "Set-Cookie",
                Cookie(value="null", key=key, expires=0, **params).to_header(header=""),
            )


@dataclass
class DashboardSessionConfig(CookieBackendConfig):
    _backend_class: ClassVar[type[ClientSideSessionBackend]] = SchemeAwareSessionBackend  # type: ignore[misc]


def session_config(container: Container) -> DashboardSessionConfig:
    return DashboardSessionConfig(
        secret=_derive(container.dashboard_secret, "session")[:32],
        key=SESSION_COOKIE,
        max_age=max(60, int(container.settings.dashboard_session_seconds)),
        path=HOME,
        httponly=True,
        samesite="strict",
    )


def csrf_config(container: Container) -> CSRFConfig:
    return CSRFConfig(
        secret=_derive(container.dashboard_secret, "csrf").hex(),
        cookie_name=CSRF_COOKIE,
        cookie_path=HOME,
        cookie_httponly=True,
        cookie_samesite="strict",
        header_name="x-csrf-token",
    )


REASONS = {  # why the sign-in page is shown: fixed texts, never text from the URL
    "ended": "Your session ended: sign in again.",
    "revoked": "The API key of your session was revoked or has expired: sign in with another.",
    "signed-out": "You are signed out.",
}


class SignInRequiredError(Exception):
    """No session, an ended one, or its key revoked: the answer is the sign-in page."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(REASONS.get(reason or "", "sign in to continue"))
        self.reason = reason


async def signed_in(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The guard of every dashboard page but sign-in: a session whose key still works."""
    if handler.opt.get(ANONYMOUS) or connection.scope.get("method") == "OPTIONS":
        return  # Litestar answers OPTIONS itself (Allow, CORS): nothing of a business shows
    session = connection.scope.get("session")
    if not isinstance(session, Mapping) or "key" not in session:
        raise SignInRequiredError()
    container: Container = connection.app.state.container
    now = container.clock()
    if float(session.get("until", 0)) <= now.timestamp():
        raise SignInRequiredError("ended")
    principal = await anyio.to_thread.run_sync(container.keys.principal, str(session["key"]), now)
    if (
        principal is None
        or principal.business_id != session.get("business")
        or not principal.allows("admin")
    ):
        raise SignInRequiredError("revoked")
    connection.scope.setdefault("state", {})[PRINCIPAL] = principal


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path of this site, nothing else."""
    if not target:
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(HOME) or "\\" in target:
        return HOME
    return target


def sign_in_required(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    reason = getattr(error, "reason", None)
    if reason and request.scope.get("session"):
        request.clear_session()
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = HOME
    query = f"?next={quote(target, safe='')}"
    if reason:
        query += f"&reason={reason}"
    return Redirect(SIGN_IN + query, status_code=303)


FormBody = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@get(
    SIGN_IN.removeprefix(HOME),
    opt={ANONYMOUS: True},
    name="dashboard:sign-in",
    sync_to_thread=False,
)
def sign_in_page(
    request: Request[Any, Any, Any],
    next: FromQuery[str | None] = None,
    reason: FromQuery[str | None] = None,
) -> Template:
    return render(
        request,
        "dashboard/sign_in.html",
        signed_out=True,
        next_path=safe_next(next),
        error=None,
        notice=REASONS.get(reason or ""),
        status_code=200,
    )


@post(SIGN_IN.removeprefix(HOME), opt={ANONYMOUS: True}, name="dashboard:sign-in-submit")
async def sign_in(request: Request[Any, Any, Any], data: FormBody) -> Response[Any]:
    container = container_of(request)
    token = data.get("api_key", "").strip()
    next_path = safe_next(data.get("next"))
    principal = (
        await anyio.to_thread.run_sync(container.keys.authenticate, token, container.clock())
        if token
        else None
    )
    error = None
    if not token:
        error = "Enter an API key."
    elif principal is None:
        error = "This API key is not valid: it is unknown, revoked or expired."
    elif not principal.allows("admin"):
        error = (
            f"This is a {principal.scope} key: the dashboard needs an admin key "
            "(ledger keys create --scope admin)."
        )
    if error is not None or principal is None:
        return render(
            request,
            "dashboard/sign_in.html",
            signed_out=True,
            next_path=next_path,
            error=error,
            notice=None,
            status_code=401 if token else 422,
        )
    request.set_session(
        {
            "key": principal.key_id,
            "business": principal.business_id,
            "until": container.clock().timestamp() + container.settings.dashboard_session_seconds,
        }
    )
    return Redirect(next_path, status_code=303)


@post("/sign-out", opt={ANONYMOUS: True}, name="dashboard:sign-out")
async def sign_out(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    return Redirect(SIGN_IN + "?reason=signed-out", status_code=303)

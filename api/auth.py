"""Bearer API keys decide the business; guards check the key's scope."""

from __future__ import annotations

from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from api.limits import RateLimits
from infrastructure.bootstrap import Container
from infrastructure.keys import Principal, Scope

PUBLIC_PATHS = ["/health", "/schema", "/metrics"]  # /metrics: its own token, if any
READ_METHODS = frozenset({"GET", "HEAD"})


class BearerKeyMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("missing API key: send 'Authorization: Bearer <key>'")
        container: Container = connection.app.state.container
        principal = await anyio.to_thread.run_sync(
            container.keys.authenticate, token.strip(), container.clock()
        )
        if principal is None:
            raise NotAuthorizedException("invalid API key")
        limits: RateLimits = connection.app.state.limits
        limits.requests.take(principal.key_id)
        return AuthenticationResult(user=principal, auth=None)


def scope_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Admin keys may do anything; a read key may only read; an ingest key may only send events.

    A handler's scope is its ``opt["scope"]``; unmarked, a GET handler needs ``read``
    and any other needs ``admin``. A GET that shows a secret is marked ``admin``.
    """
    if handler.opt.get("public") or _is_public(connection.scope["path"]):
        return  # no key was asked for (the middleware leaves public paths alone)
    if connection.scope.get("method") == "OPTIONS":
        return  # a preflight carries no key (the middleware lets it by): CORS answers it
    needed = handler.opt.get("scope") or _default_scope(handler)
    principal: Principal = connection.user
    if not principal.allows(needed):
        raise PermissionDeniedException(f"this API key's scope does not allow {needed} calls")


def _default_scope(handler: BaseRouteHandler) -> Scope:
    methods = frozenset(getattr(handler, "http_methods", ()))  # a handler of no method: admin
    return "read" if methods and methods <= READ_METHODS else "admin"


def _is_public(path: str) -> bool:
    return any(path == public or path.startswith(f"{public}/") for public in PUBLIC_PATHS)

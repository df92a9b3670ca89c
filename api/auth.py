"""Bearer API keys decide the business; guards check the key's scope."""

from __future__ import annotations

from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from infrastructure.bootstrap import Container
from infrastructure.keys import Principal

PUBLIC_PATHS = ["/health", "/schema"]


class BearerKeyMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("missing API key: send 'Authorization: Bearer <key>'")
        container: Container = connection.app.state.container
        principal = await anyio.to_thread.run_sync(container.keys.authenticate, token.strip())
        if principal is None:
            raise NotAuthorizedException("invalid API key")
        return AuthenticationResult(user=principal, auth=None)


def scope_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Admin keys may do anything; an ingest key may only send events."""
    if handler.opt.get("public") or _is_public(connection.scope["path"]):
        return  # no key was asked for (the middleware leaves public paths alone)
    needed = handler.opt.get("scope", "admin")
    principal: Principal = connection.user
    if not principal.allows(needed):
        raise PermissionDeniedException(f"this API key's scope does not allow {needed} calls")


def _is_public(path: str) -> bool:
    return any(path == public or path.startswith(f"{public}/") for public in PUBLIC_PATHS)

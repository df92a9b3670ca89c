"""``GET /metrics``: Prometheus' text format (OpenMetrics when the scraper asks for it).

No API key is asked for; when ``LEDGER_METRICS_TOKEN`` is set the scraper sends
``Authorization: Bearer <that token>``, a secret of its own that opens nothing else.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get
from litestar.connection import ASGIConnection
from litestar.enums import MediaType
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from api.routes.common import container_of
from infrastructure.bootstrap import Container
from infrastructure.scrape import exposition


def metrics_token_guard(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    container: Container = connection.app.state.container
    expected = container.settings.metrics_token
    if expected is None:
        return
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    given = token.strip().encode() if scheme.lower() == "bearer" else b""
    if not hmac.compare_digest(given, expected.encode()):  # constant time: a token is a secret
        raise NotAuthorizedException(
            "the metrics ask for 'Authorization: Bearer <LEDGER_METRICS_TOKEN>'"
        )


@get(
    "/metrics",
    opt={"public": True},
    guards=[metrics_token_guard],
    media_type=MediaType.TEXT,
    sync_to_thread=True,  # the scrape reads the store
    summary="Metrics in the Prometheus text format",
)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    body, content_type = exposition(container_of(request), request.headers.get("accept", ""))
    # The header as prometheus-client gives it (Litestar would add a second charset).
    return Response(body, headers={"content-type": content_type})

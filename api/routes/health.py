"""``GET /health``: 200 once the service can serve, 503 with the reason when it cannot."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from api.errors import RETRY_AFTER_SECONDS
from api.response import ExactJSONResponse
from api.routes.common import container_of
from api.schemas import HealthRead
from infrastructure.runtime import database_problem, projection_position


@get("/health", opt={"public": True}, sync_to_thread=True, summary="Liveness and readiness")
def health(request: Request[Any, Any, Any]) -> Response[HealthRead]:
    container = container_of(request)
    problem = database_problem(container)
    if problem is not None:
        body = HealthRead(status="unavailable", database="unreachable", reason=problem)
        return ExactJSONResponse(
            body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    body = HealthRead(
        status="ok",
        database="ok",
        projection_position=projection_position(container),
        log_position=container.ledger.head(),
    )
    return ExactJSONResponse(body, status_code=200)

"""The overview: today's events per hour, the catalogue, open cycles, projections."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.response import Template

from api.dashboard.pages import business, render
from api.routes.common import container_of
from application.dashboard import OpenCycleTotals, overview


@get("/", name="dashboard:overview", sync_to_thread=True)
def overview_page(request: Request[Any, Any, Any]) -> Template:
    container = container_of(request)
    totals: OpenCycleTotals = request.app.state.open_cycles
    found = overview(
        container.ledger,
        container.reads,
        container.projector,
        totals,
        business(request),
        container.clock(),
    )
    return render(request, "dashboard/overview.html", view=found)


HANDLERS: tuple[HTTPRouteHandler, ...] = (overview_page,)

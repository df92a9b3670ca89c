"""Usage alerts (our extension, as Stripe's billing alerts and Lago's alerts); admin keys."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath

from api.routes.common import business_of, container_of
from api.schemas import decode
from application import alerts
from application.outbox import AlertRule
from domain.alert import UsageAlert
from infrastructure.keys import Principal


class AlertRead(msgspec.Struct):
    id: str
    meter_id: str
    customer_id: str | None  # None: every customer
    threshold: str
    period: str  # cycle, day, month
    name: str
    created_at: str


class AlertPage(msgspec.Struct):
    items: list[AlertRead]


def alert_read(found: UsageAlert | AlertRule) -> AlertRead:
    return AlertRead(
        id=found.alert_id,
        meter_id=found.meter_id,
        customer_id=found.customer_id,
        threshold=format(found.threshold, "f"),
        period=found.period,
        name=found.name,
        created_at=found.created_at.isoformat(),
    )


class AlertController(Controller):
    path = "/alerts"
    tags = ["alerts"]  # noqa: RUF012

    @post("/", status_code=200, summary="Create a usage alert")
    async def create(self, request: Request[Principal, Any, Any]) -> AlertRead:
        fields = decode(await request.body(), dict[str, Any])
        container, business = container_of(request), business_of(request)
        alert = await anyio.to_thread.run_sync(
            lambda: alerts.create_alert(container.ledger, business, fields, container.clock())
        )
        return alert_read(alert)

    @get("/", summary="The usage alerts, oldest first", sync_to_thread=True)
    def list_alerts(self, request: Request[Principal, Any, Any]) -> AlertPage:
        container = container_of(request)
        found = alerts.list_alerts(container.reads, business_of(request))
        return AlertPage([alert_read(a) for a in found])

    @get("/{alert_id:str}", summary="Retrieve a usage alert", sync_to_thread=True)
    def retrieve(self, request: Request[Principal, Any, Any], alert_id: FromPath[str]) -> AlertRead:
        container = container_of(request)
        return alert_read(alerts.get_alert(container.ledger, business_of(request), alert_id))

    @delete("/{alert_id:str}", status_code=204, summary="Delete a usage alert")
    async def remove(self, request: Request[Principal, Any, Any], alert_id: FromPath[str]) -> None:
        container, business = container_of(request), business_of(request)
        await anyio.to_thread.run_sync(
            lambda: alerts.delete_alert(container.ledger, business, alert_id, container.clock())
        )

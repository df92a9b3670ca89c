"""Meters: create, list, retrieve, update, archive, unarchive, and usage per window and group."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, FromQuery, QueryParameter

from api.response import ExactJSONResponse
from api.routes.common import PageNumber, PageSize, business_of, container_of, moment
from api.schemas import MeterCreate, MeterRead, MeterUsageRead, Page, UsageWindowRead, decode
from api.usage_schemas import grouped_usage_read
from application import listings
from application.errors import InvalidParameterError, InvalidRequestError
from application.usage_groups import DEFAULT_LIMIT, MAX_LIMIT, GroupQuery, grouped_usage
from application.usage_report import Window
from application.views import MeterQuery, MeterView
from infrastructure.keys import Principal

UPDATABLE = frozenset(
    {"name", "description", "measurement_unit", "event_name", "aggregation", "filter"}
)
WindowParam = Annotated[
    str, QueryParameter(description="hour, day or month (UTC)", pattern="^(hour|day|month)$")
]
GroupByParam = Annotated[
    str | None,
    QueryParameter(
        description="a metadata key (1 to 100 characters), or customer_id: the value per "
        "group of events; events lacking the key form the group null"
    ),
]
LimitParam = Annotated[
    int | None,
    QueryParameter(
        ge=1,
        le=MAX_LIMIT,
        description=f"with group_by: how many top groups to keep, 1 to {MAX_LIMIT} "
        f"(default {DEFAULT_LIMIT}); the rest are merged into other",
    ),
]


def meter_read(view: MeterView) -> MeterRead:
    return MeterRead(
        id=view.meter_id,
        aggregation=view.aggregation,
        business_id=view.business_id,
        created_at=view.created_at,
        event_name=view.event_name,
        measurement_unit=view.measurement_unit,
        name=view.name,
        updated_at=view.updated_at,
        description=view.description,
        filter=view.filter,
        archived=view.archived,
    )


class MeterController(Controller):
    path = "/meters"
    tags = ["meters"]  # noqa: RUF012

    @post("/", status_code=200, summary="Create a meter; it measures older events too")
    async def create(self, request: Request[Principal, Any, Any]) -> MeterRead:
        data = decode(await request.body(), MeterCreate)
        container = container_of(request)
        view = await anyio.to_thread.run_sync(
            lambda: container.ledger.create_meter(
                business_of(request),
                name=data.name,
                description=data.description,
                measurement_unit=data.measurement_unit,
                event_name=data.event_name,
                aggregation=data.aggregation,
                filter_=data.filter,
                now=container.clock(),
            )
        )
        return meter_read(view)

    @get("/{meter_id:str}", summary="Retrieve a meter", sync_to_thread=True)
    def retrieve(self, request: Request[Principal, Any, Any], meter_id: FromPath[str]) -> MeterRead:
        return meter_read(container_of(request).ledger.meter(business_of(request), meter_id))

    @patch("/{meter_id:str}", summary="Update a meter's name, description or unit")
    async def update(
        self, request: Request[Principal, Any, Any], meter_id: FromPath[str]
    ) -> MeterRead:
        changes = decode(await request.body(), dict[str, Any])
        unknown = sorted(changes.keys() - UPDATABLE)
        if unknown:
            raise InvalidRequestError(
                f"unknown field {unknown[0]!r}; a meter update may set: "
                + ", ".join(sorted(UPDATABLE)),
                path=f"$.{unknown[0]}",
            )
        for required in ("name", "measurement_unit", "event_name", "aggregation"):
            if required in changes and changes[required] is None:
                raise InvalidRequestError(f"{required} cannot be null", path=f"$.{required}")
        container = container_of(request)
        view = await anyio.to_thread.run_sync(
            lambda: container.ledger.update_meter(
                business_of(request), meter_id, changes=changes, now=container.clock()
            )
        )
        return meter_read(view)

    @delete("/{meter_id:str}", status_code=204, summary="Archive a meter", sync_to_thread=True)
    def archive(self, request: Request[Principal, Any, Any], meter_id: FromPath[str]) -> None:
        container = container_of(request)
        container.ledger.archive_meter(business_of(request), meter_id, container.clock())

    @post(
        "/{meter_id:str}/unarchive",
        status_code=200,
        summary="Unarchive a meter",
        sync_to_thread=True,
    )
    def unarchive(
        self, request: Request[Principal, Any, Any], meter_id: FromPath[str]
    ) -> MeterRead:
        container = container_of(request)
        view = container.ledger.unarchive_meter(business_of(request), meter_id, container.clock())
        return meter_read(view)

    @get("/", summary="List meters, newest first", sync_to_thread=True)
    def list_meters(
        self,
        request: Request[Principal, Any, Any],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        archived: FromQuery[bool] = False,
    ) -> Page[MeterRead]:
        container = container_of(request)
        query = MeterQuery(
            business_id=business_of(request),
            archived=archived,
            page_number=page_number,
            page_size=page_size,
        )
        return Page(items=[meter_read(v) for v in listings.meters(container.reads, query)])

    @get(
        "/{meter_id:str}/usage",
        summary="A meter's value per hour, day or month over [start, end), and the total; "
        "with group_by, per group too",
        sync_to_thread=True,
    )
    def usage(
        self,
        request: Request[Principal, Any, Any],
        meter_id: FromPath[str],
        start: FromQuery[str],
        end: FromQuery[str],
        window: WindowParam = "day",
        customer_id: FromQuery[str | None] = None,
        group_by: GroupByParam = None,
        limit: LimitParam = None,
    ) -> ExactJSONResponse:
        container = container_of(request)
        begin, finish = moment(start), moment(end)
        if begin is None or finish is None:  # pragma: no cover - both are required
            raise InvalidParameterError("start and end are required")
        if group_by is not None:
            query = GroupQuery(
                business_of(request),
                meter_id,
                customer_id,
                begin,
                finish,
                Window(window),
                group_by,
                DEFAULT_LIMIT if limit is None else limit,
            )
            spec, grouped = grouped_usage(container.ledger, container.reads, query)
            return exact(grouped_usage_read(spec, grouped))
        if limit is not None:
            raise InvalidParameterError("limit applies only with group_by", parameter="limit")
        spec, report = listings.meter_usage(
            container.ledger,
            container.reads,
            business_id=business_of(request),
            meter_id=meter_id,
            customer_id=customer_id,
            start=begin,
            end=finish,
            window=Window(window),
        )
        body = MeterUsageRead(
            meter_id=meter_id,
            customer_id=customer_id,
            start=report.start,
            end=report.end,
            window=report.window.value,
            aggregation=spec.aggregation.to_wire(),
            items=[UsageWindowRead(w.start, w.end, w.value, w.events) for w in report.windows],
            total=report.total,
            event_count=report.events,
        )
        return exact(body)


def exact(body: msgspec.Struct) -> ExactJSONResponse:
    return ExactJSONResponse(msgspec.to_builtins(body, builtin_types=(Decimal,)))

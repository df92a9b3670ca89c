"""Usage events: ``POST /events/ingest``, ``GET /events/{id}``, ``GET /events``.

Our extension: ``POST /events/{id}/void`` voids an event (it stops counting;
nothing is deleted), and every event read says whether it is voided.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import MethodNotAllowedException
from litestar.params import FromPath, FromQuery, QueryParameter

from api.limits import RateLimits
from api.response import ExactJSONResponse
from api.routes.common import PageNumber, business_of, container_of, moment
from api.schemas import (
    DuplicateRead,
    IngestCreate,
    IngestRead,
    Page,
    RejectedRead,
    UsageEventRead,
    VoidCreate,
    decode,
)
from application import listings
from application.ledger import EventInput, IngestOutcome
from application.views import EventQuery, UsageEventView
from domain.metadata import UnreadableMetadata
from infrastructure.keys import Principal
from infrastructure.metrics import record_ingest

_VOID = "/void"
EventPageSize = Annotated[
    int, QueryParameter(ge=1, le=1000, description="items per page, 1 to 1000")
]


_METADATA = msgspec.json.Decoder(Any, float_hook=Decimal)


def metadata_of(raw: msgspec.Raw) -> Any:
    """One event's metadata, decoded on its own; what cannot be read is marked, not raised."""
    if not raw:
        return None
    try:
        return _METADATA.decode(raw)
    except msgspec.DecodeError as error:
        return UnreadableMetadata(str(error).replace("$", "metadata"))
    except ArithmeticError:  # a number no Decimal can hold: 1e99999999999999999999
        return UnreadableMetadata("a number is out of range")
    except RecursionError:
        return UnreadableMetadata("nested too deeply")


def event_read(view: UsageEventView) -> UsageEventRead:
    return UsageEventRead(
        business_id=view.business_id,
        customer_id=view.customer_id,
        event_id=view.event_id,
        event_name=view.event_name,
        timestamp=view.timestamp,
        metadata=view.metadata,
        voided=view.voided,
        voided_at=view.voided_at,
        void_reason=view.void_reason,
    )


def ingest_read(outcome: IngestOutcome) -> IngestRead:
    return IngestRead(
        ingested_count=outcome.ingested_count,
        duplicates=[DuplicateRead(d.index, d.event_id) for d in outcome.duplicates],
        rejected=[RejectedRead(r.index, r.event_id, r.code, r.message) for r in outcome.rejected],
    )


class EventController(Controller):
    path = "/events"
    tags = ["usage events"]  # noqa: RUF012

    @post(
        "/ingest",
        opt={"scope": "ingest"},
        summary="Ingest 1 to 1,000 usage events; each event_id counts at most once",
        responses={},
    )
    async def ingest(self, request: Request[Principal, Any, Any]) -> Response[IngestRead]:
        data = decode(await request.body(), IngestCreate)
        limits: RateLimits = request.app.state.limits
        limits.events.take(request.user.key_id, len(data.events))
        events = [
            EventInput(
                e.event_id, e.customer_id, e.event_name, e.timestamp, metadata_of(e.metadata)
            )
            for e in data.events
        ]
        container = container_of(request)
        business = business_of(request)
        outcome = await anyio.to_thread.run_sync(
            lambda: container.ledger.ingest(business, events, container.clock())
        )
        record_ingest(outcome)
        # Only a request with no good event at all is refused as a whole.
        status = 422 if len(outcome.rejected) == len(events) else 200
        return ExactJSONResponse(ingest_read(outcome), status_code=status)

    # A path parameter, so an event_id holding '/' (sent as %2F) is found too.
    @get("/{event_id:path}", summary="Retrieve a usage event", sync_to_thread=True)
    def retrieve(
        self, request: Request[Principal, Any, Any], event_id: FromPath[str]
    ) -> UsageEventRead:
        event_id = event_id.removeprefix("/")
        view = container_of(request).ledger.usage_event(business_of(request), event_id)
        return event_read(view)

    # POST /events/{event_id}/void: the same path parameter as GET, so that ids
    # holding '/' work; the last "/void" is the action, the rest the event id.
    @post(
        "/{event_id:path}",
        status_code=200,
        summary="Void a usage event (our extension: POST /events/{event_id}/void); idempotent",
    )
    async def void(
        self, request: Request[Principal, Any, Any], event_id: FromPath[str]
    ) -> UsageEventRead:
        path = event_id.removeprefix("/")
        if not path.endswith(_VOID):
            raise MethodNotAllowedException(f"POST is allowed only on /events/{{event_id}}{_VOID}")
        body = await request.body()
        data = decode(body, VoidCreate) if body.strip() else VoidCreate()
        container = container_of(request)
        business = business_of(request)
        view = await anyio.to_thread.run_sync(
            lambda: container.ledger.void_usage_event(
                business, path.removesuffix(_VOID), reason=data.reason, now=container.clock()
            )
        )
        return event_read(view)

    @get("/", summary="List usage events, newest first", sync_to_thread=True)
    def list_events(
        self,
        request: Request[Principal, Any, Any],
        page_number: PageNumber = 0,
        page_size: EventPageSize = 10,
        customer_id: FromQuery[str | None] = None,
        event_name: FromQuery[str | None] = None,
        start: FromQuery[str | None] = None,
        end: FromQuery[str | None] = None,
        meter_id: FromQuery[str | None] = None,
        voided: FromQuery[bool | None] = None,
    ) -> Page[UsageEventRead]:
        container = container_of(request)
        business = business_of(request)
        query = EventQuery(
            business_id=business,
            customer_id=customer_id,
            event_name=event_name,
            start=moment(start),
            end=moment(end),
            page_number=page_number,
            page_size=page_size,
            voided=voided,
        )
        views = listings.events(container.ledger, container.reads, query, meter_id)
        return Page(items=[event_read(v) for v in views])

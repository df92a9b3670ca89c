"""API keys of the calling business (our extension): list, create, rotate, revoke, audit.

Admin keys only, read ones included: a key listing is operator business. The
plain key is shown once, in the answer that creates it; nothing lists it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import anyio
import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath, FromQuery

from api.routes.common import PageNumber, PageSize, business_of, container_of
from api.schemas import Page, decode
from infrastructure.key_records import AuditQuery, IssuedKey, KeyAuditEntry, KeyQuery, KeyRecord
from infrastructure.keys import MAX_GRACE, Principal

MAX_GRACE_SECONDS = int(MAX_GRACE.total_seconds())


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    scope: Literal["ingest", "read", "admin"]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


class ApiKeyRotate(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_GRACE_SECONDS)]


class ApiKeyRead(msgspec.Struct):
    id: str
    prefix: str  # the key's first characters, to tell keys apart; never the key
    scope: str
    name: str | None
    status: str  # active, expiring (rotated, in its grace), expired, revoked
    created_at: datetime
    created_by: str | None  # the admin key's id, or cli:<os user>
    last_used_at: datetime | None  # to the minute
    revoked_at: datetime | None
    revoked_by: str | None
    expires_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str  # shown this once


class ApiKeyRotated(ApiKeyCreated):
    previous: ApiKeyRead  # the rotated key, working until its expires_at


class ApiKeyAuditRead(msgspec.Struct):
    id: int
    key_id: str
    action: str  # created, rotated, revoked
    actor: str
    at: datetime
    related_key_id: str | None  # rotated: the new key; created by a rotation: the old one


def actor_of(request: Request[Principal, Any, Any]) -> str:
    """Who the audit trail names for a change made over HTTP: the calling key's id."""
    return request.user.key_id


def key_read(record: KeyRecord, now: datetime) -> ApiKeyRead:
    return ApiKeyRead(
        id=record.key_id,
        prefix=record.prefix,
        scope=record.scope,
        name=record.name,
        status=record.status(now),
        created_at=record.created_at,
        created_by=record.created_by,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
        revoked_by=record.revoked_by,
        expires_at=record.expires_at,
    )


def key_created(issued: IssuedKey, now: datetime) -> ApiKeyCreated:
    listed = msgspec.structs.asdict(key_read(issued.record, now))
    return ApiKeyCreated(**listed, key=issued.token)


def audit_read(entry: KeyAuditEntry) -> ApiKeyAuditRead:
    return ApiKeyAuditRead(
        entry.entry_id, entry.key_id, entry.action, entry.actor, entry.at, entry.related_key_id
    )


class ApiKeyController(Controller):
    path = "/api-keys"
    tags = ["api-keys"]  # noqa: RUF012
    opt = {"scope": "admin"}  # noqa: RUF012 - every handler, its GETs too (see api.auth)

    @get("/", summary="The business's API keys, newest first; never the keys", sync_to_thread=True)
    def list_keys(
        self,
        request: Request[Principal, Any, Any],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        include_inactive: FromQuery[bool] = False,
    ) -> Page[ApiKeyRead]:
        container = container_of(request)
        now = container.clock()
        query = KeyQuery(
            business_of(request), now, include_inactive, page_size, page_number * page_size
        )
        return Page(items=[key_read(r, now) for r in container.keys.keys(query)])

    @post("/", status_code=201, summary="Create an API key; the key is shown once")
    async def create(self, request: Request[Principal, Any, Any]) -> ApiKeyCreated:
        data = decode(await request.body(), ApiKeyCreate)
        container, business, actor = container_of(request), business_of(request), actor_of(request)
        now = container.clock()
        issued = await anyio.to_thread.run_sync(
            lambda: container.keys.issue(business, data.scope, now, name=data.name, actor=actor)
        )
        return key_created(issued, now)

    @get(
        "/audit",
        summary="Who created, rotated and revoked which key, and when; newest first",
        sync_to_thread=True,
    )
    def audit(
        self,
        request: Request[Principal, Any, Any],
        page_number: PageNumber = 0,
        page_size: PageSize = 10,
        key_id: FromQuery[str | None] = None,
    ) -> Page[ApiKeyAuditRead]:
        query = AuditQuery(business_of(request), key_id, page_size, page_number * page_size)
        found = container_of(request).keys.audit(query)
        return Page(items=[audit_read(entry) for entry in found])

    @get("/{key_id:str}", summary="Retrieve an API key's listing", sync_to_thread=True)
    def retrieve(self, request: Request[Principal, Any, Any], key_id: FromPath[str]) -> ApiKeyRead:
        container = container_of(request)
        return key_read(container.keys.get(business_of(request), key_id), container.clock())

    @delete(
        "/{key_id:str}",
        status_code=200,
        summary="Revoke an API key at once; again: the first revocation stands",
        description="A key cannot revoke itself (422 cannot_revoke_own_key).",
        sync_to_thread=True,
    )
    def revoke(self, request: Request[Principal, Any, Any], key_id: FromPath[str]) -> ApiKeyRead:
        container = container_of(request)
        now = container.clock()
        revoked = container.keys.revoke(business_of(request), key_id, actor_of(request), now)
        return key_read(revoked, now)

    @post(
        "/{key_id:str}/rotate",
        status_code=201,
        summary="A new key like this one; this one works for grace_seconds more",
    )
    async def rotate(
        self, request: Request[Principal, Any, Any], key_id: FromPath[str]
    ) -> ApiKeyRotated:
        data = decode(await request.body(), ApiKeyRotate)
        container, business, actor = container_of(request), business_of(request), actor_of(request)
        now = container.clock()
        grace = timedelta(seconds=data.grace_seconds)
        new, old = await anyio.to_thread.run_sync(
            lambda: container.keys.rotate(business, key_id, grace, actor, now)
        )
        created = msgspec.structs.asdict(key_created(new, now))
        return ApiKeyRotated(**created, previous=key_read(old, now))

"""Helpers shared by the route modules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request
from litestar.params import QueryParameter

from domain.usage import parse_timestamp
from infrastructure.bootstrap import Container
from infrastructure.keys import Principal

PageNumber = Annotated[int, QueryParameter(ge=0, le=1_000_000, description="0-based page number")]
PageSize = Annotated[int, QueryParameter(ge=1, le=100, description="items per page, 1 to 100")]


def container_of(request: Request[Any, Any, Any]) -> Container:
    container: Container = request.app.state.container
    return container


def business_of(request: Request[Principal, Any, Any]) -> str:
    return request.user.business_id


def moment(raw: str | None) -> datetime | None:
    """A query-string timestamp; it must name its zone."""
    return None if raw is None else parse_timestamp(raw)

"""The dashboard's credits pages."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler

HANDLERS: tuple[HTTPRouteHandler, ...] = ()

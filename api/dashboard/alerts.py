"""The dashboard's alerts pages."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler

HANDLERS: tuple[HTTPRouteHandler, ...] = ()

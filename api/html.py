"""What the HTML pages share: one Jinja2 environment, the static files, the page headers.

Templates live in ``api/templates`` (``portal/`` for the customer portal,
``dashboard/`` for the operator's dashboard), static files in ``api/static``,
served under ``/static`` without a key. Undefined names in a template are an
error (``StrictUndefined``), not an empty string.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from api import portal_format

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
PUBLIC = {"exclude_from_auth": True, "public": True}  # the key middleware and guard skip it


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
    )
    environment.filters.update(
        money=portal_format.money,
        unit_price=portal_format.unit_price,
        quantity=portal_format.quantity,
        moment=portal_format.moment,
        day=portal_format.day,
        host=portal_format.host,
    )
    environment.globals["bar_chart"] = portal_format.bar_chart
    environment.filters["plural"] = portal_format.plural
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


static_files = create_static_files_router(
    path="/static", directories=[STATIC], opt=PUBLIC, include_in_schema=False
)

"""Driving the dashboard over HTTP in tests: a signed-in client, forms with their CSRF token.

The client of the ``dashboard`` fixture sends no API key: the dashboard's session
cookie is its only credential, as in a browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from api.app import create_app
from tests.conftest import BOOTSTRAP_KEY

CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


def csrf_token(client: TestClient, path: str = "/dashboard/sign-in") -> str:  # type: ignore[type-arg]
    """The CSRF token a form on ``path`` carries (its GET also sets the CSRF cookie)."""
    page = client.get(path)
    found = CSRF_FIELD.search(page.text)
    assert found, f"no CSRF field on {path}: {page.status_code} {page.text[:300]}"
    return found.group(1)


def sign_in(client: TestClient, key: str = BOOTSTRAP_KEY) -> httpx.Response:  # type: ignore[type-arg]
    token = csrf_token(client)
    return client.post(
        "/dashboard/sign-in",
        data={"api_key": key, "_csrf_token": token},
        follow_redirects=False,
    )


def submit(
    client: TestClient,  # type: ignore[type-arg]
    path: str,
    data: Mapping[str, Any],
    *,
    form_page: str | None = None,
) -> httpx.Response:
    """POST ``data`` to ``path`` as a browser does from the form on ``form_page``."""
    token = csrf_token(client, form_page or path)
    return client.post(path, data={**data, "_csrf_token": token}, follow_redirects=False)


@pytest.fixture
def dashboard(container: Any) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """A client signed in to the dashboard with the bootstrap (admin) key."""
    with TestClient(create_app(container)) as client:
        answer = sign_in(client)
        assert answer.status_code == 303, answer.text
        yield client


@pytest.fixture
def api_client(dashboard: TestClient) -> TestClient:  # type: ignore[type-arg]
    """The same app, called over its JSON API with the bootstrap key (setting data up)."""
    api = TestClient(dashboard.app)
    api.headers["Authorization"] = f"Bearer {BOOTSTRAP_KEY}"
    return api

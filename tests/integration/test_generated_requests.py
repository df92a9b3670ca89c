"""Requests generated from the service's own OpenAPI document (schemathesis): never a 500.

Every operation of ``/schema/openapi.json`` is called with positive and negative
cases (bodies, paths and query values the schema allows and ones it does not)
against the real app on a real port with its projections running, once with a
valid admin key, once with an ingest key (mostly 403s), and once with no key or
a wrong one (401s); then ``OPTIONS`` and methods no route has, on every
path. Whatever is sent, the answer is below 500 and JSON errors
carry a code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from infrastructure.bootstrap import Container
from tests.conftest import BOOTSTRAP_KEY, LiveServer, start_live_server

EXAMPLES = 10  # per operation and mode: about 1,000 requests a key, under a minute


@pytest.fixture
def served(container: Container) -> Iterator[LiveServer]:
    live = start_live_server(container)
    yield live
    live.stop()


def authorization(kind: str, container: Container) -> dict[str, str]:
    if kind == "admin":
        return {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
    if kind == "ingest":
        key = container.keys.create("default", "ingest", container.clock())
        return {"Authorization": f"Bearer {key}"}
    if kind == "wrong":
        return {"Authorization": "Bearer ldg_a_not-a-key"}
    return {}


def examine(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
    sent: list[int],
    failures: list[str],
) -> None:
    """Call ``operation`` with cases of ``mode``; note every 500 and every error without a code."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        sent.append(response.status_code)
        if response.status_code >= 500:
            failures.append(
                f"{operation.label} {mode.value}: {response.status_code} "
                f"{response.text[:300]}\n{case.as_curl_command(headers=headers)}"
            )
        elif response.status_code >= 400 and response.headers.get("content-type", [""])[
            0
        ].startswith("application/json"):
            body = response.json()
            if not isinstance(body, dict) or not body.get("code"):
                failures.append(f"{operation.label}: an error without a code: {body}")

    call()


@pytest.mark.parametrize("kind", ["admin", "ingest", "none", "wrong"])
def test_no_generated_request_gets_a_500(served: LiveServer, kind: str) -> None:
    if kind in ("ingest", "wrong") and served.container.settings.is_postgres:
        pytest.skip("the store plays no part in refusing a key: SQLite shows it")
    document = requests.get(f"{served.base_url}/schema/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    headers = authorization(kind, served.container)
    session = requests.Session()
    failures: list[str] = []
    sent: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                examine(operation, mode, served.base_url, session, headers, sent, failures)
            except Unsatisfiable:
                # Nothing of this operation can be made invalid (no parameters, no body).
                assert mode is GenerationMode.NEGATIVE, operation.label
    # What the document does not list: a preflight and methods no route has, on every path.
    for path in document["paths"]:
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        for method in ("OPTIONS", "PUT", "TRACE"):
            response = session.request(
                method, f"{served.base_url}{concrete}", headers=headers, timeout=30
            )
            sent.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{method} {concrete}: {response.status_code} {response.text}")
    session.close()
    assert operations > 40
    assert len(sent) > operations * EXAMPLES, len(sent)
    assert not failures, "\n\n".join(failures[:10])

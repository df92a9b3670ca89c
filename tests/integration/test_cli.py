"""The ``ledger`` command: keys are created once and work; bad configuration is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from infrastructure.bootstrap import Container
from infrastructure.settings import Settings


def ledger(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )


def test_a_created_key_authenticates_for_its_business(
    settings: Settings, container: Container
) -> None:
    result = ledger("keys", "create", "--business", "acme", "--scope", "ingest",
                    env={"LEDGER_DATABASE_URL": settings.database_url})
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    principal = container.keys.authenticate(key)
    assert principal is not None
    assert (principal.business_id, principal.scope) == ("acme", "ingest")
    assert container.keys.authenticate(key + "x") is None


@pytest.mark.parametrize("business", ["", "has space", "-leading-dash"])
def test_a_bad_business_name_is_refused(settings: Settings, business: str) -> None:
    result = ledger("keys", "create", "--business", business,
                    env={"LEDGER_DATABASE_URL": settings.database_url})
    assert result.returncode == 2
    assert "business" in result.stderr


def test_bad_configuration_stops_start_up_naming_the_variable(tmp_path) -> None:
    result = ledger("serve", env={"LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite",
                                  "LEDGER_BACKDATE_WINDOW": "forever"})
    assert result.returncode == 2
    assert "LEDGER_BACKDATE_WINDOW" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

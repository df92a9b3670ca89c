"""The ``ledger`` command: keys are created once and work; bad configuration is one clear line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from application.views import CustomerQuery
from infrastructure.bootstrap import Container
from infrastructure.projections import NAMES
from infrastructure.settings import Settings
from tests.conftest import BOOTSTRAP_KEY, free_port


def ledger(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_created_key_authenticates_for_its_business(
    settings: Settings, container: Container
) -> None:
    result = ledger(
        "keys",
        "create",
        "--business",
        "acme",
        "--scope",
        "ingest",
        env={"LEDGER_DATABASE_URL": settings.database_url},
    )
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    principal = container.keys.authenticate(key, container.clock())
    assert principal is not None
    assert (principal.business_id, principal.scope) == ("acme", "ingest")
    assert container.keys.authenticate(key + "x", container.clock()) is None


@pytest.mark.parametrize("business", ["", "has space", "-leading-dash"])
def test_a_bad_business_name_is_refused(settings: Settings, business: str) -> None:
    result = ledger(
        "keys", "create", "--business", business, env={"LEDGER_DATABASE_URL": settings.database_url}
    )
    assert result.returncode == 2
    assert "business" in result.stderr


def test_bad_configuration_stops_start_up_naming_the_variable(tmp_path) -> None:
    result = ledger(
        "serve",
        env={
            "LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite",
            "LEDGER_BACKDATE_WINDOW": "forever",
        },
    )
    assert result.returncode == 2
    assert "LEDGER_BACKDATE_WINDOW" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_with_two_workers_keeps_the_projections_in_one_child(settings: Settings) -> None:
    """Two HTTP workers answer; one `projections run` child keeps listings current."""
    port = free_port()
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": settings.database_url,
        "LEDGER_BOOTSTRAP_API_KEY": BOOTSTRAP_KEY,
        "LEDGER_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "api.cli", "serve", "--workers", "2", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    headers = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
            wait_until_healthy(http)
            customer = http.post("/customers", json={"email": "a@b.co", "name": "A"}).json()
            events = [
                {"event_id": f"e{i}", "customer_id": customer["customer_id"], "event_name": "x"}
                for i in range(50)
            ]
            assert (
                http.post("/events/ingest", json={"events": events}).json()["ingested_count"] == 50
            )
            listed = http.get("/events", params={"page_size": 100}).json()["items"]
            assert len(listed) == 50
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    lines = output.decode(errors="replace").splitlines()
    assert any('"projections": "child process"' in line for line in lines), lines[:5]
    assert any("projections_stopped" in line for line in lines), lines[-5:]
    assert not [line for line in lines if "Traceback" in line or '"level": "error"' in line]
    assert server.returncode == 0


def wait_until_healthy(http: httpx.Client, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become healthy")


def test_projections_status_and_rebuild(settings: Settings, container: Container) -> None:
    """status shows each projection's lag; rebuild drops one and follows the log again."""
    env = {"LEDGER_DATABASE_URL": settings.database_url}
    customer = container.ledger.register_customer(
        "default",
        email="a@b.co",
        name="A",
        phone_number=None,
        metadata=None,
        now=container.clock(),
    )
    container.projector.catch_up()
    behind = json.loads(ledger("projections", "status", "--json", env=env).stdout)
    assert {(p["name"], p["behind"]) for p in behind} == {(name, 0) for name in NAMES}
    for name in NAMES:  # each one alone: the others keep their position
        container.views[name].reset()
        behind = json.loads(ledger("projections", "status", "--json", env=env).stdout)
        assert {p["name"]: p["behind"] for p in behind} == {n: int(n == name) for n in NAMES}
        result = ledger("projections", "rebuild", name, env=env)
        assert result.returncode == 0, result.stderr

    table = ledger("projections", "status", env=env).stdout.splitlines()
    assert table[0].split() == ["projection", "position", "log", "head", "behind"]
    assert [line.split()[0] for line in table[1:]] == list(NAMES)
    assert ledger("projections", "rebuild", env=env).returncode == 0
    table = ledger("projections", "status", env=env).stdout.splitlines()
    assert all(line.split()[-1] == "0" for line in table[1:])
    [listed] = container.reads.catalogue.list_customers(CustomerQuery("default"))
    assert listed.customer_id == customer.customer_id

    unknown = ledger("projections", "rebuild", "nope", env=env)
    assert unknown.returncode == 2
    assert "usage_log" in unknown.stderr


def test_the_demo_of_the_readme_runs_on_a_fresh_directory(tmp_path) -> None:
    """The README's first command: ingest, duplicates, listing, a late meter's usage, a bill."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "demo", "--port", str(free_port())],
        cwd=tmp_path,
        env={**env, "LEDGER_DEMO_EXIT": "1", "PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ingested 5 events; rejected: #5 timestamp_out_of_window" in result.stdout
    assert "ingested 0, 5 reported as duplicates" in result.stdout
    assert "2004 tokens from 2 events" in result.stdout
    # 2,004 tokens: 1,000 free, 500 on credits, 504 at half a cent, plus $5.00
    assert "chargeable 1004, credits 500, billed 504 -> total 752 cents" in result.stdout
    assert (tmp_path / "var" / "ledger.sqlite").exists()


def test_billing_close_finalizes_due_cycles_once(settings: Settings) -> None:
    """`ledger billing close` (for cron): due cycles finalized; a second run adds nothing."""
    from datetime import timedelta  # noqa: PLC0415

    from application.subscriptions import create_subscription  # noqa: PLC0415
    from infrastructure.bootstrap import build, utc_now  # noqa: PLC0415

    env = {"LEDGER_DATABASE_URL": settings.database_url, "LEDGER_BACKDATE_WINDOW": "P40D"}
    container = build(Settings.from_env(env))
    try:
        now = utc_now()
        customer = container.ledger.register_customer(
            "default", email="a@b.co", name="A", phone_number=None, metadata=None, now=now
        )
        product = container.ledger.create_product(
            "default",
            name="Plan",
            description=None,
            tax_category="saas",
            metadata=None,
            price={
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 700,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
            },
            now=now,
        )
        create_subscription(
            container.ledger,
            "default",
            customer_id=customer.customer_id,
            product_id=product.product_id,
            quantity=1,
            billing={"country": "US"},
            metadata=None,
            payment={},
            start_date=now - timedelta(days=35),
            now=now,
        )
    finally:
        container.close()
    first = ledger("billing", "close", env=env)
    assert first.returncode == 0, first.stderr
    assert "finalized 1 invoice(s)" in first.stderr
    assert "700 USD" in first.stdout
    second = ledger("billing", "close", env=env)
    assert "finalized 0 invoice(s)" in second.stderr

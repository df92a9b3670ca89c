"""``ledger keys create|list|revoke|rotate|audit`` on both stores, as an operator runs them."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from api.cli.keys import grace_of
from infrastructure.bootstrap import Container
from infrastructure.settings import ConfigError, Settings


def ledger(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "keys", *args],
        env={**os.environ, "LEDGER_DATABASE_URL": settings.database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def created(settings: Settings, *args: str) -> dict:
    result = ledger(settings, "create", "--json", *args)
    assert result.returncode == 0, result.stderr
    made: dict = json.loads(result.stdout)
    return made


def test_create_prints_a_read_key_once_and_names_its_id(settings, container, clock) -> None:
    result = ledger(settings, "create", "--business", "acme", "--scope", "read", "--name", "bi")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    principal = container.keys.authenticate(token, clock.now)
    assert principal is not None
    assert (principal.business_id, principal.scope) == ("acme", "read")
    assert f"created {principal.key_id}, a read key" in result.stderr
    assert token not in result.stderr


def test_list_shows_ids_and_never_a_key(settings) -> None:
    ours = created(settings, "--business", "acme", "--name", "edge")
    theirs = created(settings, "--business", "other", "--scope", "ingest")
    table = ledger(settings, "list")
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header[:6] == ["id", "prefix", "business", "scope", "name", "status"]
    assert ours["id"] in table.stdout
    assert theirs["id"] in table.stdout
    assert ours["key"] not in table.stdout
    assert theirs["key"] not in table.stdout
    only = json.loads(ledger(settings, "list", "--business", "acme", "--json").stdout)
    assert [(k["id"], k["name"], k["status"]) for k in only] == [(ours["id"], "edge", "active")]
    assert "key" not in only[0]


def test_revoke_holds_at_once_and_the_audit_names_the_os_user(
    settings, container: Container, clock
) -> None:
    made = created(settings, "--business", "acme", "--scope", "ingest")
    result = ledger(settings, "revoke", made["id"])
    assert result.returncode == 0, result.stderr
    assert f"{made['id']} (ingest, business 'acme') revoked at" in result.stdout
    assert container.keys.authenticate(made["key"], clock.now) is None
    assert ledger(settings, "list").stdout.strip() == "(none)"
    assert made["id"] in ledger(settings, "list", "--all").stdout
    trail = json.loads(ledger(settings, "audit", "--json").stdout)
    user = f"cli:{getpass.getuser()}"
    assert [(e["key_id"], e["action"], e["actor"]) for e in trail] == [
        (made["id"], "revoked", user),
        (made["id"], "created", user),
    ]


def test_rotate_gives_a_new_key_and_the_old_one_works_for_the_grace(
    settings, container: Container
) -> None:
    old = created(settings, "--business", "acme", "--scope", "ingest", "--name", "edge")
    before = datetime.now(UTC)
    result = ledger(settings, "rotate", old["id"], "--grace", "1h")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    new = container.keys.authenticate(token, before)
    assert new is not None
    assert (new.business_id, new.scope) == ("acme", "ingest")
    expires = container.keys.get(None, old["id"]).expires_at
    assert expires is not None
    assert before + timedelta(hours=1) <= expires <= datetime.now(UTC) + timedelta(hours=1)
    assert container.keys.authenticate(old["key"], expires - timedelta(seconds=1)) is not None
    assert container.keys.authenticate(old["key"], expires) is None
    assert f"to replace {old['id']}, which works until" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rotate", "key_0000000000000000", "--grace", "1h"), "no API key"),
        (("rotate", "KEY", "--grace", "forever"), "--grace='forever' is not a duration"),
        (("rotate", "KEY", "--grace", "P31D"), "grace_seconds: from 0 to 2592000"),
        (("revoke", "key_0000000000000000"), "no API key"),
        (("create", "--business", "acme", "--name", "a\tb"), "name: 1 to 100 printable"),
        (("list", "--limit", "0"), "a page holds 1 to 1000"),
    ],
)
def test_a_refused_command_exits_2_with_one_line(settings, args, message) -> None:
    key_id = created(settings, "--business", "acme")["id"]
    result = ledger(settings, *(key_id if arg == "KEY" else arg for arg in args))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(ledger(settings, "list", "--json").stdout)[0]["expires_at"] is None


def test_the_audit_table_shows_a_rotation_both_ways(settings) -> None:
    old = created(settings, "--business", "acme")
    new = json.loads(ledger(settings, "rotate", old["id"], "--grace", "0", "--json").stdout)
    table = ledger(settings, "audit", "--business", "acme").stdout.splitlines()
    assert table[0].split() == ["at", "business", "key", "action", "actor", "related", "key"]
    rows = [line.split()[3:7] for line in table[1:]]
    user = f"cli:{getpass.getuser()}"
    assert rows == [
        [old["id"], "rotated", user, new["id"]],
        [new["id"], "created", user, old["id"]],
        [old["id"], "created", user, "-"],
    ]
    assert new["previous"]["status"] == "expired"


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("1h", 3600), ("30m", 1800), ("2d", 172_800), ("1w", 604_800), ("45s", 45), ("90", 90),
     ("PT2H", 7200)],
)  # fmt: skip
def test_a_grace_is_read_in_short_or_iso_form(raw, seconds) -> None:
    assert grace_of(raw) == timedelta(seconds=seconds)


def test_a_grace_of_no_duration_is_refused() -> None:
    with pytest.raises(ConfigError, match="--grace='1 hour' is not a duration"):
        grace_of("1 hour")

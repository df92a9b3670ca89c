"""The key store on both stores: ids, revocation, rotation and its grace, audit, last use."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest

from application.errors import InvalidRequestError, NotFoundError
from infrastructure.bootstrap import Container
from infrastructure.key_records import (
    AuditQuery,
    KeyAlreadyRotatedError,
    KeyQuery,
    KeyRevokedError,
    OwnKeyRevocationError,
)
from infrastructure.settings import Settings
from tests.conftest import FakeClock

ADMIN = "key_0123456789abcdef"  # the admin key a test acts as


def listed(container: Container, clock: FakeClock, **options: object) -> list[str]:
    query = KeyQuery(options.pop("business_id", "default"), clock.now, **options)
    return [record.key_id for record in container.keys.keys(query)]


def trail(container: Container, business_id: str | None = "default") -> list[tuple[str, ...]]:
    """(key, action, actor, related key) of each audit entry, oldest first."""
    found = container.keys.audit(AuditQuery(business_id))
    return [(e.key_id, e.action, e.actor, e.related_key_id or "-") for e in reversed(found)]


def test_a_key_has_a_public_id_that_says_nothing_of_it(container, clock) -> None:
    issued = container.keys.issue("default", "ingest", clock.now, name="edge")
    principal = container.keys.authenticate(issued.token, clock.now)
    assert principal is not None
    assert principal.key_id == issued.record.key_id
    assert issued.record.key_id.startswith("key_")
    assert issued.record.key_id[4:] not in issued.token
    assert issued.record.key_id[4:] not in hashlib.sha256(issued.token.encode()).hexdigest()


@pytest.mark.parametrize(("scope", "start"), [("ingest", "ldg_i_"), ("read", "ldg_r_")])
def test_a_key_begins_with_its_scope_letter(container, clock, scope, start) -> None:
    issued = container.keys.issue("default", scope, clock.now)
    assert issued.token.startswith(start)
    assert issued.record.prefix == issued.token[:12]


@pytest.mark.parametrize(
    ("business", "scope", "name", "match"),
    [
        ("has space", "admin", None, "business must be"),
        ("default", "owner", None, "scope must be one of ingest, read, admin"),
        ("default", "read", "", "name: 1 to 100"),
        ("default", "read", "x" * 101, "name: 1 to 100"),
        ("default", "read", "tab\there", "name: 1 to 100 printable"),
    ],
)
def test_a_bad_new_key_is_refused(container, clock, business, scope, name, match) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        container.keys.issue(business, scope, clock.now, name=name)


def test_the_table_holds_neither_the_key_nor_more_than_its_hash(container, clock) -> None:
    token = container.keys.create("default", "admin", clock.now)
    with container.ledger.recorder.datastore.transaction(commit=False) as curs:
        curs.execute("SELECT * FROM api_keys")
        values = [str(row[col]) for row in curs.fetchall() for col in row.keys()]  # noqa: SIM118
    assert all(token not in value for value in values)
    assert [value for value in values if len(value) >= 8 and value in token] == [token[:12]]


def test_a_revoked_key_is_refused_at_once(container, clock) -> None:
    issued = container.keys.issue("default", "ingest", clock.now)
    container.keys.revoke("default", issued.record.key_id, ADMIN, clock.now)
    assert container.keys.authenticate(issued.token, clock.now) is None


def test_a_revoke_in_one_process_holds_at_once_in_another(make_container, clock) -> None:
    one, other = make_container(), make_container()
    issued = one.keys.issue("default", "ingest", clock.now)
    assert other.keys.authenticate(issued.token, clock.now) is not None
    one.keys.revoke(None, issued.record.key_id, "cli:ops", clock.now)
    assert other.keys.authenticate(issued.token, clock.now) is None


def test_revoking_again_keeps_the_first_revocation(container, clock) -> None:
    key_id = container.keys.issue("default", "read", clock.now).record.key_id
    first = container.keys.revoke("default", key_id, ADMIN, clock.now)
    clock.advance(timedelta(hours=1))
    again = container.keys.revoke("default", key_id, "cli:someone-else", clock.now)
    assert (again.revoked_at, again.revoked_by) == (first.revoked_at, ADMIN)
    assert [a for _, a, _, _ in trail(container)] == ["created", "revoked"]


def test_a_key_cannot_revoke_itself(container, clock) -> None:
    issued = container.keys.issue("default", "admin", clock.now)
    with pytest.raises(OwnKeyRevocationError, match="a key cannot revoke itself"):
        container.keys.revoke("default", issued.record.key_id, issued.record.key_id, clock.now)
    assert container.keys.authenticate(issued.token, clock.now) is not None


@pytest.mark.parametrize("key_id", ["key_0000000000000000", "nope", "key_\x00", "KEY_0123"])
def test_an_unknown_or_malformed_id_is_not_found(container, clock, key_id) -> None:
    with pytest.raises(NotFoundError, match="no API key"):
        container.keys.revoke("default", key_id, ADMIN, clock.now)
    with pytest.raises(NotFoundError, match="no API key"):
        container.keys.rotate("default", key_id, timedelta(0), ADMIN, clock.now)


def test_another_business_key_is_not_found_and_untouched(container, clock) -> None:
    issued = container.keys.issue("acme", "ingest", clock.now)
    with pytest.raises(NotFoundError, match="no API key"):
        container.keys.revoke("default", issued.record.key_id, ADMIN, clock.now)
    with pytest.raises(NotFoundError, match="no API key"):
        container.keys.rotate("default", issued.record.key_id, timedelta(0), ADMIN, clock.now)
    assert container.keys.get("acme", issued.record.key_id).expires_at is None
    assert container.keys.authenticate(issued.token, clock.now) is not None


def test_a_rotation_makes_a_key_like_the_old_one(container, clock) -> None:
    old = container.keys.issue("acme", "ingest", clock.now, name="edge")
    new, previous = container.keys.rotate(
        "acme", old.record.key_id, timedelta(hours=1), ADMIN, clock.now
    )
    principal = container.keys.authenticate(new.token, clock.now)
    assert principal is not None
    assert (principal.business_id, principal.scope) == ("acme", "ingest")
    assert (new.record.name, new.record.created_by) == ("edge", ADMIN)
    assert new.record.key_id != old.record.key_id
    assert previous.expires_at == clock.now + timedelta(hours=1)
    assert previous.status(clock.now) == "expiring"


def test_the_old_key_works_through_its_grace_and_not_after(container, clock) -> None:
    old = container.keys.issue("default", "ingest", clock.now)
    container.keys.rotate("default", old.record.key_id, timedelta(hours=1), ADMIN, clock.now)
    clock.advance(timedelta(minutes=59, seconds=59))
    assert container.keys.authenticate(old.token, clock.now) is not None
    clock.advance(timedelta(seconds=1))
    assert container.keys.authenticate(old.token, clock.now) is None
    assert container.keys.get(None, old.record.key_id).status(clock.now) == "expired"


def test_a_rotation_without_grace_ends_the_old_key_at_once(container, clock) -> None:
    old = container.keys.issue("default", "ingest", clock.now)
    new, _ = container.keys.rotate("default", old.record.key_id, timedelta(0), ADMIN, clock.now)
    assert container.keys.authenticate(old.token, clock.now) is None
    assert container.keys.authenticate(new.token, clock.now) is not None


def test_a_key_is_rotated_once(container, clock) -> None:
    key_id = container.keys.issue("default", "ingest", clock.now).record.key_id
    container.keys.rotate("default", key_id, timedelta(hours=1), ADMIN, clock.now)
    with pytest.raises(KeyAlreadyRotatedError, match="was rotated already; it expires at"):
        container.keys.rotate("default", key_id, timedelta(0), ADMIN, clock.now)
    assert container.keys.get(None, key_id).expires_at == clock.now + timedelta(hours=1)


def test_a_revoked_key_cannot_be_rotated(container, clock) -> None:
    key_id = container.keys.issue("default", "ingest", clock.now).record.key_id
    container.keys.revoke("default", key_id, ADMIN, clock.now)
    with pytest.raises(KeyRevokedError, match="is revoked"):
        container.keys.rotate("default", key_id, timedelta(0), ADMIN, clock.now)
    assert len(listed(container, clock, include_inactive=True)) == 1


@pytest.mark.parametrize("grace", [timedelta(days=30, seconds=1), timedelta(seconds=-1)])
def test_a_grace_out_of_range_is_refused(container, clock, grace) -> None:
    key_id = container.keys.issue("default", "ingest", clock.now).record.key_id
    with pytest.raises(InvalidRequestError, match="grace_seconds: from 0 to 2592000"):
        container.keys.rotate("default", key_id, grace, ADMIN, clock.now)
    assert container.keys.get(None, key_id).expires_at is None


def test_a_listing_leaves_out_revoked_and_expired_keys_unless_asked(container, clock) -> None:
    kept = container.keys.issue("default", "read", clock.now).record.key_id
    gone = container.keys.issue("default", "read", clock.now).record.key_id
    rotated = container.keys.issue("default", "read", clock.now).record.key_id
    container.keys.revoke("default", gone, ADMIN, clock.now)
    new, _ = container.keys.rotate("default", rotated, timedelta(minutes=5), ADMIN, clock.now)
    assert set(listed(container, clock)) == {kept, rotated, new.record.key_id}
    clock.advance(timedelta(minutes=5))
    assert set(listed(container, clock)) == {kept, new.record.key_id}
    assert len(listed(container, clock, include_inactive=True)) == 4


def test_a_listing_is_one_business_newest_first_in_pages(container, clock) -> None:
    made = []
    for _ in range(5):
        made.append(container.keys.issue("default", "read", clock.now).record.key_id)
        clock.advance(timedelta(seconds=1))
    container.keys.issue("acme", "read", clock.now)
    pages = [listed(container, clock, limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [key for page in pages for key in page] == made[::-1]
    assert listed(container, clock, business_id="acme") != []
    assert len(listed(container, clock, business_id=None)) == 6


def test_the_audit_trail_says_who_did_what_and_when(container, clock) -> None:
    first = container.keys.issue("default", "ingest", clock.now, actor="cli:ops").record.key_id
    clock.advance(timedelta(minutes=1))
    new, _ = container.keys.rotate("default", first, timedelta(hours=1), ADMIN, clock.now)
    second = new.record.key_id
    clock.advance(timedelta(minutes=1))
    container.keys.revoke(None, first, "cli:ops", clock.now)
    assert trail(container) == [
        (first, "created", "cli:ops", "-"),
        (second, "created", ADMIN, first),
        (first, "rotated", ADMIN, second),
        (first, "revoked", "cli:ops", "-"),
    ]
    entries = container.keys.audit(AuditQuery("default", key_id=first))
    minutes = [(e.at - entries[-1].at) // timedelta(minutes=1) for e in entries]
    assert minutes == [2, 1, 0]


def test_the_audit_of_one_business_shows_nothing_of_another(container, clock) -> None:
    container.keys.issue("acme", "admin", clock.now)
    assert trail(container, "default") == []
    assert len(trail(container, None)) == 1
    assert container.keys.audit(AuditQuery("acme", key_id="key_\x00")) == []


def test_last_use_is_written_at_most_once_a_minute(container, clock) -> None:
    issued = container.keys.issue("default", "ingest", clock.now)
    assert container.keys.get(None, issued.record.key_id).last_used_at is None
    started = clock.now
    for seconds in (0, 30, 59):
        clock.now = started + timedelta(seconds=seconds)
        container.keys.authenticate(issued.token, clock.now)
        assert container.keys.get(None, issued.record.key_id).last_used_at == started
    clock.now = started + timedelta(seconds=61)
    container.keys.authenticate(issued.token, clock.now)
    assert container.keys.get(None, issued.record.key_id).last_used_at == clock.now


def test_last_use_is_not_written_again_by_a_process_that_sees_it_fresh(
    make_container, clock
) -> None:
    one, other = make_container(), make_container()
    issued = one.keys.issue("default", "ingest", clock.now)
    one.keys.authenticate(issued.token, clock.now)
    written = clock.now
    clock.advance(timedelta(seconds=30))
    other.keys.authenticate(issued.token, clock.now)
    assert other.keys.get(None, issued.record.key_id).last_used_at == written


def _execute(settings: Settings, *statements: str) -> None:
    if settings.is_postgres:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    with sqlite3.connect(settings.sqlite_path) as conn:
        for statement in statements:
            conn.execute(statement)


OLD_TOKEN = "ldg_i_an-old-key-made-before-key-ids-0123456789"
OLD_HASH = hashlib.sha256(OLD_TOKEN.encode()).hexdigest()


@pytest.mark.empty_database  # it makes the first version of the table itself
def test_a_table_of_the_first_version_is_migrated_in_place(
    settings: Settings, make_container: Callable[..., Container], clock
) -> None:
    _execute(
        settings,
        "CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, key_prefix TEXT NOT NULL, "
        "business_id TEXT NOT NULL, scope TEXT NOT NULL, created_at BIGINT NOT NULL)",
        f"INSERT INTO api_keys VALUES ('{OLD_HASH}', 'ldg_i_an-o', 'acme', 'ingest', 1000000)",
    )
    container = make_container()
    principal = container.keys.authenticate(OLD_TOKEN, clock.now)
    assert principal is not None
    assert principal.key_id == f"key_{OLD_HASH[:16]}"
    assert trail(container, "acme") == [(principal.key_id, "created", "unknown", "-")]
    container.keys.revoke("acme", principal.key_id, "cli:ops", clock.now)
    assert container.keys.authenticate(OLD_TOKEN, clock.now) is None


@pytest.mark.empty_database  # it makes the first version of the table itself
def test_a_migration_run_again_changes_nothing(
    settings: Settings, make_container: Callable[..., Container], clock
) -> None:
    _execute(
        settings,
        "CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, key_prefix TEXT NOT NULL, "
        "business_id TEXT NOT NULL, scope TEXT NOT NULL, created_at BIGINT NOT NULL)",
        f"INSERT INTO api_keys VALUES ('{OLD_HASH}', 'ldg_i_an-o', 'acme', 'ingest', 1000000)",
    )
    make_container()
    again = make_container()
    assert len(trail(again, "acme")) == 1
    assert listed(again, clock, business_id="acme") == [f"key_{OLD_HASH[:16]}"]

"""The key store's reads: one key, a page of keys, a page of the audit trail.

Each takes the caller's cursor, so a write transaction reads what it just wrote.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from application.errors import NotFoundError
from infrastructure.codec import from_micros, to_micros
from infrastructure.key_records import (
    AuditQuery,
    KeyAuditEntry,
    KeyQuery,
    KeyRecord,
    Scope,
    check_key_id,
    check_page,
    is_key_id,
)

_COLUMNS = (
    "key_id, key_prefix, business_id, scope, name, created_at, created_by, "
    "last_used_at, revoked_at, revoked_by, expires_at"
)
_AUDIT_COLUMNS = "entry_id, business_id, key_id, action, actor, at, related_key_id"


def read_key(curs: Any, mark: str, business_id: str | None, key_id: str) -> KeyRecord:
    """The key ``key_id`` of ``business_id`` (None: of any); another business's is not found."""
    check_key_id(key_id)
    statement = f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?"  # noqa: S608
    curs.execute(statement.replace("?", mark), (key_id,))
    row = curs.fetchone()
    if row is None or business_id not in (None, row["business_id"]):
        raise NotFoundError(f"no API key {key_id!r}")  # another business's: the same 404
    return record_of(row)


def read_keys(curs: Any, mark: str, query: KeyQuery) -> list[KeyRecord]:
    """A page of keys, newest first; revoked and expired ones only if asked for."""
    check_page(query.limit, query.offset)
    where, params = ["1 = 1"], list[object]()
    if query.business_id is not None:
        where.append("business_id = ?")
        params.append(query.business_id)
    if not query.include_inactive:
        where.append("revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)")
        params.append(to_micros(query.now))
    statement = (
        f"SELECT {_COLUMNS} FROM api_keys WHERE {' AND '.join(where)} "  # noqa: S608
        "ORDER BY created_at DESC, key_id DESC LIMIT ? OFFSET ?"
    )
    curs.execute(statement.replace("?", mark), [*params, query.limit, query.offset])
    return [record_of(row) for row in curs.fetchall()]


def read_audit(curs: Any, mark: str, query: AuditQuery) -> list[KeyAuditEntry]:
    """The trail, newest first: who created, rotated or revoked which key, and when."""
    check_page(query.limit, query.offset)
    if query.key_id is not None and not is_key_id(query.key_id):
        return []  # no key has that id (and the store is never asked about it)
    where, params = ["1 = 1"], list[object]()
    for column, value in (("business_id", query.business_id), ("key_id", query.key_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    statement = (
        f"SELECT {_AUDIT_COLUMNS} FROM api_key_audit "  # noqa: S608
        f"WHERE {' AND '.join(where)} ORDER BY entry_id DESC LIMIT ? OFFSET ?"
    )
    curs.execute(statement.replace("?", mark), [*params, query.limit, query.offset])
    return [audit_entry_of(row) for row in curs.fetchall()]


def _moment(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(int(micros))


def record_of(row: Any) -> KeyRecord:
    return KeyRecord(
        key_id=str(row["key_id"]),
        prefix=str(row["key_prefix"]),
        business_id=str(row["business_id"]),
        scope=cast(Scope, row["scope"]),
        name=row["name"],
        created_at=from_micros(int(row["created_at"])),
        created_by=row["created_by"],
        last_used_at=_moment(row["last_used_at"]),
        revoked_at=_moment(row["revoked_at"]),
        revoked_by=row["revoked_by"],
        expires_at=_moment(row["expires_at"]),
    )


def audit_entry_of(row: Any) -> KeyAuditEntry:
    return KeyAuditEntry(
        entry_id=int(row["entry_id"]),
        business_id=str(row["business_id"]),
        key_id=str(row["key_id"]),
        action=row["action"],
        actor=str(row["actor"]),
        at=from_micros(int(row["at"])),
        related_key_id=row["related_key_id"],
    )

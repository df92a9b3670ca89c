"""The API keys' tables, and the in-place migration of a ledger made before key life cycles.

Every database takes one path: the first version of ``api_keys`` is created if
missing, then each later column is added if missing. A fresh store and an old
one end with the same table; old rows get a public id, derived from their hash
in one statement (so a migration racing another, or repeated, writes the same
ids), and a ``created`` audit entry by ``unknown``.
"""

from __future__ import annotations

from typing import Any

CREATE_KEYS = (
    "CREATE TABLE IF NOT EXISTS api_keys ("
    "key_hash TEXT PRIMARY KEY, key_prefix TEXT NOT NULL, business_id TEXT NOT NULL, "
    "scope TEXT NOT NULL, created_at BIGINT NOT NULL)"
)
ADDED_COLUMNS = (  # added to api_keys after its first version; times in microseconds
    ("key_id", "TEXT"),
    ("name", "TEXT"),
    ("created_by", "TEXT"),
    ("last_used_at", "BIGINT"),
    ("revoked_at", "BIGINT"),
    ("revoked_by", "TEXT"),
    ("expires_at", "BIGINT"),
)
_AUDIT_COLUMNS = (
    "business_id TEXT NOT NULL, key_id TEXT NOT NULL, action TEXT NOT NULL, "
    "actor TEXT NOT NULL, at BIGINT NOT NULL, related_key_id TEXT, "
    "UNIQUE (key_id, action)"  # a key is created, rotated and revoked once each
)
CREATE_AUDIT = {
    "sqlite": "CREATE TABLE IF NOT EXISTS api_key_audit ("
    f"entry_id INTEGER PRIMARY KEY AUTOINCREMENT, {_AUDIT_COLUMNS})",
    "postgres": "CREATE TABLE IF NOT EXISTS api_key_audit ("
    f"entry_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {_AUDIT_COLUMNS})",
}
INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS api_keys_key_id ON api_keys (key_id)",
    "CREATE INDEX IF NOT EXISTS api_keys_business ON api_keys (business_id, created_at)",
    "CREATE INDEX IF NOT EXISTS api_key_audit_business ON api_key_audit (business_id, entry_id)",
)
# A key made before ids were stored is known as key_ and the first 16 hex digits of its hash.
_BACKFILL = (
    "INSERT INTO api_key_audit (business_id, key_id, action, actor, at) "
    "SELECT business_id, 'key_' || substr(key_hash, 1, 16), 'created', 'unknown', created_at "
    "FROM api_keys WHERE key_id IS NULL ON CONFLICT DO NOTHING",
    "UPDATE api_keys SET key_id = 'key_' || substr(key_hash, 1, 16), created_by = 'unknown' "
    "WHERE key_id IS NULL",
)


def create_key_tables(curs: Any, *, postgres: bool) -> None:
    """Create or migrate both tables in the caller's transaction (under the schema lock)."""
    curs.execute(CREATE_KEYS)
    curs.execute(CREATE_AUDIT["postgres" if postgres else "sqlite"])
    present = _columns(curs, postgres=postgres)
    for column, kind in ADDED_COLUMNS:
        if column not in present:
            curs.execute(f"ALTER TABLE api_keys ADD COLUMN {column} {kind}")
    for statement in INDEXES:
        curs.execute(statement)
    for statement in _BACKFILL:  # an index look-up finding nothing, once migrated
        curs.execute(statement)


def _columns(curs: Any, *, postgres: bool) -> set[str]:
    if postgres:
        curs.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'api_keys' AND table_schema = current_schema()"
        )
        return {str(row["column_name"]) for row in curs.fetchall()}
    curs.execute("PRAGMA table_info(api_keys)")
    return {str(row["name"]) for row in curs.fetchall()}

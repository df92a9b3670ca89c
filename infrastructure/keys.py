"""API keys: stored as SHA-256 hashes, shown once, compared in constant time; revocable.

A key is known by a public id (``key_`` and 16 hex digits) that says nothing of
the key. Every request reads the key's row (no cache in the process), so a
revoke or an expiry holds at once on every server process. ``last_used_at`` is
written at most once a minute per key and process, and not at all when another
process wrote it within that minute: ingest, the hot path, rarely writes.
Creations, rotations and revocations are kept in an append-only audit table.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any, cast

from application.errors import InvalidRequestError
from infrastructure.codec import to_micros
from infrastructure.key_reads import read_audit, read_key, read_keys
from infrastructure.key_records import (
    DEFAULT_BUSINESS,
    SCOPES,
    AuditQuery,
    IssuedKey,
    KeyAuditEntry,
    KeyQuery,
    KeyRecord,
    OwnKeyRevocationError,
    Principal,
    Scope,
    TouchMemo,
    check_key_id,
    check_new_key,
    new_record,
    rotation_refused,
)
from infrastructure.key_tables import create_key_tables

__all__ = ["DEFAULT_BUSINESS", "MAX_GRACE", "SCOPES", "KeyStore", "Principal", "Scope"]

MAX_GRACE = timedelta(days=30)  # the longest an old key works on after a rotation
TOUCH_EVERY = 60_000_000  # microseconds between two writes of one key's last_used_at
TOUCH_MEMO_LIMIT = 10_000  # keys remembered per process


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    """Keys live in the ledger's own database; ``mark`` is its placeholder.

    ``business_id=None`` on a method means every business: the operator's
    command line. Over HTTP it is always the calling key's business.
    """

    def __init__(self, datastore: Any, mark: str, bootstrap_key: str | None) -> None:
        self._datastore = datastore
        self._mark = mark
        self._bootstrap = _digest(bootstrap_key) if bootstrap_key else None
        self._touched = TouchMemo(TOUCH_EVERY, TOUCH_MEMO_LIMIT)
        with self._datastore.transaction(commit=True) as curs:
            create_key_tables(curs, postgres=mark != "?")

    def _q(self, statement: str) -> str:
        return statement.replace("?", self._mark)

    def create(
        self,
        business_id: str,
        scope: Scope,
        now: datetime,
        *,
        name: str | None = None,
        actor: str = "system",
    ) -> str:
        """Make a key for ``business_id``; the plain key is returned once, never stored."""
        return self.issue(business_id, scope, now, name=name, actor=actor).token

    def issue(
        self,
        business_id: str,
        scope: Scope,
        now: datetime,
        *,
        name: str | None = None,
        actor: str = "system",
    ) -> IssuedKey:
        """A new key and its listing; ``actor`` (who asked) goes to the audit trail."""
        check_new_key(business_id, scope, name)
        with self._datastore.transaction(commit=True) as curs:
            return self._insert(curs, business_id, scope, name, actor, now)

    def _insert(
        self,
        curs: Any,
        business_id: str,
        scope: str,
        name: str | None,
        actor: str,
        now: datetime,
        rotated_from: str | None = None,
    ) -> IssuedKey:
        token = f"ldg_{scope[0]}_{secrets.token_urlsafe(32)}"
        key_id = f"key_{secrets.token_hex(8)}"
        at = to_micros(now)
        curs.execute(
            self._q(
                "INSERT INTO api_keys (key_hash, key_prefix, business_id, scope, created_at, "
                "key_id, name, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (_digest(token), token[:12], business_id, scope, at, key_id, name, actor),
        )
        self._audit(curs, business_id, key_id, "created", actor, at, rotated_from)
        return IssuedKey(
            token, new_record(key_id, token[:12], business_id, scope, name, now, actor)
        )

    def _audit(
        self,
        curs: Any,
        business_id: str,
        key_id: str,
        action: str,
        actor: str,
        at: int,
        related: str | None = None,
    ) -> None:
        curs.execute(
            self._q(
                "INSERT INTO api_key_audit (business_id, key_id, action, actor, at, "
                "related_key_id) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            (business_id, key_id, action, actor, at, related),
        )

    def authenticate(self, token: str, now: datetime) -> Principal | None:
        """Who ``token`` acts for at ``now``; None if unknown, revoked or expired."""
        digest = _digest(token)
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap):
            return Principal(DEFAULT_BUSINESS, "admin", "bootstrap")
        statement = (
            "SELECT key_hash, key_id, business_id, scope, last_used_at, revoked_at, expires_at "
            "FROM api_keys WHERE key_hash = ?"
        )
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(self._q(statement), (digest,))
            row = curs.fetchone()
        if row is None or not hmac.compare_digest(str(row["key_hash"]), digest):
            return None
        at = to_micros(now)
        expires_at = row["expires_at"]
        if row["revoked_at"] is not None or (expires_at is not None and expires_at <= at):
            return None
        key_id = str(row["key_id"])
        self._touch(key_id, row["last_used_at"], at)
        return Principal(str(row["business_id"]), cast(Scope, row["scope"]), key_id)

    def principal(self, key_id: str, now: datetime) -> Principal | None:
        """Who the key ``key_id`` acts for at ``now`` (a dashboard session holds the id, never
        the key); None once it is revoked, expired or unknown."""
        if key_id == "bootstrap":
            return None if self._bootstrap is None else Principal(DEFAULT_BUSINESS, "admin", key_id)
        statement = (
            "SELECT business_id, scope, revoked_at, expires_at FROM api_keys WHERE key_id = ?"
        )
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(self._q(statement), (key_id,))
            row = curs.fetchone()
        if row is None or row["revoked_at"] is not None:
            return None
        expires_at = row["expires_at"]
        if expires_at is not None and expires_at <= to_micros(now):
            return None
        return Principal(str(row["business_id"]), cast(Scope, row["scope"]), key_id)

    def _touch(self, key_id: str, stored: int | None, at: int) -> None:
        if not self._touched.due(key_id, stored, at):
            return
        try:
            with self._datastore.transaction(commit=True) as curs:
                curs.execute(
                    self._q(
                        "UPDATE api_keys SET last_used_at = ? "
                        "WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at < ?)"
                    ),
                    (at, key_id, at),
                )
        except Exception:
            self._touched.forget(key_id)  # the next request tries again
            raise

    def get(self, business_id: str | None, key_id: str) -> KeyRecord:
        with self._datastore.transaction(commit=False) as curs:
            return read_key(curs, self._mark, business_id, key_id)

    def keys(self, query: KeyQuery) -> list[KeyRecord]:
        """A page of keys, newest first; revoked and expired ones only if asked for."""
        with self._datastore.transaction(commit=False) as curs:
            return read_keys(curs, self._mark, query)

    def audit(self, query: AuditQuery) -> list[KeyAuditEntry]:
        """The trail, newest first: who created, rotated or revoked which key, and when."""
        with self._datastore.transaction(commit=False) as curs:
            return read_audit(curs, self._mark, query)

    def revoke(self, business_id: str | None, key_id: str, actor: str, now: datetime) -> KeyRecord:
        """Revoke at once; revoking a revoked key changes nothing (who and when stay)."""
        check_key_id(key_id)
        if actor == key_id:  # a slip that would lock its caller out; see OwnKeyRevocationError
            raise OwnKeyRevocationError(
                "a key cannot revoke itself: use another admin key, or `ledger keys revoke`",
                path="$.key_id",
            )
        at = to_micros(now)
        with self._datastore.transaction(commit=True) as curs:
            # The write comes first: a SQLite transaction that read first could not
            # take the write lock after another process wrote.
            revoked = self._update(
                curs,
                "revoked_at = ?, revoked_by = ?",
                (at, actor),
                business_id,
                key_id,
                "revoked_at IS NULL",
            )
            record = read_key(curs, self._mark, business_id, key_id)
            if revoked:
                self._audit(curs, record.business_id, key_id, "revoked", actor, at)
            return record

    def rotate(
        self,
        business_id: str | None,
        key_id: str,
        grace: timedelta,
        actor: str,
        now: datetime,
    ) -> tuple[IssuedKey, KeyRecord]:
        """A new key like ``key_id``; the old one works until ``now + grace``, then expires."""
        if not timedelta(0) <= grace <= MAX_GRACE:
            raise InvalidRequestError(
                f"grace_seconds: from 0 to {int(MAX_GRACE.total_seconds())} (30 days)",
                path="$.grace_seconds",
            )
        check_key_id(key_id)
        at = to_micros(now)
        with self._datastore.transaction(commit=True) as curs:
            rotated = self._update(
                curs,
                "expires_at = ?",
                (to_micros(now + grace),),
                business_id,
                key_id,
                "revoked_at IS NULL AND expires_at IS NULL",
            )
            old = read_key(curs, self._mark, business_id, key_id)
            if not rotated:
                raise rotation_refused(old)
            new = self._insert(
                curs, old.business_id, old.scope, old.name, actor, now, rotated_from=key_id
            )
            self._audit(curs, old.business_id, key_id, "rotated", actor, at, new.record.key_id)
            return new, old

    def _update(
        self,
        curs: Any,
        assignments: str,
        values: tuple[object, ...],
        business_id: str | None,
        key_id: str,
        condition: str,
    ) -> bool:
        """Whether the one key, of ``business_id`` and meeting ``condition``, was changed."""
        where, params = ["key_id = ?", condition], [*values, key_id]
        if business_id is not None:
            where.append("business_id = ?")
            params.append(business_id)
        curs.execute(
            self._q(
                f"UPDATE api_keys SET {assignments} "  # noqa: S608 - our own fragments
                f"WHERE {' AND '.join(where)} RETURNING key_id"
            ),
            params,
        )
        return curs.fetchone() is not None

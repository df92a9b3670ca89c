"""What the key store hands out: principals, key listings, audit entries, and its errors."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from application.errors import InvalidRequestError, NotFoundError

Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "read", "admin")
KeyStatus = Literal["active", "expiring", "expired", "revoked"]
DEFAULT_BUSINESS = "default"
MAX_PAGE = 1000  # keys or audit entries one call returns at most
_BUSINESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY_ID = re.compile(r"^key_[0-9a-f]{16}$")
_NAME_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a business, with a scope."""

    business_id: str
    scope: Scope
    key_id: str  # stable id of the key (never the key itself): rate limits and audit use it

    def allows(self, needed: Scope) -> bool:
        return self.scope in {"admin", needed}


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as it is listed: never the key, never its hash."""

    key_id: str
    prefix: str
    business_id: str
    scope: Scope
    name: str | None
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    expires_at: datetime | None  # set by a rotation: the end of its grace

    def status(self, now: datetime) -> KeyStatus:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is None:
            return "active"
        return "expired" if self.expires_at <= now else "expiring"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: the plain ``token`` exists only here, once."""

    token: str
    record: KeyRecord


@dataclass(frozen=True, slots=True)
class KeyAuditEntry:
    entry_id: int
    business_id: str
    key_id: str
    action: Literal["created", "rotated", "revoked"]
    actor: str  # an admin key's id (over HTTP), cli:<os user>, unknown (before the trail)
    at: datetime
    related_key_id: str | None  # rotated: the new key; created by a rotation: the old one


@dataclass(frozen=True, slots=True)
class KeyQuery:
    business_id: str | None  # None: every business (the operator's command line)
    now: datetime
    include_inactive: bool = False  # revoked and expired keys too
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class AuditQuery:
    business_id: str | None
    key_id: str | None = None
    limit: int = 100
    offset: int = 0


class KeyRevokedError(InvalidRequestError):
    code = "key_revoked"


class KeyAlreadyRotatedError(InvalidRequestError):
    code = "key_already_rotated"


class OwnKeyRevocationError(InvalidRequestError):
    """A key revoking itself: refused, since the caller would lock itself out mid-task
    (and an operator answering a leak uses another key or the command line)."""

    code = "cannot_revoke_own_key"


def rotation_refused(record: KeyRecord) -> InvalidRequestError:
    """Why ``record`` cannot be rotated: it is revoked, or was rotated (and so expires)."""
    if record.revoked_at is not None:
        return KeyRevokedError(f"API key {record.key_id} is revoked", path="$.key_id")
    expires = record.expires_at.isoformat() if record.expires_at else "?"
    return KeyAlreadyRotatedError(
        f"API key {record.key_id} was rotated already; it expires at {expires}", path="$.key_id"
    )


def check_new_key(business_id: str, scope: str, name: str | None) -> None:
    if not _BUSINESS.match(business_id):
        raise InvalidRequestError(
            "business must be 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            path="$.business_id",
        )
    if scope not in SCOPES:
        raise InvalidRequestError(f"scope must be one of {', '.join(SCOPES)}", path="$.scope")
    if name is not None and (not 1 <= len(name) <= _NAME_LIMIT or not name.isprintable()):
        raise InvalidRequestError(f"name: 1 to {_NAME_LIMIT} printable characters", path="$.name")


def is_key_id(text: str) -> bool:
    return _KEY_ID.match(text) is not None


def check_key_id(key_id: str) -> None:
    """Anything not shaped like a key id is no key (and never reaches the database)."""
    if not is_key_id(key_id):
        raise NotFoundError(f"no API key {key_id[:64]!r}")


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidRequestError(f"a page holds 1 to {MAX_PAGE} entries from offset 0 on")


def new_record(
    key_id: str,
    prefix: str,
    business_id: str,
    scope: str,
    name: str | None,
    now: datetime,
    actor: str,
) -> KeyRecord:
    """The listing of a key just made: never used, revoked or rotated."""
    return KeyRecord(
        key_id, prefix, business_id, cast(Scope, scope), name, now, actor, None, None, None, None
    )


class TouchMemo:
    """When each key's ``last_used_at`` was last written or seen, in this process.

    ``due`` says whether a request at ``at`` should write it: not within
    ``every`` microseconds of the last value written here or read from the row.
    Bounded: past ``limit`` keys it starts afresh (a few extra writes, no growth).
    """

    def __init__(self, every: int, limit: int) -> None:
        self._every, self._limit = every, limit
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def due(self, key_id: str, stored: int | None, at: int) -> bool:
        with self._lock:
            if at - max(self._seen.get(key_id, 0), stored or 0) < self._every:
                return False
            if len(self._seen) >= self._limit:
                self._seen.clear()
            self._seen[key_id] = at  # before the write: a burst of requests writes once
            return True

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._seen.pop(key_id, None)

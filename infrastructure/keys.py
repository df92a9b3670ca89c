"""API keys: stored as SHA-256 hashes, shown once, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from infrastructure.codec import to_micros

Scope = Literal["ingest", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "admin")
DEFAULT_BUSINESS = "default"
_BUSINESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

CREATE = (
    "CREATE TABLE IF NOT EXISTS api_keys ("
    "key_hash TEXT PRIMARY KEY, key_prefix TEXT NOT NULL, business_id TEXT NOT NULL, "
    "scope TEXT NOT NULL, created_at BIGINT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a business, with a scope."""

    business_id: str
    scope: Scope

    def allows(self, needed: Scope) -> bool:
        return self.scope in {"admin", needed}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    """Keys live in the ledger's own database; ``mark`` is its placeholder."""

    def __init__(self, datastore: Any, mark: str, bootstrap_key: str | None) -> None:
        self._datastore = datastore
        self._mark = mark
        self._bootstrap = _digest(bootstrap_key) if bootstrap_key else None
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(CREATE)

    def create(self, business_id: str, scope: Scope, now: datetime) -> str:
        """Make a key for ``business_id``; the plain key is returned once, never stored."""
        if not _BUSINESS.match(business_id):
            raise ValueError(
                "business must be 1 to 64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        token = f"ldg_{scope[0]}_{secrets.token_urlsafe(32)}"
        row = (_digest(token), token[:10], business_id, scope, to_micros(now))
        statement = "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?)".replace("?", self._mark)
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(statement, row)
        return token

    def authenticate(self, token: str) -> Principal | None:
        digest = _digest(token)
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap):
            return Principal(DEFAULT_BUSINESS, "admin")
        statement = "SELECT key_hash, business_id, scope FROM api_keys WHERE key_hash = ?"
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(statement.replace("?", self._mark), (digest,))
            row = curs.fetchone()
        if row is None:
            return None
        stored, business_id, scope = (row[k] for k in ("key_hash", "business_id", "scope"))
        if not hmac.compare_digest(stored, digest):
            return None
        return Principal(business_id, scope)

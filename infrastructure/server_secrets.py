"""Secrets of the server itself (the portal links' signing key, the dashboard sessions'
key), in the ledger's database.

Not events: the log travels (exports), secrets must not. Each is made once, by
whichever process asks first: every process offers a fresh random value and the
table's primary key keeps the first one written (``ON CONFLICT DO NOTHING``),
then every process reads that one back. So all workers, and every restart,
share one value without a lock. A value is never logged or shown.
"""

from __future__ import annotations

import secrets
from typing import Any

CREATE = (
    "CREATE TABLE IF NOT EXISTS server_secrets ("
    "name TEXT NOT NULL PRIMARY KEY, secret TEXT NOT NULL)"
)
SECRET_BYTES = 32
PORTAL_LINKS = "portal_links"
DASHBOARD_SESSIONS = "dashboard_sessions"


class ServerSecretStore:
    def __init__(self, datastore: Any, mark: str) -> None:
        self._datastore = datastore
        self._mark = mark
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(CREATE)

    def _q(self, statement: str) -> str:
        return statement.replace("?", self._mark)

    def secret(self, name: str) -> bytes:
        """The secret called ``name``, made now if no process has made it yet."""
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(
                self._q(
                    "INSERT INTO server_secrets (name, secret) VALUES (?, ?) ON CONFLICT DO NOTHING"
                ),
                (name, secrets.token_hex(SECRET_BYTES)),
            )
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(self._q("SELECT secret FROM server_secrets WHERE name = ?"), (name,))
            row = curs.fetchone()
        value = row["secret"] if isinstance(row, dict) else row[0]
        return bytes.fromhex(str(value))

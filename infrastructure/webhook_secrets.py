"""Webhook endpoints' signing secrets and custom headers, beside the API keys.

Not events: the log travels (exports), secrets must not. They are read only to
sign and send a delivery, and shown only to an admin key of the business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

CREATE = (
    "CREATE TABLE IF NOT EXISTS webhook_secrets ("
    "business_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, secret TEXT NOT NULL, "
    "headers TEXT NOT NULL, PRIMARY KEY (business_id, endpoint_id))"
)


class WebhookSecretStore:
    """``application.webhooks.EndpointSecrets`` in the ledger's own database."""

    def __init__(self, datastore: Any, mark: str) -> None:
        self._datastore = datastore
        self._mark = mark
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(CREATE)

    def _q(self, statement: str) -> str:
        return statement.replace("?", self._mark)

    def store(self, business_id: str, endpoint_id: str, secret: str) -> None:
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(
                self._q(
                    "INSERT INTO webhook_secrets (business_id, endpoint_id, secret, headers) "
                    "VALUES (?, ?, ?, '{}') ON CONFLICT DO NOTHING"
                ),
                (business_id, endpoint_id, secret),
            )

    def _row(self, business_id: str, endpoint_id: str) -> tuple[str, str] | None:
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                self._q(
                    "SELECT secret, headers FROM webhook_secrets "
                    "WHERE business_id = ? AND endpoint_id = ?"
                ),
                (business_id, endpoint_id),
            )
            row = curs.fetchone()
        if row is None:
            return None
        values = list(row.values()) if isinstance(row, dict) else list(row)
        return str(values[0]), str(values[1])

    def secret(self, business_id: str, endpoint_id: str) -> str | None:
        row = self._row(business_id, endpoint_id)
        return None if row is None else row[0]

    def headers(self, business_id: str, endpoint_id: str) -> dict[str, str]:
        row = self._row(business_id, endpoint_id)
        return {} if row is None else dict(json.loads(row[1]))

    def set_headers(self, business_id: str, endpoint_id: str, headers: Mapping[str, str]) -> None:
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(
                self._q(
                    "UPDATE webhook_secrets SET headers = ? "
                    "WHERE business_id = ? AND endpoint_id = ?"
                ),
                (json.dumps(dict(headers), sort_keys=True), business_id, endpoint_id),
            )

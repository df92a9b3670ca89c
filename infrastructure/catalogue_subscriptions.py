"""The catalogue's subscription rows: each subscription's state, listed by what it filters on.

A row holds the subscription's whole state (``SubscriptionState``) beside the
columns the listing filters and orders by. The status a subscription has
depends on the moment asked at, not only on its events (it ends when its term
or a cancellation's period runs out), so the row keeps when it ends and why,
and the query compares that with the moment: no event has to mark the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from application.views import SubscriptionEntry, SubscriptionQuery, SubscriptionState
from infrastructure.codec import from_micros, to_micros
from infrastructure.sql import TrackedSQL

TABLES = (
    "CREATE TABLE IF NOT EXISTS catalogue_subscriptions ("
    "business_id TEXT NOT NULL, subscription_id TEXT NOT NULL, customer_id TEXT NOT NULL, "
    "product_id TEXT NOT NULL, created_at BIGINT NOT NULL, "
    "cancel_at_next_billing_date BOOLEAN NOT NULL, ends_at BIGINT, end_reason TEXT NOT NULL, "
    "state TEXT NOT NULL, PRIMARY KEY (business_id, subscription_id))",
    "CREATE INDEX IF NOT EXISTS catalogue_subscriptions_by_customer "
    "ON catalogue_subscriptions (business_id, customer_id, created_at)",
    "CREATE INDEX IF NOT EXISTS catalogue_subscriptions_by_time "
    "ON catalogue_subscriptions (business_id, created_at)",
    "CREATE INDEX IF NOT EXISTS catalogue_subscriptions_by_product "
    "ON catalogue_subscriptions (business_id, product_id, created_at)",
    "CREATE INDEX IF NOT EXISTS catalogue_subscriptions_by_cancel "
    "ON catalogue_subscriptions (business_id, cancel_at_next_billing_date, created_at)",
    "CREATE INDEX IF NOT EXISTS catalogue_subscriptions_by_end "
    "ON catalogue_subscriptions (business_id, end_reason, ends_at)",
)
# The columns this code reads: a table made by an older version lacks some (see view_schema).
COLUMNS = ("cancel_at_next_billing_date", "ends_at", "end_reason", "state")
UPSERT = (
    "INSERT INTO catalogue_subscriptions (business_id, subscription_id, customer_id, "
    "product_id, created_at, cancel_at_next_billing_date, ends_at, end_reason, state) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (business_id, subscription_id) DO UPDATE "
    "SET cancel_at_next_billing_date = excluded.cancel_at_next_billing_date, "
    "ends_at = excluded.ends_at, end_reason = excluded.end_reason, state = excluded.state"
)
# The statuses a subscription of this ledger can have; the SDK's others (pending,
# on_hold, paused, failed, past_due) need payments, which this ledger does not take.
ENDED = ("cancelled", "expired")
STATUSES = ("active", *ENDED)


class _State(msgspec.Struct):
    business_id: str
    subscription_id: str
    customer_id: str
    product_id: str
    quantity: int
    interval: str
    interval_count: int
    started_at: datetime
    billing: dict[str, Any]
    metadata: dict[str, Any]
    payment: dict[str, Any]
    created_at: datetime
    cancel_requested_at: datetime | None
    cancellation_comment: str | None
    term_ends_at: datetime | None
    ends_at: datetime | None
    end_reason: str


_encoder = msgspec.json.Encoder(decimal_format="number")
_decoder = msgspec.json.Decoder(_State, float_hook=Decimal)


def encode_subscription(state: SubscriptionState) -> str:
    fields = {f: getattr(state, f) for f in _State.__struct_fields__}
    return _encoder.encode(_State(**fields)).decode()


def decode_subscription(raw: str | bytes) -> SubscriptionState:
    found = _decoder.decode(raw)
    return SubscriptionState(**{f: getattr(found, f) for f in _State.__struct_fields__})


def subscription_row(state: SubscriptionState) -> tuple[object, ...]:
    return (
        state.business_id,
        state.subscription_id,
        state.customer_id,
        state.product_id,
        to_micros(state.created_at),
        state.cancel_requested_at is not None,
        None if state.ends_at is None else to_micros(state.ends_at),
        state.end_reason,
        encode_subscription(state),
    )


class SubscriptionRowsSQL(TrackedSQL):
    """The catalogue's subscription rows (mixed into ``CatalogueSQL``)."""

    def _write_subscriptions(self, curs: Any, states: Sequence[SubscriptionState]) -> None:
        if states:
            curs.executemany(self._q(UPSERT), [subscription_row(s) for s in states])

    def list_subscriptions(
        self, query: SubscriptionQuery, now: datetime
    ) -> list[SubscriptionState]:
        """A page of the business's subscriptions, newest first, by the query's filters."""
        if query.status is not None and query.status not in STATUSES:
            return []
        where, params = _filters(query, now)
        statement = (
            f"SELECT state FROM catalogue_subscriptions WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY created_at DESC, subscription_id DESC LIMIT ? OFFSET ?"
        )
        params += [query.page_size, query.page_number * query.page_size]
        return [decode_subscription(row[0]) for row in self._fetch(statement, params)]

    def count_subscriptions(self, query: SubscriptionQuery, now: datetime) -> int:
        """How many of the business's subscriptions match the query's filters (no paging)."""
        if query.status is not None and query.status not in STATUSES:
            return 0
        where, params = _filters(query, now)
        statement = f"SELECT COUNT(*) FROM catalogue_subscriptions WHERE {' AND '.join(where)}"  # noqa: S608
        return int(self._fetch(statement, params)[0][0])

    def subscriptions_of(self, business_id: str, customer_id: str) -> list[SubscriptionEntry]:
        rows = self._fetch(
            "SELECT business_id, subscription_id, customer_id, product_id, created_at "
            "FROM catalogue_subscriptions WHERE business_id = ? AND customer_id = ? "
            "ORDER BY created_at, subscription_id",
            [business_id, customer_id],
        )
        return [SubscriptionEntry(r[0], r[1], r[2], r[3], from_micros(r[4])) for r in rows]


def _filters(query: SubscriptionQuery, now: datetime) -> tuple[list[str], list[object]]:
    """The WHERE conditions of the query and their parameters; status is as of ``now``."""
    where: list[str] = ["business_id = ?"]
    params: list[object] = [query.business_id]
    for column, value in (
        ("customer_id", query.customer_id),
        ("product_id", query.product_id),
        ("cancel_at_next_billing_date", query.cancel_at_next_billing_date),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.status in ENDED:
        where += ["end_reason = ?", "ends_at <= ?"]
        params += [query.status, to_micros(now)]
    elif query.status == "active":
        where.append("(ends_at IS NULL OR ends_at > ?)")
        params.append(to_micros(now))
    for bound, moment in (
        ("created_at >= ?", query.created_at_gte),
        ("created_at <= ?", query.created_at_lte),
    ):
        if moment is not None:
            where.append(bound)
            params.append(to_micros(moment))
    return where, params

"""Customers: their details changed, and the credit they hold under each entitlement."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from application.catalogue import customer_view
from application.errors import NotFoundError
from application.ledger import Ledger
from application.reads import CATALOGUE, CREDITS, Reads
from application.views import CustomerView
from domain.customer import Customer, customer_aggregate_id
from domain.metadata import validate_metadata
from domain.text import is_storable

MAX_ENTITLEMENTS = 1000  # entitlements one customer's listing shows, at most


@dataclass(frozen=True, slots=True)
class CustomerCredit:
    """A credit entitlement with the customer's current balance and overage under it."""

    entitlement_id: str
    name: str
    description: str | None
    unit: str
    balance: str
    overage: str


def update_customer(
    ledger: Ledger,
    business_id: str,
    customer_id: str,
    *,
    changes: Mapping[str, Any],
    now: datetime,
) -> CustomerView:
    """Change the fields given in ``changes`` (``email``, ``name``, ``phone_number``,
    ``metadata``); the rest stay. A ``phone_number`` or ``metadata`` of None clears it."""

    def update(customer: Customer) -> None:
        customer.update(
            changes.get("email", customer.email),
            changes.get("name", customer.name),
            changes.get("phone_number", customer.phone_number),
            validate_metadata(changes.get("metadata", customer.metadata)),
            now,
        )

    changed = ledger.change(lambda: _load(ledger, business_id, customer_id), update, "customer")
    return customer_view(changed)


def customer_credits(reads: Reads, business_id: str, customer_id: str) -> list[CustomerCredit]:
    """Every entitlement the customer holds credit under (has an account under), with its
    balance and overage, from the catalogue and the balance projection."""
    reads.fresh(CATALOGUE, CREDITS)
    if not is_storable(customer_id) or not reads.catalogue.customers_by_id(
        business_id, [customer_id]
    ):  # an id no store can hold (NUL) names no customer
        raise NotFoundError(f"customer {customer_id!r} not found")
    rows = reads.credits.customer_balances(business_id, customer_id, MAX_ENTITLEMENTS)
    ids = [row["credit_entitlement_id"] for row in rows]
    entitlements = reads.catalogue.entitlements_by_id(business_id, ids)
    return [
        CustomerCredit(
            entitlement_id=row["credit_entitlement_id"],
            name=found.settings["name"],
            description=found.settings.get("description"),
            unit=found.settings["unit"],
            balance=row["balance"],
            overage=row["overage"],
        )
        for row in rows
        if (found := entitlements.get(row["credit_entitlement_id"])) is not None
    ]


def _load(ledger: Ledger, business_id: str, customer_id: str) -> Customer:
    try:
        found: Customer = ledger.repository.get(customer_aggregate_id(business_id, customer_id))
    except AggregateNotFoundError:
        raise NotFoundError(f"customer {customer_id!r} not found") from None
    return found

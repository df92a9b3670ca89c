"""A customer of a business: whose usage is metered and billed."""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidCustomerError
from domain.metadata import Metadata
from domain.text import is_storable

CUSTOMER_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/customer")
MAX_NAME_LENGTH = 255


def customer_aggregate_id(business_id: str, customer_id: str) -> UUID:
    """The aggregate id of ``customer_id`` within ``business_id``."""
    return uuid5(CUSTOMER_NAMESPACE, f"{business_id}\x1f{customer_id}")


class Customer(Aggregate):
    class Registered(Aggregate.Created):
        business_id: str
        customer_id: str
        email: str
        name: str
        phone_number: str | None
        metadata: Metadata
        created_at: datetime

    @event(Registered)
    def __init__(
        self,
        business_id: str,
        customer_id: str,
        email: str,
        name: str,
        phone_number: str | None,
        metadata: Metadata,
        created_at: datetime,
    ) -> None:
        self.business_id = business_id
        self.customer_id = customer_id
        self.email = email
        self.name = name
        self.phone_number = phone_number
        self.metadata = metadata
        self.created_at = created_at

    class Updated(Aggregate.Event):
        email: str
        name: str
        phone_number: str | None
        metadata: Metadata
        updated_at: datetime

    @staticmethod
    def create_id(business_id: str, customer_id: str) -> UUID:
        return customer_aggregate_id(business_id, customer_id)

    def update(
        self,
        email: str,
        name: str,
        phone_number: str | None,
        metadata: Metadata,
        at: datetime,
    ) -> None:
        """Change the customer's details; the same details again record nothing."""
        email, name = email.strip(), name.strip()
        check_customer_fields(email, name, phone_number)
        if (email, name, phone_number, metadata) != (
            self.email,
            self.name,
            self.phone_number,
            self.metadata,
        ):
            self._on_updated(email, name, phone_number, metadata, at)

    @event(Updated)
    def _on_updated(
        self,
        email: str,
        name: str,
        phone_number: str | None,
        metadata: Metadata,
        updated_at: datetime,
    ) -> None:
        del updated_at
        self.email = email
        self.name = name
        self.phone_number = phone_number
        self.metadata = metadata


def check_customer_fields(email: str, name: str, phone_number: str | None = None) -> None:
    """A customer needs a plausible email and a non-blank name; no field holds NUL."""
    for field, value in (("email", email), ("name", name), ("phone_number", phone_number)):
        if value is not None and not is_storable(value):
            raise InvalidCustomerError(f"{field} must not contain the NUL character (U+0000)")
    if phone_number is not None and len(phone_number) > MAX_NAME_LENGTH:
        raise InvalidCustomerError(f"phone_number is longer than {MAX_NAME_LENGTH} characters")
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > MAX_NAME_LENGTH or " " in email:
        raise InvalidCustomerError(f"email {email[:60]!r} is not a valid address")
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidCustomerError(f"name must be 1 to {MAX_NAME_LENGTH} characters, not blank")

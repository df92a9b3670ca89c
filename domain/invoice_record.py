"""A finalized invoice, recorded once and never changed (invariant 8).

One ``InvoiceRecord`` per (subscription, cycle); its id is derived from those,
so finalizing a cycle twice collides on the event store's key and changes
nothing. It keeps the canonical bytes of the fold (``domain.invoice``), their
SHA-256 and the log position (``cut``) the fold read up to, so anyone can
recompute it from the log and compare. ``log_digest`` is the seal chain of
the log at ``cut`` (``domain.seal``): it commits to every stored event up
to it, so an event changed, deleted or inserted behind the service's back
is found. Usage that reaches a finalized cycle later is carried, as an
adjustment, by a later invoice; ``adjusted`` lists, per earlier cycle, the
cut this invoice brought it up to.
"""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

INVOICE_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/invoice")


def invoice_id_of(business_id: str, subscription_id: str, cycle_index: int) -> str:
    """The invoice's public id: stable, so every finalizer names the same invoice."""
    digest = uuid5(INVOICE_NAMESPACE, f"{business_id}\x1f{subscription_id}\x1f{cycle_index}")
    return f"inv_{digest.hex[:24]}"


def invoice_aggregate_id(business_id: str, invoice_id: str) -> UUID:
    return uuid5(INVOICE_NAMESPACE, f"{business_id}\x1f{invoice_id}")


class InvoiceRecord(Aggregate):
    class Finalized(Aggregate.Created):
        business_id: str
        invoice_id: str
        subscription_id: str
        customer_id: str
        cycle_index: int
        cycle_start: datetime
        cycle_end: datetime
        cut: int
        currency: str
        total_minor: int
        document: str
        sha256: str
        adjusted: dict[str, int]  # earlier cycle index (as text) -> the cut it is now at
        finalized_at: datetime
        log_digest: str  # the log's seal chain at ``cut`` (domain.seal)

    @event(Finalized)
    def __init__(
        self,
        business_id: str,
        invoice_id: str,
        subscription_id: str,
        customer_id: str,
        cycle_index: int,
        cycle_start: datetime,
        cycle_end: datetime,
        cut: int,
        currency: str,
        total_minor: int,
        document: str,
        sha256: str,
        adjusted: dict[str, int],
        finalized_at: datetime,
        log_digest: str,
    ) -> None:
        self.business_id = business_id
        self.invoice_id = invoice_id
        self.subscription_id = subscription_id
        self.customer_id = customer_id
        self.cycle_index = cycle_index
        self.cycle_start = cycle_start
        self.cycle_end = cycle_end
        self.cut = cut
        self.currency = currency
        self.total_minor = total_minor
        self.document = document
        self.sha256 = sha256
        self.adjusted = adjusted
        self.finalized_at = finalized_at
        self.log_digest = log_digest

    @staticmethod
    def create_id(business_id: str, invoice_id: str) -> UUID:
        return invoice_aggregate_id(business_id, invoice_id)

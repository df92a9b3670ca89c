"""What every application needs from infrastructure, as protocols.

Each projection's own view protocol is beside the projection (``catalogue``,
``usage_log``, ``seal``, ``usage``, ``credit_balances``, ``schedule``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from typing import Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent


class StoredIdentities(Protocol):
    """Answers which aggregate ids already have events in the store."""

    def existing(self, ids: Collection[UUID]) -> set[UUID]: ...

    def insert_new(self, events: Sequence[StoredEvent]) -> set[UUID] | None:
        """Store those of ``events`` whose (originator, version) is not stored yet, in
        one transaction, and answer their originator ids; None where the store cannot
        (then the caller probes with ``existing`` under ``serialised`` and saves)."""
        ...

    def serialised(self, business_id: str) -> AbstractContextManager[None]:
        """While held, no other writer of this business, in any process, probes or saves.

        Writers queue on the event table's lock anyway; holding this across the
        probe and the save keeps overlapping batches from colliding again and
        again. The store's uniqueness constraint remains what guarantees
        at-most-once; this only prevents starvation.
        """
        ...


class PositionMovedError(Exception):
    """A batch was read after a position the projection has since left.

    Another process applied events to the same projection in the meantime;
    applying this batch too would count them twice. Nothing was written.
    """


class TrackedView(Protocol):
    """A read model that records its log position with its rows."""

    def reset(self) -> None:
        """Drop every row and the position: the next batch starts from the log's start."""
        ...

    def max_tracking_id(self, application_name: str) -> int | None: ...


class Freshness(Protocol):
    """Waits until read models have caught up with the log (read your writes)."""

    def wait(self, names: Collection[str], position: int | None = None) -> bool:
        """Until every projection in ``names`` has reached ``position`` (default: the
        log's head now), for at most the configured read wait; False if it ran out."""
        ...

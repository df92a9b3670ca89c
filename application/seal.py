"""The seal projection: a digest of every stored event and a chain over them, in log order.

When it reads a stored event it records the SHA-256 of exactly what the store
holds (``domain.seal``: position, originator, version, topic, state bytes) and
the chain value up to it. ``ledger audit verify`` recomputes both from the
store; a finalized invoice keeps the chain at its cut (``log_digest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from eventsourcing.persistence import Notification, Tracking

from application.ports import TrackedView
from application.projection import Batch
from application.views import SealView
from domain.seal import event_digest


class SealStore(TrackedView, Protocol):
    def record(self, seals: Sequence[SealView], tracking: Tracking, after: int) -> None:
        """Write the seals, each chained from the last sealed before it."""
        ...

    def chain_at(self, position: int) -> str:
        """The chain value of the last sealed event at or before ``position``."""
        ...

    def seals(self, after: int, limit: int) -> list[tuple[SealView, str]]:
        """Sealed events after ``after`` in log order, each with its chain value."""
        ...


class SealProjection:
    name = "seal"

    def __init__(self, view: SealStore) -> None:
        self._view = view

    @property
    def view(self) -> SealStore:
        return self._view

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        self._view.record([seal_of(n) for n in batch.notifications], tracking, after)


def seal_of(notification: Notification) -> SealView:
    """The stored event's digest (``domain.seal``), by log position."""
    originator_id = str(notification.originator_id)
    version = notification.originator_version
    digest = event_digest(
        notification.id, originator_id, version, notification.topic, notification.state
    )
    return SealView(notification.id, originator_id, version, digest)

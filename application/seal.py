"""The seal projection: a digest of every stored event and a chain over them, in log order.

When it reads stored events it records the SHA-256 of exactly what the store
holds for each (``domain.seal``: position, originator, version, topic, state
bytes) and the chain over them. The events of one batch are sealed as one
segment: their digests, the chain value before the first and at the last; the
value at any event between follows from those. ``ledger audit verify``
recomputes both from the store; a finalized invoice keeps the chain at its cut
(``log_digest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from eventsourcing.persistence import Notification, Tracking

from application.ports import TrackedView
from application.projection import Batch
from application.views import SealDigests, SealSegment
from domain.seal import event_digest


class SealStore(TrackedView, Protocol):
    def record(self, digests: SealDigests, tracking: Tracking, after: int) -> None:
        """Seal the events as one segment, chained from the last sealed before them."""
        ...

    def chain_at(self, position: int) -> str:
        """The chain value of the last sealed event at or before ``position``."""
        ...

    def segments(self, after: int, limit: int) -> list[SealSegment]:
        """Up to ``limit`` segments whose first event is after ``after``, in log order."""
        ...


class SealProjection:
    name = "seal"

    def __init__(self, view: SealStore) -> None:
        self._view = view

    @property
    def view(self) -> SealStore:
        return self._view

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        self._view.record(digests_of(batch.notifications), tracking, after)


def digests_of(notifications: Sequence[Notification]) -> SealDigests:
    """Each stored event's digest (``domain.seal``), in log order."""
    sealed = SealDigests([], [], [], [])
    for n in notifications:
        originator_id, version = str(n.originator_id), n.originator_version
        sealed.positions.append(n.id)
        sealed.originator_ids.append(originator_id)
        sealed.versions.append(version)
        sealed.digests.append(event_digest(n.id, originator_id, version, n.topic, n.state))
    return sealed

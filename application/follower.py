"""Follows the notification log in batches and feeds a projection.

The library's ``ProjectionRunner`` handles one event per transaction and needs
``subscribe()``, which the SQLite recorder lacks. A follower instead reads
``select_notifications`` in batches, hands each batch to the projection, and
the projection writes its rows and the batch's last position in one
transaction. Polling covers SQLite and lost LISTEN/NOTIFY wake-ups alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol
from uuid import UUID

import structlog
from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Notification, Tracking

from application.ports import PositionMovedError, TrackedView

log = structlog.get_logger(__name__)
# What a batch meets when another follower applied it first: the projection's own
# check (usage) or the library's refusal of a tracking position already passed.
MOVED = (PositionMovedError, IntegrityError)

DomainEvent = DomainEventProtocol[UUID]
Batch = tuple[Sequence[Notification], int]  # the notifications, the position they reach


class BatchProjection(Protocol):
    name: str

    @property
    def view(self) -> TrackedView: ...

    def process(
        self,
        events: Sequence[DomainEvent],
        tracking: Tracking,
        after: int,
        positions: Sequence[int] = (),
        notifications: Sequence[Notification] = (),
    ) -> None:
        """Apply a batch read after log position ``after``; ``tracking`` is its last.

        ``positions`` are the events' own notification ids, in the same order;
        ``notifications`` the stored events themselves, for a projection that
        says ``takes_notifications`` (others are not given them).
        """
        ...


class LogFollower:
    """Keeps one projection up to date with one application's log."""

    def __init__(
        self,
        app: Application[Any],
        projection: BatchProjection,
        *,
        batch_size: int = 1000,
        poll_interval: float = 0.05,
    ) -> None:
        self.app = app
        self.projection = projection
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.topics: tuple[str, ...] = tuple(getattr(projection, "topics", ()))

    @property
    def position(self) -> int:
        return self.projection.view.max_tracking_id(self.app.name) or 0

    def catch_up(
        self, on_batch: Callable[[int, int], None] | None = None, *, until: int | None = None
    ) -> int:
        """Process everything committed so far (or up to ``until``); return how many.

        The next batch is read while this one is processed (the store's wait and
        the decoding overlap). ``on_batch(processed, position)`` is called after
        each batch: a progress bar.
        """
        processed = 0
        after = self.position
        with ThreadPoolExecutor(1, thread_name_prefix="follower-read") as reader:
            pending: Future[Batch] | None = reader.submit(self._read, after)
            while pending is not None:
                notifications, through = pending.result()
                if until is not None:
                    notifications = [n for n in notifications if n.id <= until]
                    through = min(through, until)
                if through <= after:
                    break
                full = len(notifications) == self.batch_size
                pending = reader.submit(self._read, through) if full else None
                try:
                    self._handle(notifications, after, through)
                except MOVED:
                    # Another follower (thread or process) got there first: carry on
                    # from where the projection is now. If nobody moved it, the
                    # error is something else.
                    moved_to = self.position
                    if moved_to == after:
                        raise
                    after = moved_to
                    pending = reader.submit(self._read, after)
                    continue
                after = through
                processed += len(notifications)
                if on_batch is not None:
                    on_batch(processed, after)
        return processed

    def _read(self, after: int) -> Batch:
        """The next batch after ``after``, and the log position it takes the projection to.

        A projection that names the ``topics`` it reads is given only those; when
        fewer than a batch are left, it is taken to the log's head as read before
        them (ids are committed in order: the store locks the table to insert).
        """
        recorder = self.app.recorder
        if not self.topics:
            found = recorder.select_notifications(
                start=after, limit=self.batch_size, inclusive_of_start=False
            )
            return found, found[-1].id if found else after
        head = recorder.max_notification_id() or 0
        found = recorder.select_notifications(
            start=after,
            limit=self.batch_size,
            stop=head,
            topics=self.topics,
            inclusive_of_start=False,
        )
        full = len(found) == self.batch_size
        return found, found[-1].id if full else max(head, after)

    def _handle(self, notifications: Sequence[Notification], after: int, through: int) -> None:
        to_domain_event = self.app.mapper.to_domain_event
        events = [to_domain_event(n) for n in notifications]
        tracking = Tracking(self.app.name, through)
        positions = [n.id for n in notifications]
        if getattr(self.projection, "takes_notifications", False):
            self.projection.process(events, tracking, after, positions, notifications)
        else:
            self.projection.process(events, tracking, after, positions)

    def _step(self) -> int:
        after = self.position
        notifications, through = self._read(after)
        if through > after:
            self._handle(notifications, after, through)
        return len(notifications)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"follower-{self.projection.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        backoff = self.poll_interval
        while not self._stopping.is_set():
            try:
                count = self._step()
            except MOVED as error:
                # Another process advanced this projection: carry on from where it is.
                log.info("projection_moved", projection=self.projection.name, error=str(error))
                continue
            except Exception as error:  # noqa: BLE001 - keep following; the store may come back
                self.error = error
                log.warning(
                    "projection_step_failed", projection=self.projection.name, error=str(error)
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.error = None
            backoff = self.poll_interval
            if count < self.batch_size:
                self._stopping.wait(self.poll_interval)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait_for(self, notification_id: int | None, timeout: float) -> bool:
        """Block until the projection has reached ``notification_id``; False on timeout."""
        try:
            self.projection.view.wait(self.app.name, notification_id, timeout=timeout)
        except TimeoutError:
            return False
        return True

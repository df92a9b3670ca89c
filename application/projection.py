"""Projections follow the log through one reader per process.

The library's ``ProjectionRunner`` handles one event per transaction and needs
``subscribe()``, which the SQLite recorder lacks. A ``Projector`` instead reads
``select_notifications`` in batches, decodes each batch once and hands every
projection the part of it after that projection's own position; the projection
writes its rows and the batch's last position in one transaction (its view is
one of the library's tracking recorders). Polling covers SQLite and lost
LISTEN/NOTIFY wake-ups alike.

Projections are applied in the order given, so one that reads another's rows
(the usage tallies recount an hour from the usage log after a void) comes after
it. Each has its own position: one rebuilt, or one failing, holds back no
other. Several processes may follow the same projections: a view refuses a
batch that was read after a position it has since left (``PositionMovedError``)
and the projector carries on from where the view is.

Following the log, the projections no other one reads (``detached``: the seal,
credit balances, the billing schedule) apply each batch in a thread of their own
while the next batch goes through the rest, at most one batch behind: the path
an event takes to its usage rows no longer waits for them. Catching up applies
every projection to each batch before the next.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import structlog
from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Notification, Tracking

from application.ports import PositionMovedError, TrackedView

log = structlog.get_logger(__name__)
DomainEvent = DomainEventProtocol[UUID]
# What a batch meets when another process applied it first: the view's own check,
# or the library's refusal of a tracking position already passed.
MOVED = (PositionMovedError, IntegrityError)
MAX_BACKOFF = 5.0  # seconds a failing projection waits before it is tried again
REFRESH_SECONDS = 5.0  # how often the positions are read again from the views
WAIT_POLL = 0.02  # seconds between looks at a view another process keeps


def _position(pair: tuple[int, Any]) -> int:
    return pair[0]


@dataclass(frozen=True, slots=True)
class Batch:
    """Stored events of the log in order, each decoded once, with their positions."""

    notifications: Sequence[Notification]
    events: Sequence[DomainEvent]
    # event class -> its (position, event) pairs in log order: made once, when the
    # batch is (projections read it side by side, in threads)
    _by_type: dict[type, list[tuple[int, DomainEvent]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        by_type = self._by_type
        for notification, event in zip(self.notifications, self.events, strict=True):
            pairs = by_type.get(type(event))
            if pairs is None:
                by_type[type(event)] = [(notification.id, event)]
            else:
                pairs.append((notification.id, event))

    def after(self, position: int) -> Batch:
        """The part of the batch after log position ``position``."""
        if not self.notifications or self.notifications[0].id > position:
            return self
        ids = [n.id for n in self.notifications]
        cut = bisect.bisect_right(ids, position)
        return Batch(self.notifications[cut:], self.events[cut:])

    def __iter__(self) -> Iterator[tuple[int, DomainEvent]]:
        """(position, event) pairs, in log order."""
        return zip((n.id for n in self.notifications), self.events, strict=True)

    def of(self, *kinds: type) -> list[tuple[int, Any]]:
        """(position, event) pairs of the events that are instances of ``kinds``, in
        log order: a projection skips the rest (most of a batch is usage) without
        looking at each."""
        chosen = [pairs for kind, pairs in self._by_type.items() if issubclass(kind, kinds)]
        if len(chosen) == 1:
            return list(chosen[0])
        return sorted((pair for pairs in chosen for pair in pairs), key=_position)

    def __len__(self) -> int:
        return len(self.events)


class Projection(Protocol):
    """One read model's job: turn a batch of the log into rows of its view."""

    name: str

    @property
    def view(self) -> TrackedView: ...

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        """Apply ``batch``, read after log position ``after``; ``tracking`` is where it ends.

        Rows and ``tracking`` are written in one transaction, and only if the view
        is still at ``after`` (``PositionMovedError`` otherwise, writing nothing).
        """
        ...


@dataclass(frozen=True, slots=True)
class _Ahead:
    """The read of the batch after ``start``, under way."""

    start: int
    size: int
    future: Future[_Read]


@dataclass(frozen=True, slots=True)
class _Read:
    """A batch read after ``start``; ``through`` is the last position it holds."""

    start: int
    batch: Batch
    through: int


class Projector:
    """Keeps projections up to date with one application's log: one reader, one decode."""

    def __init__(
        self,
        app: Application[Any],
        projections: Sequence[Projection],
        *,
        batch_size: int = 1000,
        max_batch_size: int = 4000,
        poll_interval: float = 0.05,
        read_wait: float = 5.0,
        reads: Mapping[str, Collection[str]] | None = None,
        detached: Collection[str] = (),
    ) -> None:
        self.app = app
        self.batch_size = batch_size
        # Following a busy log, each full batch doubles the next one, up to this: the
        # cost of a batch (a transaction and a tracking row per projection, a read)
        # is spread over more events while there are more to read.
        self.max_batch_size = max_batch_size
        self._growth = 1  # the next live batch is this many times batch_size
        self.poll_interval = poll_interval
        self.read_wait = read_wait
        self._projections: dict[str, Projection] = {p.name: p for p in projections}
        # Which projections' rows each one reads: it is applied after them, the others
        # of a batch side by side (one waits on the database while another computes).
        # Without it, each projection comes after the one before it.
        self._reads = (
            {n: set(reads.get(n, ())) for n in self._projections}
            if reads is not None
            else {n: set(list(self._projections)[:i]) for i, n in enumerate(self._projections)}
        )
        # Following the log, these (no other projection reads their rows) apply a batch
        # in a thread of their own while the next batch goes through the rest: off the
        # path the others wait on, never more than one batch behind, in order.
        self._detached = set(detached) & set(self._projections)
        self._detaching: ThreadPoolExecutor | None = None
        self._detached_run: Future[None] | None = None
        self._detached_to: dict[str, int] = {}  # where the run in flight takes each
        self._workers: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None  # the following thread's read-ahead
        self._ahead: _Ahead | None = None
        self._known: dict[str, int] = {}
        self.errors: dict[str, BaseException] = {}
        self._retry_at: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._advanced = threading.Condition()
        # One batch applied at a time in this process (the thread, or a caller catching
        # up): projections keep state in memory (the usage projection's meters).
        self._applying = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._projections)

    def projection(self, name: str) -> Projection:
        try:
            return self._projections[name]
        except KeyError:
            known = ", ".join(self._projections)
            raise KeyError(f"no projection {name!r}; there are: {known}") from None

    def replace(self, projection: Projection) -> None:
        """Follow with ``projection`` from now on (a fresh one, after its view was reset)."""
        self.projection(projection.name)
        self._projections[projection.name] = projection
        self._known.pop(projection.name, None)

    def position(self, name: str) -> int:
        """Where projection ``name`` is, as its view says (whichever process moved it)."""
        return self.projection(name).view.max_tracking_id(self.app.name) or 0

    def catch_up(
        self,
        *,
        names: Sequence[str] | None = None,
        until: int | None = None,
        on_batch: Callable[[int, int], None] | None = None,
        batch_size: int | None = None,
    ) -> int:
        """Process everything committed so far (or up to ``until``); return the entries read.

        The next batch is read while this one is applied. ``on_batch(read,
        position)`` is called after each batch: a progress bar. An error is raised.
        ``batch_size`` (default the projector's) suits a rebuild's long read.
        """
        size = batch_size or self.batch_size
        chosen = (
            list(self._projections) if names is None else [self.projection(n).name for n in names]
        )
        with self._applying:
            self._drain()  # a detached batch in flight first: then where each one is
        for name in chosen:
            self._known[name] = self.position(name)
        read = 0
        with ThreadPoolExecutor(1, thread_name_prefix="projector-read") as reader:
            start = min(self._known[n] for n in chosen)
            pending: Future[_Read] = reader.submit(self._read, start, until, size)
            while True:
                found = pending.result()
                if found.through <= found.start:
                    return read
                full = len(found.batch) == size
                if full:  # the next batch, read while this one is applied
                    pending = reader.submit(self._read, found.through, until, size)
                self._apply(found, chosen, strict=True)
                read += len(found.batch)
                if on_batch is not None:
                    on_batch(read, found.through)
                start = min(self._known[n] for n in chosen)
                if not full:
                    if start >= found.through:
                        return read
                    pending = reader.submit(self._read, start, until, size)
                elif start != found.through:  # a projection moved: read from where it is
                    pending.cancel()
                    pending = reader.submit(self._read, start, until, size)

    def _read(self, start: int, until: int | None = None, size: int | None = None) -> _Read:
        # The bound is checked here: with one in the query, PostgreSQL (its statistics
        # stale after a bulk load) was seen to sort the whole rest of the log each time.
        notifications = self.app.recorder.select_notifications(
            start=start, limit=size or self.batch_size, inclusive_of_start=False
        )
        if until is not None:
            notifications = [n for n in notifications if n.id <= until]
        to_domain_event = self.app.mapper.to_domain_event
        events = [to_domain_event(n) for n in notifications]
        through = notifications[-1].id if notifications else start
        return _Read(start, Batch(notifications, events), through)

    def _apply(self, found: _Read, names: Sequence[str], *, strict: bool) -> None:
        """Hand each projection its part of the batch; ``strict``: raise what fails.

        Following (not ``strict``), the detached ones get theirs in their own thread
        once the batch before is done with, and the rest do not wait for them."""
        with self._applying:
            later = [n for n in names if n in self._detached] if not strict else []
            if not later:
                self._drain()
            self._apply_each(found, [n for n in names if n not in later], strict=strict)
            if later:
                self._drain()  # theirs of the batch before, done meanwhile
                self._detach(found, later)
        with self._advanced:
            self._advanced.notify_all()

    def _detach(self, found: _Read, names: list[str]) -> None:
        if self._workers is None and len(names) > 1:  # made here, not in two threads at once
            self._workers = ThreadPoolExecutor(
                len(self._projections), thread_name_prefix="projection"
            )
        if self._detaching is None:
            self._detaching = ThreadPoolExecutor(1, thread_name_prefix="projection-detached")
        self._detached_to = dict.fromkeys(names, found.through)
        try:
            self._detached_run = self._detaching.submit(self._apply_detached, found, names)
        except RuntimeError:  # stopped meanwhile: apply them here
            self._detached_to = {}
            self._apply_each(found, names, strict=False)

    def _apply_detached(self, found: _Read, names: list[str]) -> None:
        try:
            self._apply_each(found, names, strict=False)  # failures noted, retried later
        finally:
            for name in names:  # one that failed is read again from where it is
                if self._known.get(name, 0) < found.through:
                    self._detached_to.pop(name, None)
            with self._advanced:
                self._advanced.notify_all()

    def _drain(self) -> None:
        """Wait for the detached projections' batch in flight, if any."""
        run, self._detached_run = self._detached_run, None
        if run is not None:
            run.result()
        self._detached_to = {}

    def _start_of(self, names: Collection[str]) -> int:
        """Where the next batch starts: the least position ``names`` are at or are being
        taken to (the detached ones' batch in flight counts as done)."""
        ahead = self._detached_to
        return min(max(self._known[n], ahead.get(n, 0)) for n in names)

    def _apply_each(self, found: _Read, names: Sequence[str], *, strict: bool) -> None:
        tracking = Tracking(self.app.name, found.through)
        for wave in self._waves(names):
            if len(wave) == 1:
                self._apply_one(wave[0], found, tracking, strict=strict)
                continue
            if self._workers is None:
                self._workers = ThreadPoolExecutor(
                    len(self._projections), thread_name_prefix="projection"
                )
            try:
                runs = [
                    self._workers.submit(self._apply_one, name, found, tracking, strict=strict)
                    for name in wave
                ]
            except RuntimeError:  # stopped meanwhile (the container closing): one by one
                for name in wave:
                    self._apply_one(name, found, tracking, strict=strict)
                continue
            for run in runs:  # every one finishes before the next wave, or an error is raised
                run.exception()
            for run in runs:
                run.result()

    def _waves(self, names: Sequence[str]) -> list[list[str]]:
        """``names`` in groups: each after every group holding a projection it reads."""
        level: dict[str, int] = {}
        for name in names:
            level[name] = 1 + max((level[n] for n in self._reads[name] if n in level), default=-1)
        waves: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for name in names:
            waves[level[name]].append(name)
        return waves

    def _apply_one(self, name: str, found: _Read, tracking: Tracking, *, strict: bool) -> None:
        after = self._known[name]
        if found.through <= after or after < found.start:
            return  # done already, or behind what this batch holds
        projection = self._projections[name]
        try:
            projection.process(found.batch.after(after), tracking, after)
        except MOVED as error:
            moved = self.position(name)
            if moved == after:  # not moved: a row the view holds already, or a bug
                if strict:
                    raise
                self._failed(name, error)
                return
            log.info("projection_moved", projection=name, position=moved)
            self._known[name] = moved
            return
        except Exception as error:
            if strict:
                raise
            self._failed(name, error)
            return
        self._known[name] = found.through
        self._succeeded(name)

    def _failed(self, name: str, error: Exception) -> None:
        self.errors[name] = error
        backoff = min(self._backoff.get(name, self.poll_interval) * 2, MAX_BACKOFF)
        self._backoff[name] = backoff
        self._retry_at[name] = time.monotonic() + backoff
        log.warning("projection_step_failed", projection=name, error=str(error)[:500])

    def _succeeded(self, name: str) -> None:
        if self.errors.pop(name, None) is not None:
            log.info("projection_recovered", projection=name)
        self._backoff.pop(name, None)
        self._retry_at.pop(name, None)

    def step(self) -> int:
        """One batch for every projection not waiting after a failure; the entries read."""
        now = time.monotonic()
        active = [n for n in self._projections if self._retry_at.get(n, 0.0) <= now]
        for name in active:
            if name not in self._known:
                self._known[name] = self.position(name)
        if not active:
            return 0
        start = self._start_of(active)
        found = self._read_ahead(start)
        if found.through > start:
            self._apply(found, active, strict=False)
        return len(found.batch)

    def _read_ahead(self, start: int) -> _Read:
        """The batch after ``start``: read while the one before it was applied when that
        one was full (the log is busy), else now; a full one starts the next read, of
        twice as many (up to ``max_batch_size``)."""
        ahead, self._ahead = self._ahead, None
        size = self._live_size
        if ahead is not None and ahead.start == start and ahead.size == size:
            found = ahead.future.result()
        else:
            if ahead is not None:
                ahead.future.cancel()
            found = self._read(start, size=size)
        if len(found.batch) < size:
            self._growth = 1  # caught up: small batches, each soon applied
            return found
        if size < self.max_batch_size:
            self._growth *= 2
        if self._reader is not None:
            size = self._live_size
            with contextlib.suppress(RuntimeError):  # stopping: read it next time, if any
                future = self._reader.submit(self._read, found.through, size=size)
                self._ahead = _Ahead(found.through, size, future)
        return found

    @property
    def _live_size(self) -> int:
        return max(self.batch_size, min(self.batch_size * self._growth, self.max_batch_size))

    def start(self) -> None:
        """Follow the log in a thread; while one follows, starting again changes nothing
        (one thread per projector, however many apps share its container)."""
        if self.running:
            return
        self._stopping.clear()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="projector-read")
        self._thread = threading.Thread(target=self._run, name="projector", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _refresh(self) -> None:
        """Read every position from its view again: another process may have moved it.

        Entries are replaced, never removed: a caller catching up in another thread
        reads them meanwhile."""
        with self._applying:
            self._drain()
            for name in self._projections:
                self._known[name] = self.position(name)

    def _run(self) -> None:
        backoff = self.poll_interval
        refreshed = time.monotonic()
        stale = False
        while not self._stopping.is_set():
            try:
                if stale or time.monotonic() - refreshed > REFRESH_SECONDS:
                    self._refresh()
                    refreshed, stale = time.monotonic(), False
                count = self.step()
            except Exception as error:  # noqa: BLE001 - keep following; the store may come back
                log.warning("projector_read_failed", error=str(error)[:500])
                stale = True
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = self.poll_interval
            if count < self.batch_size:
                self._stopping.wait(self.poll_interval)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        if self._detaching is not None:  # its batch in flight finishes: a batch boundary
            self._detaching.shutdown(wait=True)
            self._detaching = self._detached_run = None
            self._detached_to = {}
        for pool in (self._workers, self._reader):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._workers = self._reader = None
        self._ahead = None

    def wait(self, names: Collection[str], position: int | None = None) -> bool:
        """Read your writes: until ``names`` have the log's head as of now (or ``position``),
        for at most ``read_wait`` seconds; False (and a warning) when they do not."""
        if position is None:
            position = self.app.recorder.max_notification_id() or 0
        if self.wait_until(names, position, self.read_wait):
            return True
        log.warning(
            "read_model_behind",
            projections=sorted(names),
            position=position,
            reached={n: self.position(n) for n in names},
        )
        return False

    def wait_until(self, names: Collection[str], position: int, timeout: float) -> bool:
        """Block until every projection in ``names`` has reached ``position``; False on timeout.

        Woken by this process's projector after each batch; a view another process
        keeps is looked at every ``WAIT_POLL`` seconds.
        """
        deadline = time.monotonic() + timeout
        waiting = [n for n in names if self._known.get(n, -1) < position]
        while waiting:
            waiting = [n for n in waiting if self.position(n) < position]
            remaining = deadline - time.monotonic()
            if not waiting:
                return True
            if remaining <= 0:
                return False
            with self._advanced:
                self._advanced.wait(min(remaining, WAIT_POLL if not self.running else 0.25))
        return True

"""The projector applies a projection after those whose rows it reads, and follows a busy
log in growing batches; Batch.of picks kinds."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, Notification, Tracking

from application.projection import Batch, Projector, _Read


class Base:
    pass


class Kind(Base):
    pass


class Other:
    pass


def batch_of(events: list[object]) -> Batch:
    notifications = [
        Notification(id=i + 1, originator_id=uuid4(), originator_version=1, topic="t", state=b"")
        for i in range(len(events))
    ]
    return Batch(notifications, events)  # type: ignore[arg-type]


def test_of_answers_the_events_of_the_kinds_asked_in_log_order() -> None:
    events: list[object] = [Kind(), Other(), Base(), Kind(), Other()]
    batch = batch_of(events)
    assert [p for p, _ in batch.of(Kind)] == [1, 4]
    assert [p for p, _ in batch.of(Base)] == [1, 3, 4]  # subclasses count
    assert [p for p, _ in batch.of(Other, Kind)] == [1, 2, 4, 5]
    assert batch.of(int) == []
    assert [p for p, _ in batch.after(3).of(Kind)] == [4]


@dataclass
class Recorder:
    """A projection that notes when it started and ended; ``seconds`` long."""

    name: str
    log: list[tuple[str, str, float]]
    seconds: float = 0.05
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def view(self) -> Any:
        return None

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        with self.lock:
            self.log.append((self.name, "start", time.monotonic()))
        time.sleep(self.seconds)
        self.log.append((self.name, "end", time.monotonic()))


def test_a_projection_comes_after_those_it_reads_and_the_rest_side_by_side() -> None:
    log: list[tuple[str, str, float]] = []
    names = ("a", "b", "c", "d")
    projector = Projector(
        None,  # type: ignore[arg-type]  # no reads of the log here
        [Recorder(n, log) for n in names],
        reads={"c": ("a",), "d": ("c", "b")},
    )
    assert projector._waves(list(names)) == [["a", "b"], ["c"], ["d"]]
    projector._known = dict.fromkeys(names, 0)
    projector.app = type("App", (), {"name": "app"})()  # type: ignore[assignment]
    try:
        projector._apply(_Read(0, batch_of([Kind()]), 1), list(names), strict=True)
    finally:
        projector.stop()
    at = {(name, what): moment for name, what, moment in log}
    assert at["a", "end"] <= at["c", "start"]
    assert at["c", "end"] <= at["d", "start"]
    assert at["b", "end"] <= at["d", "start"]
    assert at["b", "start"] < at["a", "end"]  # a and b overlapped
    assert projector._known == dict.fromkeys(names, 1)


def test_without_reads_each_projection_comes_after_the_one_before() -> None:
    projector = Projector(None, [Recorder(n, []) for n in "xyz"])  # type: ignore[arg-type]
    assert projector._waves(["x", "y", "z"]) == [["x"], ["y"], ["z"]]
    assert projector._waves(["x", "z"]) == [["x"], ["z"]]


@dataclass
class Log:
    """An application's log of ``count`` events, noting the size of every read."""

    count: int
    name: str = "app"
    limits: list[int] = field(default_factory=list)

    @property
    def recorder(self) -> Log:
        return self

    @property
    def mapper(self) -> Log:
        return self

    def select_notifications(
        self, start: int, limit: int, inclusive_of_start: bool
    ) -> list[Notification]:
        self.limits.append(limit)
        last = min(start + limit, self.count)
        return batch_of([Kind()] * last).notifications[start:last]

    def to_domain_event(self, notification: Notification) -> Kind:
        return Kind()


@dataclass
class Positions:
    """A projection that notes the positions of every batch it is given."""

    name: str = "p"
    seen: list[int] = field(default_factory=list)

    @property
    def view(self) -> Any:
        return None

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        self.seen += [n.id for n in batch.notifications]


def test_following_a_busy_log_each_full_batch_doubles_the_next_up_to_the_most() -> None:
    log, projection = Log(400), Positions()
    projector = Projector(log, [projection], batch_size=10, max_batch_size=80)  # type: ignore[arg-type]
    projector._known = {"p": 0}
    counts = [projector.step() for _ in range(9)]
    assert counts == [10, 20, 40, 80, 80, 80, 80, 10, 0]
    assert log.limits == [10, 20, 40, 80, 80, 80, 80, 80, 10]  # caught up: small again
    assert projection.seen == list(range(1, 401))


def test_a_batch_read_ahead_has_the_size_the_next_step_asks_for() -> None:
    log, projection = Log(1000), Positions()
    projector = Projector(log, [projection], batch_size=10, max_batch_size=300)  # type: ignore[arg-type]
    projector._known = {"p": 0}
    projector._reader = ThreadPoolExecutor(1)
    try:
        while projector.step():
            pass
    finally:
        projector.stop()
    assert projection.seen == list(range(1, 1001))  # each once, in order
    assert log.limits[:6] == [10, 20, 40, 80, 160, 300]
    assert max(log.limits) == 300


class StillAt:
    """A view that stays where it is."""

    def max_tracking_id(self, application_name: str) -> int:
        return 0


@dataclass
class Duplicate:
    """A projection whose view refuses the batch for a row it holds already."""

    name: str = "dup"

    @property
    def view(self) -> StillAt:
        return StillAt()

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        raise IntegrityError("duplicate key value violates unique constraint")


def test_a_refused_batch_where_the_view_did_not_move_waits_like_any_failure() -> None:
    log, other = Log(3), Positions(name="q")
    projector = Projector(log, [Duplicate(), other])  # type: ignore[arg-type]
    projector._known = {"dup": 0, "q": 0}
    assert projector.step() == 3
    assert isinstance(projector.errors["dup"], IntegrityError)  # noted, retried after a backoff
    assert "dup" in projector._retry_at
    assert other.seen == [1, 2, 3]  # the projections after it are applied all the same
    projector._known = {"dup": 0, "q": 0}
    with pytest.raises(IntegrityError, match="duplicate key"):  # catching up raises it
        projector.catch_up(names=["dup"])


@dataclass
class Slow:
    """A projection that notes its batches, each taking ``seconds``, and the thread."""

    name: str = "slow"
    seconds: float = 0.05
    seen: list[int] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    ended: list[float] = field(default_factory=list)

    @property
    def view(self) -> Any:
        return None

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        time.sleep(self.seconds)
        self.threads.add(threading.current_thread().name)
        self.seen += [n.id for n in batch.notifications]
        self.ended.append(time.monotonic())


def test_a_detached_projection_applies_a_batch_beside_the_next_one_in_order() -> None:
    log, main, slow = Log(60), Slow(name="main"), Slow()
    projector = Projector(log, [main, slow], batch_size=10, detached=["slow"])  # type: ignore[arg-type]
    projector._known = {"main": 0, "slow": 0}
    started = time.monotonic()
    counts = [projector.step() for _ in range(7)]
    projector.stop()  # waits for the batch in flight: a batch boundary
    assert counts == [10, 20, 30, 0, 0, 0, 0]  # the next read starts where it is being taken
    assert main.seen == slow.seen == list(range(1, 61))  # each once, in order
    assert main.threads == {"MainThread"}
    assert {t.split("_")[0] for t in slow.threads} == {"projection-detached"}
    # side by side: three batches of both took about three batches' time, not six
    assert time.monotonic() - started < 5 * main.seconds
    assert all(a < b for a, b in zip(slow.ended, main.ended[1:], strict=False))  # one behind


def test_catching_up_applies_a_detached_projection_with_the_rest() -> None:
    log, main, slow = Log(25), Slow(name="main", seconds=0), Slow()
    projector = Projector(log, [main, slow], batch_size=10, detached=["slow"])  # type: ignore[arg-type]
    projector._known = {"main": 0, "slow": 0}
    moved = projector._known  # where each view is: the projector's own note of it here
    projector.position = lambda name: moved[name]  # type: ignore[method-assign]
    assert projector.step() == 10  # following: the detached batch in flight
    assert projector.catch_up() == 15  # after it: from where both are
    assert main.seen == slow.seen == list(range(1, 26))
    assert len(slow.threads) == 2  # the first batch in its own thread, the rest here


@dataclass
class FailsOnce(Slow):
    failed: bool = False

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        if not self.failed and batch.notifications[0].id > 10:
            self.failed = True
            raise RuntimeError("the store went away")
        super().process(batch, tracking, after)


def test_a_detached_batch_that_fails_is_read_again_from_where_it_stopped() -> None:
    log, main, flaky = Log(40), Slow(name="main", seconds=0), FailsOnce(seconds=0)
    projector = Projector(log, [main, flaky], batch_size=10, detached=["slow"])  # type: ignore[arg-type]
    projector._known = {"main": 0, "slow": 0}
    for _ in range(4):
        projector.step()
    projector.stop()
    assert isinstance(projector.errors["slow"], RuntimeError)
    projector._retry_at.clear()  # its backoff over
    while projector.step():
        pass
    projector.stop()
    assert main.seen == list(range(1, 41))
    assert flaky.seen == list(range(1, 41))  # the failed batch again, each event once
    assert "slow" not in projector.errors

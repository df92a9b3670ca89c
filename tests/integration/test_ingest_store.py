"""Ingest against the real stores: at most once across requests, restarts and writers."""

from __future__ import annotations

import multiprocessing
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest
from eventsourcing.persistence import StoredEvent

from application.ledger import EventInput
from application.views import EventQuery
from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def register(container: Container, business: str = "default") -> str:
    return container.ledger.register_customer(
        business, email="a@b.co", name="A", phone_number=None, metadata=None, now=NOW
    ).customer_id


def events(customer: str, ids: list[int]) -> list[EventInput]:
    return [EventInput(f"e{i}", customer, "api", None, {"n": i}) for i in ids]


def stored_ids(container: Container) -> list[str]:
    """Every usage event in the log, read from the log itself (not a projection)."""
    ids: list[str] = []
    start = 0
    while notifications := container.ledger.recorder.select_notifications(
        start=start, limit=1000, inclusive_of_start=False
    ):
        start = notifications[-1].id
        for n in notifications:
            event = container.ledger.mapper.to_domain_event(n)
            if hasattr(event, "event_id"):
                ids.append(event.event_id)
    return ids


def test_repeat_across_requests_is_a_duplicate(container: Container) -> None:
    customer = register(container)
    first = container.ledger.ingest("default", events(customer, [1, 2, 3]), NOW)
    second = container.ledger.ingest("default", events(customer, [2, 3, 4]), NOW)
    assert (first.ingested_count, second.ingested_count) == (3, 1)
    assert [d.event_id for d in second.duplicates] == ["e2", "e3"]
    assert sorted(stored_ids(container)) == ["e1", "e2", "e3", "e4"]


def test_repeat_across_a_restart_is_a_duplicate(make_container) -> None:
    before = make_container()
    customer = register(before)
    assert before.ledger.ingest("default", events(customer, [1, 2]), NOW).ingested_count == 2
    before.close()
    after = make_container()
    outcome = after.ledger.ingest("default", events(customer, [1, 2, 3]), NOW)
    assert outcome.ingested_count == 1
    assert sorted(stored_ids(after)) == ["e1", "e2", "e3"]


def test_concurrent_writers_with_overlapping_batches_store_each_event_once(
    make_container,
) -> None:
    writers = [make_container() for _ in range(4)]
    customer = register(writers[0])
    rng = random.Random(7)
    batches = [rng.sample(range(600), 150) for _ in range(16)]

    def send(index: int) -> int:
        writer = writers[index % len(writers)]
        return writer.ledger.ingest("default", events(customer, batches[index]), NOW).ingested_count

    with ThreadPoolExecutor(max_workers=8) as pool:
        written = sum(pool.map(send, range(len(batches))))
    distinct = {i for batch in batches for i in batch}
    assert written == len(distinct)
    assert sorted(stored_ids(writers[0])) == sorted(f"e{i}" for i in distinct)


def _ingest_in_process(
    url: str,
    customer: str,
    ids: list[int],
    result: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    container = build(Settings(database_url=url), clock=lambda: NOW)
    try:
        outcome = container.ledger.ingest("default", events(customer, ids), NOW)
        result.put(outcome.ingested_count)
    finally:
        container.close()


def test_two_processes_with_overlapping_batches_store_each_event_once(
    container: Container, settings: Settings
) -> None:
    customer = register(container)
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    procs = [
        context.Process(
            target=_ingest_in_process,
            args=(settings.database_url, customer, list(range(k, k + 500)), result),
        )
        for k in (0, 250)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    assert result.get() + result.get() == 750
    assert len(stored_ids(container)) == 750


def test_acknowledged_events_are_committed_before_the_answer(make_container) -> None:
    writer = make_container()
    customer = register(writer)
    writer.ledger.ingest("default", events(customer, [1]), NOW)
    # A separate container (its own connections) sees it at once: the answer came after commit.
    assert stored_ids(make_container()) == ["e1"]


@pytest.mark.parametrize("offset", [timedelta(hours=-2), timedelta(minutes=10)])
def test_events_outside_the_window_are_rejected_and_not_written(
    container: Container, offset: timedelta
) -> None:
    customer = register(container)
    moment = (NOW + offset).isoformat()
    outcome = container.ledger.ingest(
        "default",
        [
            EventInput("late", customer, "api", moment, None),
            EventInput("ok", customer, "api", None, None),
        ],
        NOW,
    )
    assert [(r.index, r.code) for r in outcome.rejected] == [(0, "timestamp_out_of_window")]
    assert stored_ids(container) == ["ok"]


def test_the_usage_log_follows_the_log_exactly_once(container: Container) -> None:
    customer = register(container)
    container.ledger.ingest("default", events(customer, list(range(25))), NOW)
    projector = container.projector
    projector.batch_size = 10
    assert projector.catch_up() == 26  # one customer, 25 events
    assert projector.catch_up() == 0
    listed = container.reads.usage_log.list_events(EventQuery("default", page_size=100))
    assert sorted(e.event_id for e in listed) == sorted(f"e{i}" for i in range(25))


def test_a_batch_meeting_stored_events_is_inserted_again_without_them(
    container: Container,
) -> None:
    """PostgreSQL inserts a batch plainly, all or nothing; one that meets a stored
    event fails on the key, is rolled back whole and goes in again skipping those."""
    if not container.settings.is_postgres:
        pytest.skip("the insert of a batch is PostgreSQL's")
    recorder = container.ledger.recorder
    statements: list[str] = []
    statement_of = recorder.insert_new_statement, recorder.insert_all_statement

    def stored(ids: list[int]) -> list[StoredEvent]:
        return [StoredEvent(uuid5(NAMESPACE_URL, f"t{i}"), 1, "tests:Event", b"{}") for i in ids]

    original = recorder._insert_pipelined

    def spy(statement: Any, columns: Any) -> set[UUID]:
        statements.append("all" if statement is statement_of[1] else "new")
        return original(statement, columns)

    recorder._insert_pipelined = spy
    head = container.ledger.head()
    assert recorder.insert_new(stored([1, 2])) == {e.originator_id for e in stored([1, 2])}
    assert statements == ["all"]
    assert recorder.insert_new(stored([2, 3, 1, 4])) == {e.originator_id for e in stored([3, 4])}
    assert statements == ["all", "all", "new"]
    assert recorder.insert_new(stored([1, 4])) == set()
    rows = recorder.select_notifications(start=head, limit=10, inclusive_of_start=False)
    assert [n.originator_id for n in rows] == [e.originator_id for e in stored([1, 2, 3, 4])]

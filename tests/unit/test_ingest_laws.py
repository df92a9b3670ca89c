"""Laws of ingest, on the library's in-memory store: at most once, whatever the order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from application.errors import BatchSizeError, DuplicateEventInRequestError
from application.ledger import EventInput, Ledger
from domain.usage import TimeWindow, usage_event_id
from infrastructure.store import PerIdIdentities, stored_identities

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = TimeWindow(timedelta(hours=1), timedelta(minutes=5))


def in_memory_ledger() -> tuple[Ledger, str]:
    ledger = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"},
                    identities=stored_identities, window=WINDOW)
    customer = ledger.register_customer(
        "biz", email="a@b.co", name="A", phone_number=None, metadata=None, now=NOW
    )
    return ledger, customer.customer_id


def stored_count(ledger: Ledger, business: str, ids: set[str]) -> int:
    return sum(len(ledger.recorder.select_events(usage_event_id(business, i))) for i in ids)


batches = st.lists(
    st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=12, unique=True),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(batches)
def test_each_event_id_is_written_at_most_once(batch_ids: list[list[int]]) -> None:
    ledger, customer = in_memory_ledger()
    written = 0
    for ids in batch_ids:
        events = [EventInput(f"e{i}", customer, "api") for i in ids]
        outcome = ledger.ingest("biz", events, NOW)
        written += outcome.ingested_count
        assert outcome.ingested_count + len(outcome.duplicates) == len(ids)
    distinct = {f"e{i}" for ids in batch_ids for i in ids}
    assert written == len(distinct)
    assert stored_count(ledger, "biz", distinct) == len(distinct)


class StaleIdentities(PerIdIdentities):
    """Answers "nothing stored" once, as a probe racing a concurrent writer would."""

    lied = False

    def existing(self, ids: object) -> set[UUID]:
        if not StaleIdentities.lied:
            StaleIdentities.lied = True
            return set()
        return super().existing(ids)  # type: ignore[arg-type]


def test_a_save_that_collides_is_rebuilt_and_counts_only_what_it_wrote() -> None:
    ledger, customer = in_memory_ledger()
    ledger.ingest("biz", [EventInput("e1", customer, "api")], NOW)
    ledger._identities = StaleIdentities(ledger.recorder)
    outcome = ledger.ingest("biz", [EventInput("e1", customer, "api"),
                                    EventInput("e2", customer, "api")], NOW)
    assert outcome.ingested_count == 1
    assert [d.event_id for d in outcome.duplicates] == ["e1"]
    assert stored_count(ledger, "biz", {"e1", "e2"}) == 2


def test_batches_hold_one_to_a_thousand_events() -> None:
    ledger, customer = in_memory_ledger()
    with pytest.raises(BatchSizeError):
        ledger.ingest("biz", [], NOW)
    with pytest.raises(BatchSizeError):
        ledger.ingest("biz", [EventInput(f"e{i}", customer, "api") for i in range(1001)], NOW)


def test_an_event_id_twice_in_one_request_refuses_the_request() -> None:
    ledger, customer = in_memory_ledger()
    events = [EventInput("e1", customer, "api"), EventInput("e1", customer, "api")]
    with pytest.raises(DuplicateEventInRequestError):
        ledger.ingest("biz", events, NOW)
    assert stored_count(ledger, "biz", {"e1"}) == 0

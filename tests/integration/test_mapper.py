"""The msgspec mapper stores every event exactly and reads it back as it was."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from hypothesis import given
from hypothesis import strategies as st

from domain.customer import Customer
from domain.usage import UsageEvent
from infrastructure.mapper import ExactMapper

MAPPER = ExactMapper(transcoder=None)  # type: ignore[arg-type]
AT = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)

scalars = st.one_of(
    st.text(max_size=20).filter(lambda s: "\x00" not in s),
    st.booleans(),
    st.integers(min_value=-(10**39), max_value=10**39),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: len(d.as_tuple().digits) <= 40 and abs(d.adjusted()) <= 40
    ),
)


def round_trip(aggregate):  # type: ignore[no-untyped-def]
    [created] = aggregate.collect_events()
    stored = MAPPER.to_stored_event(created)
    return created, MAPPER.to_domain_event(stored)


@given(st.dictionaries(st.text(min_size=1, max_size=10), scalars, max_size=8))
def test_usage_events_round_trip_exactly(metadata) -> None:
    usage = UsageEvent(
        business_id="b",
        event_id="e",
        customer_id="c",
        event_name="api",
        timestamp=AT,
        metadata=metadata,
        received_at=AT,
    )
    created, back = round_trip(usage)
    assert type(back) is UsageEvent.Recorded
    assert vars(back) == vars(created)
    for key, value in metadata.items():
        assert type(back.metadata[key]) is type(value) or (
            isinstance(value, Decimal) and value == back.metadata[key]
        )
        assert str(back.metadata[key]) == str(value) or value == back.metadata[key]
    assert back.timestamp == AT
    assert back.timestamp.tzinfo is not None


def test_a_decimal_keeps_its_digits() -> None:
    usage = UsageEvent(
        business_id="b",
        event_id="e",
        customer_id="c",
        event_name="api",
        timestamp=AT,
        metadata={"cost": Decimal("0.10"), "tiny": Decimal("1E-40"), "n": 10**39},
        received_at=AT,
    )
    _, back = round_trip(usage)
    assert back.metadata == {"cost": Decimal("0.10"), "tiny": Decimal("1E-40"), "n": 10**39}
    assert str(back.metadata["cost"]) == "0.10"


def test_customers_round_trip() -> None:
    customer = Customer(
        business_id="b",
        customer_id="cus_1",
        email="a@b.co",
        name="A",
        phone_number=None,
        metadata={"tier": "gold"},
        created_at=AT,
    )
    created, back = round_trip(customer)
    assert vars(back) == vars(created)


def test_unreadable_state_names_the_event() -> None:
    stored = StoredEvent(uuid4(), 1, "domain.usage:UsageEvent.Recorded", b'{"timestamp": 5}')
    with pytest.raises(MapperDeserialisationError, match=r"UsageEvent\.Recorded"):
        MAPPER.to_domain_event(stored)

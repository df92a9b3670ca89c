"""Ingest's shortcuts answer exactly what the general code answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid5

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.ledger import _USAGE_TOPIC, _recorded
from domain.errors import InvalidMetadataError
from domain.metadata import MAX_DIGITS, validate_metadata
from domain.usage import USAGE_NAMESPACE, UsageEvent, usage_event_id
from infrastructure.mapper import ExactMapper

MAPPER = ExactMapper(transcoder=None)  # type: ignore[arg-type]
AT = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
ids = st.text(min_size=1, max_size=80).filter(lambda s: "\x00" not in s)


@given(ids, ids)
def test_the_usage_event_id_is_uuid5_of_business_and_event(business_id: str, event_id: str) -> None:
    fast = usage_event_id(business_id, event_id)
    slow = uuid5(USAGE_NAMESPACE, f"{business_id}\x1f{event_id}")
    assert fast == slow
    assert hash(fast) == hash(slow)
    assert (str(fast), fast.bytes, fast.version, fast.variant) == (
        str(slow),
        slow.bytes,
        slow.version,
        slow.variant,
    )


@given(
    ids,
    st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.one_of(st.integers(-(10**30), 10**30), st.booleans(), st.text(max_size=5)),
        max_size=5,
    ),
)
def test_the_recorded_event_is_stored_as_the_library_would_store_it(
    event_id: str, metadata: dict[str, object]
) -> None:
    fields = {
        "event_id": event_id,
        "customer_id": "cus_1",
        "event_name": "api.call",
        "timestamp": AT,
        "metadata": metadata,
        "received_at": AT + timedelta(seconds=1),
    }
    aggregate_id = usage_event_id("biz", event_id)
    built = UsageEvent.Recorded(  # type: ignore[call-arg]
        originator_id=aggregate_id,
        originator_version=UsageEvent.INITIAL_VERSION,
        originator_topic=_USAGE_TOPIC,
        business_id="biz",
        **fields,
    )
    fast = _recorded(aggregate_id, "biz", fields)
    assert vars(fast) == vars(built)
    assert list(vars(fast)) == list(vars(built))
    assert MAPPER.to_stored_event(fast) == MAPPER.to_stored_event(built)


@pytest.mark.parametrize(
    "value",
    [0, 1, -1, 10**MAX_DIGITS - 1, -(10**MAX_DIGITS - 1), 10**39, Decimal("1e40")],
)
def test_numbers_at_the_bounds_are_kept(value: object) -> None:
    assert validate_metadata({"n": value}) == {"n": value}


@pytest.mark.parametrize("value", [10**MAX_DIGITS, -(10**MAX_DIGITS), 10**100])
def test_integers_past_the_bounds_are_refused(value: int) -> None:
    with pytest.raises(InvalidMetadataError, match="out of range"):
        validate_metadata({"n": value})

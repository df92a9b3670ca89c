"""Meters through the official dodopayments SDK against the live server."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import dodopayments
import pytest
from dodopayments import DodoPayments

from tests.conftest import BOOTSTRAP_KEY

FILTER = {
    "conjunction": "or",
    "clauses": [
        {"key": "tier", "operator": "equals", "value": "pro"},
        {"key": "tokens", "operator": "greater_than", "value": 1000},
    ],
}


def sdk(live_server, key: str = BOOTSTRAP_KEY) -> DodoPayments:
    return DodoPayments(bearer_token=key, base_url=live_server.base_url, max_retries=0)


@pytest.fixture
def dodo(live_server) -> DodoPayments:
    return sdk(live_server)


def make(dodo: DodoPayments, **fields: Any) -> Any:
    return dodo.meters.create(
        **{
            "name": "Tokens",
            "event_name": "llm.tokens",
            "measurement_unit": "tokens",
            "aggregation": {"type": "sum", "key": "tokens"},
            **fields,
        }
    )


def test_create_a_meter(dodo, clock) -> None:
    meter = make(dodo, description="LLM tokens", filter=FILTER)
    assert meter.id.startswith("mtr_")
    assert (meter.name, meter.event_name, meter.measurement_unit, meter.description) == (
        "Tokens",
        "llm.tokens",
        "tokens",
        "LLM tokens",
    )
    assert (meter.aggregation.type, meter.aggregation.key) == ("sum", "tokens")
    assert meter.filter is not None
    assert meter.filter.to_dict() == FILTER
    assert meter.business_id == "default"
    assert meter.created_at == meter.updated_at == clock.now


def test_create_a_count_meter(dodo) -> None:
    meter = make(dodo, aggregation={"type": "count"})
    assert (meter.aggregation.type, meter.aggregation.key, meter.filter) == ("count", None, None)


def test_retrieve_a_meter(dodo) -> None:
    created = make(dodo, filter=FILTER)
    assert dodo.meters.retrieve(created.id) == created


def test_list_meters_newest_first_with_pages(dodo, clock) -> None:
    ids = []
    for name in ("a", "b", "c"):
        ids.append(make(dodo, name=name).id)
        clock.advance(timedelta(seconds=1))
    assert [m.id for m in dodo.meters.list().items] == ids[::-1]
    assert [m.id for m in dodo.meters.list(page_size=2).items] == [ids[2], ids[1]]
    assert [m.id for m in dodo.meters.list(page_size=2, page_number=1).items] == [ids[0]]


def test_archive_and_unarchive_a_meter(dodo) -> None:
    meter_id = make(dodo).id
    assert dodo.meters.archive(meter_id) is None
    assert [m.id for m in dodo.meters.list().items] == []
    assert [m.id for m in dodo.meters.list(archived=True).items] == [meter_id]
    assert dodo.meters.retrieve(meter_id).to_dict()["archived"] is True
    assert dodo.meters.unarchive(meter_id) is None
    assert [m.id for m in dodo.meters.list().items] == [meter_id]
    assert dodo.meters.list(archived=True).items == []


def test_update_a_meter(dodo) -> None:
    meter = make(dodo, description="old")
    updated = dodo.meters.update(meter.id, name="Input tokens", description=None)
    assert (updated.name, updated.description, updated.measurement_unit) == (
        "Input tokens",
        None,
        "tokens",
    )
    assert dodo.meters.retrieve(meter.id) == updated


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"aggregation": {"type": "count", "key": "tokens"}}, "aggregation.key"),
        ({"aggregation": {"type": "sum"}}, "aggregation.key"),
        ({"filter": {"conjunction": "and", "clauses": []}}, "filter.clauses"),
        (
            {"filter": {"conjunction": "and", "clauses": [{"key": "k", "operator": "regex"}]}},
            "filter.clauses[0].operator",
        ),
    ],
    ids=["key-on-count", "sum-without-key", "empty-clauses", "unknown-operator"],
)
def test_a_bad_definition_raises_unprocessable_entity(dodo, fields, path) -> None:
    with pytest.raises(dodopayments.UnprocessableEntityError) as raised:
        make(dodo, **fields)
    assert raised.value.status_code == 422
    assert raised.value.body["code"] == "invalid_meter"
    assert raised.value.body["detail"]["path"] == path
    assert dodo.meters.list().items == []


def test_an_unknown_meter_raises_not_found(dodo) -> None:
    with pytest.raises(dodopayments.NotFoundError):
        dodo.meters.retrieve("mtr_nobody")
    with pytest.raises(dodopayments.NotFoundError):
        dodo.meters.archive("mtr_nobody")


def test_an_ingest_key_gets_permission_denied_on_meters(live_server, container, clock) -> None:
    key = container.keys.create("default", "ingest", clock.now)
    with pytest.raises(dodopayments.PermissionDeniedError):
        sdk(live_server, key).meters.list()
    with pytest.raises(dodopayments.PermissionDeniedError):
        make(sdk(live_server, key))


def test_a_meter_made_through_the_sdk_measures_events_sent_through_it(dodo, clock) -> None:
    customer_id = dodo.customers.create(email="ada@example.com", name="Ada").customer_id
    meter = make(dodo, filter=FILTER)
    dodo.usage_events.ingest(
        events=[
            {
                "event_id": f"e{i}",
                "customer_id": customer_id,
                "event_name": "llm.tokens",
                "timestamp": clock.now - timedelta(minutes=10 * i),
                "metadata": {"tokens": tokens, "tier": tier},
            }
            for i, (tokens, tier) in enumerate([(5, "pro"), (2000, "free"), (7, "free")])
        ]
    )
    usage = dodo.get(
        f"/meters/{meter.id}/usage",
        cast_to=object,
        options={
            "params": {
                "start": (clock.now - timedelta(hours=1)).isoformat(),
                "end": (clock.now + timedelta(minutes=1)).isoformat(),
                "customer_id": customer_id,
            }
        },
    )
    assert (Decimal(usage["total"]), usage["event_count"]) == (2005, 2)

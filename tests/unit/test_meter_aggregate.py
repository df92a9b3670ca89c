"""The Meter aggregate: its events, its idempotent archive, and its stored form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.application import Application

from domain.errors import InvalidMeterError
from domain.meter import Meter, MeterSpec, meter_aggregate_id

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
FILTER = {
    "conjunction": "or",
    "clauses": [
        {
            "conjunction": "and",
            "clauses": [{"key": "tokens", "operator": "greater_than", "value": Decimal("0.5")}],
        },
        {
            "conjunction": "and",
            "clauses": [{"key": "model", "operator": "contains", "value": "gpt"}],
        },
    ],
}
SPEC = MeterSpec.parse("llm.call", {"type": "sum", "key": "tokens"}, FILTER)


def new_meter(**changes: Any) -> Meter:
    fields: dict[str, Any] = {
        "name": "Tokens",
        "description": None,
        "measurement_unit": "tokens",
        "spec": SPEC,
        "created_at": T0,
        **changes,
    }
    return Meter.define("biz_1", "mtr_abc", **fields)


def event_types(meter: Meter) -> list[str]:
    return [type(e).__name__ for e in meter.collect_events()]


def test_a_defined_meter_records_its_definition_as_plain_wire_data() -> None:
    meter = new_meter()
    (created,) = meter.collect_events()
    assert isinstance(created, Meter.Created)
    assert created.aggregation == {"type": "sum", "key": "tokens"}
    assert created.filter == FILTER
    assert type(created.filter) is dict
    assert meter.id == meter_aggregate_id("biz_1", "mtr_abc")
    assert meter.updated_at == meter.created_at == T0
    assert not meter.is_archived
    assert meter.spec == SPEC


def test_meter_ids_are_scoped_to_the_business() -> None:
    assert meter_aggregate_id("a", "mtr_1") == Meter.create_id("a", "mtr_1")
    assert meter_aggregate_id("a", "mtr_1") != meter_aggregate_id("b", "mtr_1")


def test_update_changes_the_details_and_records_updated() -> None:
    meter = new_meter()
    meter.collect_events()
    meter.update("Input tokens", "Prompt side only", "ktok", T1)
    assert event_types(meter) == ["Updated"]
    assert (meter.name, meter.description, meter.measurement_unit) == (
        "Input tokens",
        "Prompt side only",
        "ktok",
    )
    assert meter.updated_at == T1


def test_an_update_that_changes_nothing_records_nothing() -> None:
    meter = new_meter()
    meter.collect_events()
    meter.update("Tokens", None, "tokens", T1)
    assert event_types(meter) == []
    assert meter.updated_at == T0


def test_change_definition_records_the_new_spec() -> None:
    meter = new_meter()
    meter.collect_events()
    counted = MeterSpec.parse("llm.call", {"type": "count"}, None)
    meter.change_definition(counted, T1)
    assert event_types(meter) == ["DefinitionChanged"]
    assert meter.spec == counted
    assert meter.filter is None
    assert meter.aggregation == {"type": "count", "key": None}
    meter.change_definition(MeterSpec.parse("llm.call", {"type": "count", "key": None}, None), T1)
    assert event_types(meter) == []


def test_archive_and_unarchive_are_idempotent() -> None:
    meter = new_meter()
    meter.collect_events()
    meter.unarchive(T1)
    meter.archive(T1)
    meter.archive(T1 + timedelta(minutes=1))
    assert event_types(meter) == ["Archived"]
    assert meter.is_archived
    assert meter.archived_at == T1
    meter.unarchive(T1 + timedelta(minutes=2))
    meter.unarchive(T1 + timedelta(minutes=3))
    assert event_types(meter) == ["Unarchived"]
    assert not meter.is_archived
    assert meter.updated_at == T1 + timedelta(minutes=2)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": ""}, "name: must be 1 to 255 characters, not blank"),
        ({"name": "   "}, "name: must be 1 to 255 characters"),
        ({"name": "n" * 256}, "name: must be 1 to 255 characters"),
        ({"measurement_unit": ""}, "measurement_unit: must be 1 to 100 characters, not blank"),
        ({"measurement_unit": "u" * 101}, "measurement_unit: must be 1 to 100 characters"),
        ({"description": "d" * 1001}, "description: is longer than 1000 characters"),
    ],
)
def test_bad_details_are_refused_naming_the_field(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidMeterError) as caught:
        new_meter(**changes)
    assert caught.value.message.startswith(expected)
    meter = new_meter()
    meter.collect_events()
    details = {"name": "Tokens", "description": None, "measurement_unit": "tokens", **changes}
    with pytest.raises(InvalidMeterError):
        meter.update(at=T1, **details)
    assert event_types(meter) == []


def test_limits_are_inclusive() -> None:
    new_meter(name="n" * 255, measurement_unit="u" * 100, description="d" * 1000)


def test_a_meter_survives_the_event_store_with_exact_decimals() -> None:
    app = Application[Any](env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    meter = new_meter(description="All tokens")
    meter.update("Tokens", "All tokens", "ktok", T1)
    meter.archive(T1)
    app.save(meter)
    stored: Meter = app.repository.get(meter.id)
    assert stored == meter
    assert stored.spec == SPEC
    assert stored.filter is not None
    value = stored.filter["clauses"][0]["clauses"][0]["value"]
    assert value == Decimal("0.5")
    assert type(value) is Decimal

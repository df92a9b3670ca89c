"""The filter builder's form: fields to tree and back, its buttons, and the wire shape."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from api.dashboard import filter_form
from api.dashboard.filter_form import ConditionForm, FilterFormError, GroupForm
from domain.filters import parse_filter

TWO_LEVELS: dict[str, Any] = {
    "conjunction": "and",
    "clauses": [
        {"conjunction": "and", "clauses": [{"key": "region", "operator": "equals", "value": "eu"}]},
        {
            "conjunction": "or",
            "clauses": [
                {"key": "tokens", "operator": "greater_than", "value": 10},
                {"key": "ratio", "operator": "less_than_or_equals", "value": Decimal("0.5")},
                {"key": "beta", "operator": "equals", "value": True},
            ],
        },
    ],
}


def test_the_fields_name_the_tree_by_path() -> None:
    form = {
        "filter.0.conjunction": "or",
        "filter.0.0.key": "region",
        "filter.0.0.operator": "equals",
        "filter.0.0.value": "eu",
        "filter.0.1.conjunction": "and",
        "filter.0.1.0.key": "plan",
        "filter.0.1.0.operator": "contains",
        "filter.0.1.0.value": "pro",
        "name": "not a filter field",
    }
    assert filter_form.parse(form) == GroupForm(
        "or",
        (
            ConditionForm("region", "equals", "eu"),
            GroupForm("and", (ConditionForm("plan", "contains", "pro"),)),
        ),
    )


def test_no_filter_fields_is_one_blank_condition() -> None:
    assert filter_form.parse({"name": "x"}) == filter_form.BLANK
    assert filter_form.to_wire(filter_form.BLANK).filter is None


def test_a_stored_filter_round_trips_through_the_form() -> None:
    tree = filter_form.from_wire(TWO_LEVELS)
    assert filter_form.parse(filter_form.to_fields(tree)) == tree
    assert filter_form.to_wire(tree).filter == TWO_LEVELS


def test_children_are_ordered_by_number_not_text() -> None:
    form = {f"filter.0.{i}.key": f"k{i}" for i in (10, 2, 1)}
    tree = filter_form.parse(form)
    assert [c.key for c in tree.clauses if isinstance(c, ConditionForm)] == ["k1", "k2", "k10"]


def test_a_fourth_level_is_refused_when_parsed_and_when_added() -> None:
    deep = {"filter.0.0.0.0.conjunction": "and", "filter.0.0.0.0.0.key": "k"}
    with pytest.raises(FilterFormError, match="at most 3 levels deep") as parsed:
        filter_form.parse(deep)
    assert parsed.value.field == "filter.0.0.0.0"
    three = filter_form.apply(filter_form.apply(filter_form.BLANK, "add-group:0"), "add-group:0.1")
    with pytest.raises(FilterFormError, match="at most 3 levels deep") as added:
        filter_form.apply(three, "add-group:0.1.1")
    assert added.value.field == "filter.0.1.1"


def test_buttons_add_and_remove_keeping_the_rest() -> None:
    tree = GroupForm("or", (ConditionForm("region", "equals", "eu"),))
    tree = filter_form.apply(tree, "add-group:0")
    tree = filter_form.apply(tree, "add-condition:0.1")
    assert tree == GroupForm(
        "or",
        (
            ConditionForm("region", "equals", "eu"),
            GroupForm("and", (ConditionForm(), ConditionForm())),
        ),
    )
    tree = filter_form.apply(tree, "remove:0.1.0")
    tree = filter_form.apply(tree, "remove:0.0")
    assert tree == GroupForm("or", (GroupForm("and", (ConditionForm(),)),))
    assert filter_form.apply(tree, "remove:0") == GroupForm("or")


@pytest.mark.parametrize("action", ["explode:0", "add-condition:1", "remove:0.7", "add-group:0.0"])
def test_an_unknown_action_or_path_is_refused(action: str) -> None:
    tree = GroupForm("and", (ConditionForm("k", "equals", "v"),))
    with pytest.raises(FilterFormError, match=r"unknown builder action|gone"):
        filter_form.apply(tree, action)


@pytest.mark.parametrize(
    ("operator", "value", "kind", "expected"),
    [
        ("greater_than", "10", "auto", 10),
        ("less_than", "2.50", "auto", Decimal("2.50")),
        ("equals", "5", "auto", 5),
        ("equals", "true", "auto", True),
        ("equals", "eu", "auto", "eu"),
        ("equals", "5", "text", "5"),
        ("contains", "42", "auto", "42"),
        ("not_equals", "FALSE", "boolean", False),
        ("equals", "7", "number", 7),
        ("greater_than", "abc", "auto", "abc"),  # the domain refuses it, in its own words
    ],
)
def test_a_value_is_read_by_its_kind(operator: str, value: str, kind: str, expected: Any) -> None:
    tree = GroupForm("and", (ConditionForm("k", operator, value, kind),))
    wire = filter_form.to_wire(tree).filter
    assert wire is not None
    read = wire["clauses"][0]["value"]
    assert read == expected
    assert type(read) is type(expected)


def test_a_value_not_of_its_chosen_kind_is_refused_at_its_field() -> None:
    tree = GroupForm("and", (ConditionForm(), ConditionForm("k", "equals", "many", "number")))
    with pytest.raises(FilterFormError, match="'many' is not a number") as refused:
        filter_form.to_wire(tree)
    assert refused.value.field == "filter.0.1.value"


def test_blank_conditions_and_empty_groups_are_left_out() -> None:
    tree = GroupForm(
        "and",
        (ConditionForm(), GroupForm("or", (ConditionForm(),)), ConditionForm("k", "equals", "v")),
    )
    assert filter_form.to_wire(tree).filter == {
        "conjunction": "and",
        "clauses": [{"key": "k", "operator": "equals", "value": "v"}],
    }


def test_a_group_mixing_conditions_and_groups_sends_its_conditions_as_one_group() -> None:
    tree = GroupForm(
        "and",
        (
            ConditionForm("a", "equals", "1", "text"),
            GroupForm("or", (ConditionForm("b", "equals", "2", "text"),)),
            ConditionForm("c", "equals", "3", "text"),
        ),
    )
    wire = filter_form.to_wire(tree)
    assert wire.filter == {
        "conjunction": "and",
        "clauses": [
            {
                "conjunction": "and",
                "clauses": [
                    {"key": "a", "operator": "equals", "value": "1"},
                    {"key": "c", "operator": "equals", "value": "3"},
                ],
            },
            {"conjunction": "or", "clauses": [{"key": "b", "operator": "equals", "value": "2"}]},
        ],
    }
    assert parse_filter(wire.filter) is not None  # the domain accepts it
    assert wire.field_of("filter.clauses[0].clauses[1].value") == "filter.0.2.value"
    assert wire.field_of("filter.clauses[1].clauses[0].key") == "filter.0.1.0.key"
    assert wire.field_of("filter.clauses[1].conjunction") == "filter.0.1.conjunction"
    assert wire.field_of("filter.clauses") == "filter"


def test_the_layout_numbers_conditions_and_groups_in_page_order() -> None:
    row = filter_form.layout(filter_form.from_wire(TWO_LEVELS))
    assert (row.label, row.level, row.can_nest) == ("Match", 1, True)
    first, second = row.clauses
    assert isinstance(first, filter_form.GroupRow)
    assert isinstance(second, filter_form.GroupRow)
    assert second.label == "Group 3 conjunction"
    condition = first.clauses[0]
    assert isinstance(condition, filter_form.ConditionRow)
    assert condition.name == "filter.0.0.0"
    assert [condition.label(p) for p in ("key", "operator", "value", "kind")] == [
        "Filter key",
        "Filter operator",
        "Filter value",
        "Value kind",
    ]
    last = second.clauses[2]
    assert isinstance(last, filter_form.ConditionRow)
    assert (last.label("key"), last.label("kind")) == ("Condition 4 key", "Condition 4 kind")
    assert last.path == "0.1.2"

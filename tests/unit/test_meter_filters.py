"""Meter filters: every operator, the kind rules, nesting, and every refusal with its path."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from domain.errors import InvalidMeterError
from domain.filters import Condition, Conjunction, Filter, Operator, compile_filter, parse_filter
from domain.metadata import MetadataValue


def cond(key: Any, operator: str, value: Any) -> dict[str, Any]:
    return {"key": key, "operator": operator, "value": value}


def passes(raw: dict[str, Any], metadata: dict[str, MetadataValue]) -> bool:
    parsed = parse_filter(raw)
    assert parsed is not None
    return compile_filter(parsed)(metadata)


def one(operator: str, value: Any, metadata: dict[str, MetadataValue]) -> bool:
    return passes({"conjunction": "and", "clauses": [cond("k", operator, value)]}, metadata)


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("equals", 5, True),
        ("equals", Decimal("5.000"), True),
        ("equals", Decimal("5E0"), True),
        ("equals", 6, False),
        ("not_equals", 6, True),
        ("not_equals", Decimal("5.0"), False),
        ("greater_than", 4, True),
        ("greater_than", 5, False),
        ("greater_than_or_equals", 5, True),
        ("greater_than_or_equals", Decimal("5.0000001"), False),
        ("less_than", Decimal("5.01"), True),
        ("less_than", 5, False),
        ("less_than_or_equals", 5, True),
        ("less_than_or_equals", Decimal("4.99"), False),
    ],
)
@pytest.mark.parametrize("stored", [5, Decimal("5"), Decimal("5.00"), Decimal("0.5E1")])
def test_numbers_compare_exactly_whatever_their_spelling(
    operator: str, value: Any, expected: bool, stored: MetadataValue
) -> None:
    assert one(operator, value, {"k": stored}) is expected


def test_numbers_far_apart_in_scale_compare_exactly() -> None:
    huge = Decimal("1234567890123456789012345678901234567890E+1")
    just_below = Decimal("12345678901234567890123456789012345678899")
    assert one("greater_than", just_below, {"k": huge})
    assert not one("greater_than", huge, {"k": huge})
    assert one("less_than", Decimal("1E-40"), {"k": 0})
    assert one("greater_than", Decimal("-1E-40"), {"k": 0})
    assert one(
        "less_than", -(10**40), {"k": Decimal("-1.0000000000000000000000000000000000001E+40")}
    )


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("equals", "Hello", True),
        ("equals", "hello", False),
        ("not_equals", "hello", True),
        ("not_equals", "Hello", False),
        ("contains", "ell", True),
        ("contains", "ELL", False),
        ("contains", "", True),
        ("does_not_contain", "xyz", True),
        ("does_not_contain", "ell", False),
    ],
)
def test_strings_compare_exactly_and_case_sensitively(
    operator: str, value: str, expected: bool
) -> None:
    assert one(operator, value, {"k": "Hello"}) is expected


@pytest.mark.parametrize(
    ("operator", "value", "stored", "expected"),
    [
        ("equals", True, True, True),
        ("equals", False, True, False),
        ("not_equals", False, True, True),
        ("not_equals", True, True, False),
        ("equals", False, False, True),
    ],
)
def test_booleans_compare_as_booleans(
    operator: str, value: bool, stored: bool, expected: bool
) -> None:
    assert one(operator, value, {"k": stored}) is expected


@pytest.mark.parametrize(
    ("operator", "value", "stored"),
    [
        ("equals", True, 1),
        ("not_equals", False, 1),
        ("equals", 1, True),
        ("not_equals", 2, True),
        ("greater_than", 0, True),
        ("equals", 5, "5"),
        ("not_equals", 6, "5"),
        ("greater_than", 1, "5"),
        ("less_than_or_equals", 9, "5"),
        ("equals", "5", 5),
        ("not_equals", "x", 5),
        ("contains", "5", 5),
        ("does_not_contain", "x", 5),
        ("does_not_contain", "x", True),
        ("equals", "true", True),
    ],
)
def test_a_value_of_another_kind_never_passes(operator: str, value: Any, stored: Any) -> None:
    assert one(operator, value, {"k": stored}) is False


@pytest.mark.parametrize(
    ("operator", "value"),
    [
        ("equals", "x"),
        ("not_equals", "x"),
        ("not_equals", 1),
        ("not_equals", True),
        ("greater_than", 0),
        ("greater_than_or_equals", 0),
        ("less_than", 0),
        ("less_than_or_equals", 0),
        ("contains", "x"),
        ("does_not_contain", "x"),
    ],
)
def test_a_missing_key_never_passes(operator: str, value: Any) -> None:
    assert one(operator, value, {"other": "x"}) is False


AND_OF_TWO = {"conjunction": "and", "clauses": [cond("a", "equals", 1), cond("b", "equals", 2)]}
OR_OF_TWO = {"conjunction": "or", "clauses": [cond("a", "equals", 1), cond("b", "equals", 2)]}


@pytest.mark.parametrize(
    ("metadata", "both", "either"),
    [
        ({"a": 1, "b": 2}, True, True),
        ({"a": 1, "b": 3}, False, True),
        ({"a": 0, "b": 2}, False, True),
        ({"a": 0}, False, False),
        ({}, False, False),
    ],
)
def test_and_needs_every_clause_or_needs_one(
    metadata: dict[str, MetadataValue], both: bool, either: bool
) -> None:
    assert passes(AND_OF_TWO, metadata) is both
    assert passes(OR_OF_TWO, metadata) is either


def test_two_levels_combine_or_of_ands() -> None:
    raw = {
        "conjunction": "or",
        "clauses": [
            {
                "conjunction": "and",
                "clauses": [cond("tier", "equals", "pro"), cond("n", "greater_than", 10)],
            },
            {
                "conjunction": "and",
                "clauses": [cond("tier", "equals", "free"), cond("n", "greater_than", 100)],
            },
        ],
    }
    assert passes(raw, {"tier": "pro", "n": 11})
    assert not passes(raw, {"tier": "free", "n": 11})
    assert passes(raw, {"tier": "free", "n": 101})
    assert not passes(raw, {"tier": "team", "n": 1000})


def three_levels(inner: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "conjunction": "and",
        "clauses": [
            {
                "conjunction": "or",
                "clauses": [
                    {"conjunction": "and", "clauses": inner},
                    {"conjunction": "and", "clauses": [cond("vip", "equals", True)]},
                ],
            },
            {"conjunction": "and", "clauses": [cond("region", "not_equals", "cn")]},
        ],
    }


def test_three_levels_are_allowed_and_evaluate() -> None:
    raw = three_levels([cond("n", "greater_than_or_equals", 5), cond("path", "contains", "/v1/")])
    assert passes(raw, {"n": 5, "path": "/v1/x", "region": "eu"})
    assert not passes(raw, {"n": 5, "path": "/v1/x", "region": "cn"})
    assert passes(raw, {"n": 0, "vip": True, "region": "eu"})
    assert not passes(raw, {"n": 0, "vip": True})  # region missing: not_equals is false


def test_a_fourth_level_is_refused_with_its_path() -> None:
    fourth = {"conjunction": "and", "clauses": [cond("n", "equals", 1)]}
    with pytest.raises(InvalidMeterError) as caught:
        parse_filter(three_levels([fourth]))
    assert caught.value.code == "invalid_meter"
    assert caught.value.message.startswith(
        "filter.clauses[0].clauses[0].clauses[0]: filters nest at most 3 levels deep"
    )


def test_no_filter_is_none() -> None:
    assert parse_filter(None) is None


def test_parsed_filters_are_frozen_hashable_values() -> None:
    parsed = parse_filter(three_levels([cond("n", "equals", Decimal("1.5"))]))
    again = parse_filter(three_levels([cond("n", "equals", Decimal("1.5"))]))
    assert parsed == again
    assert hash(parsed) == hash(again)
    assert isinstance(parsed, Filter)
    assert parsed.conjunction is Conjunction.AND
    with pytest.raises(AttributeError):
        parsed.conjunction = Conjunction.OR  # type: ignore[misc]


def test_true_and_one_make_different_conditions() -> None:
    assert Condition("k", Operator.EQUALS, True) != Condition("k", Operator.EQUALS, 1)
    assert Condition("k", Operator.EQUALS, 1) == Condition("k", Operator.EQUALS, Decimal("1.0"))


@pytest.mark.parametrize(
    "raw",
    [
        {"conjunction": "or", "clauses": [cond("k", "equals", "x"), cond("n", "less_than", -3)]},
        three_levels([cond("n", "equals", Decimal("1E+40")), cond("b", "not_equals", False)]),
    ],
)
def test_the_wire_form_round_trips(raw: dict[str, Any]) -> None:
    parsed = parse_filter(raw)
    assert parsed is not None
    assert parsed.to_wire() == raw
    assert parse_filter(parsed.to_wire()) == parsed


def refusal(raw: object) -> str:
    with pytest.raises(InvalidMeterError) as caught:
        parse_filter(raw)
    assert caught.value.code == "invalid_meter"
    return caught.value.message


def clauses(*items: object) -> dict[str, Any]:
    return {"conjunction": "and", "clauses": list(items)}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["not", "an", "object"], "filter: must be an object, not a list"),
        (
            {"conjunction": "xor", "clauses": [cond("k", "equals", 1)]},
            "filter.conjunction: 'xor' is not one of: and, or",
        ),
        ({"clauses": [cond("k", "equals", 1)]}, "filter.conjunction: null is not one of"),
        ({"conjunction": "and"}, "filter.clauses: must be a non-empty list"),
        (clauses(), "filter.clauses: must be a non-empty list"),
        ({"conjunction": "and", "clauses": "k=1"}, "filter.clauses: must be a non-empty list"),
        (clauses(cond("k", "equals", 1), "k=1"), "filter.clauses[1]: must be an object, not 'k=1'"),
        (
            clauses(cond("k", "equals", 1), clauses(cond("k", "equals", 2))),
            "filter.clauses: mixes conditions and nested filters",
        ),
        (
            clauses(clauses(cond("k", "equals", 1)), clauses()),
            "filter.clauses[1].clauses: must be a non-empty list",
        ),
        ({**clauses(cond("k", "equals", 1)), "negate": True}, "filter: unknown field 'negate'"),
        (
            clauses({**cond("k", "equals", 1), "case": "insensitive"}),
            "filter.clauses[0]: unknown field 'case'",
        ),
        (
            clauses(cond("k", "equals", 1), cond("k", "like", "a%")),
            "filter.clauses[1].operator: 'like' is not one of: equals, not_equals",
        ),
        (clauses(cond("k", "EQUALS", 1)), "filter.clauses[0].operator: 'EQUALS' is not one of"),
        (
            clauses({"operator": "equals", "value": 1}),
            "filter.clauses[0].key: a metadata key (a non-empty string) is required",
        ),
        (clauses(cond("", "equals", 1)), "filter.clauses[0].key: a metadata key"),
        (clauses(cond(7, "equals", 1)), "filter.clauses[0].key: a metadata key"),
        (
            clauses(cond("k" * 101, "equals", 1)),
            "filter.clauses[0].key: is longer than 100 characters",
        ),
        (
            clauses({"key": "k", "operator": "equals"}),
            "filter.clauses[0].value: must be a string, number or boolean, not null",
        ),
        (
            clauses(cond("k", "equals", [1])),
            "filter.clauses[0].value: must be a string, number or boolean, not a list",
        ),
        (clauses(cond("k", "equals", 1.5)), "filter.clauses[0].value: is a float"),
        (
            clauses(cond("k", "equals", Decimal("NaN"))),
            "filter.clauses[0].value: NaN is not a finite number",
        ),
        (
            clauses(cond("k", "greater_than", Decimal("Infinity"))),
            "filter.clauses[0].value: Infinity is not a finite number",
        ),
        (
            clauses(cond("k", "less_than", Decimal("-Infinity"))),
            "filter.clauses[0].value: -Infinity is not a finite number",
        ),
        (
            clauses(cond("k", "equals", Decimal("sNaN"))),
            "filter.clauses[0].value: sNaN is not a finite number",
        ),
        (
            clauses(cond("k", "equals", "x" * 501)),
            "filter.clauses[0].value: is longer than 500 characters",
        ),
        (
            clauses(cond("k", "greater_than", "5")),
            "filter.clauses[0].value: greater_than compares numbers; '5' is not a number",
        ),
        (
            clauses(cond("k", "less_than_or_equals", True)),
            "filter.clauses[0].value: less_than_or_equals compares numbers; true is not a number",
        ),
        (
            clauses(cond("k", "contains", 5)),
            "filter.clauses[0].value: contains looks for text; 5 is not a string",
        ),
        (
            clauses(cond("k", "does_not_contain", False)),
            "filter.clauses[0].value: does_not_contain looks for text; false",
        ),
    ],
)
def test_bad_filters_are_refused_naming_the_path(raw: object, expected: str) -> None:
    assert refusal(raw).startswith(expected)

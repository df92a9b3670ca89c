from __future__ import annotations

from decimal import Decimal

import pytest

from domain.errors import InvalidMetadataError
from domain.metadata import validate_metadata


def test_flat_values_are_kept_exactly() -> None:
    raw = {"s": "x", "b": True, "i": 12345678901234567890, "d": Decimal("0.1")}
    assert validate_metadata(raw) == raw


def test_missing_metadata_is_empty() -> None:
    assert validate_metadata(None) == {}


@pytest.mark.parametrize(
    "raw",
    [
        {"nested": {"a": 1}},
        {"array": [1, 2]},
        {"null": None},
        {"": "empty key"},
        {"k" * 101: 1},
        {"long": "x" * 501},
        {f"k{i}": i for i in range(51)},
        {"nan": Decimal("NaN")},
        {"huge": Decimal("1e41")},
        {"tiny": Decimal("1e-41")},
        {"digits": Decimal("1." + "1" * 40)},
    ],
)
def test_unacceptable_metadata_is_refused(raw: dict[str, object]) -> None:
    with pytest.raises(InvalidMetadataError):
        validate_metadata(raw)


def test_limits_themselves_are_accepted() -> None:
    raw: dict[str, object] = {f"k{i}": i for i in range(49)}
    raw["k" * 100] = "x" * 500
    assert len(validate_metadata(raw)) == 50

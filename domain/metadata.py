"""Flat metadata: the rules for the key/value pairs an event or customer carries.

Values are strings, booleans, integers or decimals. Numbers are kept exactly as
sent: the wire decoder hands us ``Decimal`` for every JSON number with a
fraction or exponent, so ``0.1`` stays ``0.1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from domain.errors import InvalidMetadataError
from domain.text import is_storable

MAX_KEYS = 50
MAX_KEY_LENGTH = 100
MAX_STRING_LENGTH = 500
# Bounds on metered numbers: enough for bytes, tokens and money, small enough
# that every sum of a billing cycle stays exact under a 60-digit context.
MAX_DIGITS = 40
MAX_ADJUSTED_EXPONENT = 40
_SMALL = 10 ** min(MAX_DIGITS, MAX_ADJUSTED_EXPONENT + 1)  # an int below it is in bounds

MetadataValue = str | bool | int | Decimal
Metadata = dict[str, MetadataValue]


@dataclass(frozen=True, slots=True)
class UnreadableMetadata:
    """Metadata the wire decoder could not read (say, an integer of 5,000 digits).

    Carried to validation so that one such event is rejected on its own, like
    any other bad metadata, instead of sinking its whole batch.
    """

    reason: str


def validate_metadata(raw: Mapping[str, object] | UnreadableMetadata | None) -> Metadata:
    """Return ``raw`` as checked flat metadata, or raise ``InvalidMetadataError``."""
    if raw is None:
        return {}
    if isinstance(raw, UnreadableMetadata):
        raise InvalidMetadataError(f"metadata could not be read: {raw.reason}")
    if not isinstance(raw, Mapping):
        kind = type(raw).__name__
        raise InvalidMetadataError(f"metadata must be an object of flat values, not {kind}")
    if len(raw) > MAX_KEYS:
        raise InvalidMetadataError(f"metadata has {len(raw)} keys; at most {MAX_KEYS} allowed")
    checked: Metadata = {}
    for key, value in raw.items():
        _check_key(key)
        checked[key] = _check_value(key, value)
    return checked


def _check_key(key: str) -> None:
    if not key:
        raise InvalidMetadataError("metadata keys must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidMetadataError(
            f"metadata key {key[:20]!r}... is longer than {MAX_KEY_LENGTH} characters"
        )
    if not is_storable(key):
        raise InvalidMetadataError(f"metadata key {key[:20]!r} contains the NUL character")


def _check_value(key: str, value: object) -> MetadataValue:
    if isinstance(value, bool | str):
        if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
            raise InvalidMetadataError(
                f"metadata[{key!r}] is longer than {MAX_STRING_LENGTH} characters"
            )
        if isinstance(value, str) and not is_storable(value):
            raise InvalidMetadataError(f"metadata[{key!r}] contains the NUL character (U+0000)")
        return value
    if type(value) is int and -_SMALL < value < _SMALL:
        return value  # within every bound: no Decimal needed
    if isinstance(value, int | Decimal):
        _check_number(key, Decimal(value))
        return value
    kind = "null" if value is None else type(value).__name__
    raise InvalidMetadataError(
        f"metadata[{key!r}] is {kind}; values must be strings, numbers or booleans"
    )


def _check_number(key: str, number: Decimal) -> None:
    if not number.is_finite():
        raise InvalidMetadataError(f"metadata[{key!r}] is not a finite number")
    digits = len(number.as_tuple().digits)
    if digits > MAX_DIGITS or abs(number.adjusted()) > MAX_ADJUSTED_EXPONENT:
        raise InvalidMetadataError(
            f"metadata[{key!r}] is out of range: at most {MAX_DIGITS} significant digits "
            f"and magnitudes within 1e±{MAX_ADJUSTED_EXPONENT}"
        )

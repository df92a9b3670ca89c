"""Rules every stored string obeys, whatever field it fills."""

from __future__ import annotations

NUL = "\x00"


def is_storable(value: str) -> bool:
    """False for text a database cannot hold faithfully (PostgreSQL refuses U+0000)."""
    return NUL not in value

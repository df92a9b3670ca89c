"""Each projection, found by name, rebuilt alone, gives the live rows; the others stay put."""

from __future__ import annotations

from typing import Any

import pytest

from infrastructure.audit import snapshot
from infrastructure.projections import NAMES, REGISTRY, registered
from infrastructure.rebuild import rebuild
from infrastructure.runtime import status
from tests.integration.test_audit import billed  # noqa: F401 - the fixture: a log of every kind


def rows(container: Any, name: str) -> tuple[int, dict[str, list[tuple[Any, ...]]]]:
    """The rows the audit compares (the seal's by event: a rebuild seals in other batches)."""
    entry = registered(name)
    return snapshot(container.views[name], entry.tables, container.ledger.name, entry.compared)


def test_each_projection_rebuilt_alone_equals_the_live_one(billed: Any) -> None:  # noqa: F811
    live = {name: rows(billed, name) for name in NAMES}
    assert all(tables for _, tables in live.values())
    for name in NAMES:
        others = {n: rows(billed, n) for n in NAMES if n != name}
        assert rebuild(billed, name) > 0
        assert rows(billed, name) == live[name], name
        assert {n: rows(billed, n) for n in NAMES if n != name} == others  # untouched
    assert {s.name: s.behind for s in status(billed)} == dict.fromkeys(NAMES, 0)


def test_one_registry_names_every_projection_once(billed: Any) -> None:  # noqa: F811
    assert list(NAMES) == [p.name for p in REGISTRY] == list(billed.projector.names)
    assert len(set(NAMES)) == len(NAMES)
    assert NAMES.index("usage_log") < NAMES.index("usage")  # the usage projection reads it
    with pytest.raises(KeyError, match="no projection 'event_index'"):
        registered("event_index")

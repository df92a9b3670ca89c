"""On PostgreSQL a read model's batch commits without waiting for the WAL to reach disk;
the log's own writes still do. A read model is derived: a batch lost to a server crash
is applied again from the log, which is written durably before ingest answers."""

from __future__ import annotations

from typing import Any

import pytest

from infrastructure.bootstrap import Container
from infrastructure.projections import NAMES
from tests.integration.test_ingest_store import NOW, events, register


def synchronous_commit(curs: Any) -> str:
    curs.execute("SHOW synchronous_commit")
    return str(curs.fetchone()["synchronous_commit"])  # the library's rows are dicts


def test_each_view_commits_its_batches_asynchronously_and_the_log_does_not(
    container: Container,
) -> None:
    if not container.settings.is_postgres:
        pytest.skip("an asynchronous commit is PostgreSQL's")
    seen: dict[str, list[str]] = {}
    for name in NAMES:
        view = container.views[name]
        original = view._insert_tracking

        def noting(
            curs: Any, tracking: Any, *, _name: str = name, _original: Any = original
        ) -> None:
            seen.setdefault(_name, []).append(synchronous_commit(curs))
            _original(curs, tracking)

        view._insert_tracking = noting  # type: ignore[method-assign]
    container.ledger.ingest("default", events(register(container), list(range(5))), NOW)
    container.projector.catch_up()
    assert seen == {name: ["off"] for name in NAMES}  # every view wrote its batch so
    datastore = container.ledger.recorder.datastore  # type: ignore[attr-defined]
    for _ in range(datastore.pool.max_size if datastore.pool else 1):  # every pooled connection
        with datastore.transaction(commit=False) as curs:
            assert synchronous_commit(curs) == "on"  # the setting ended with each batch

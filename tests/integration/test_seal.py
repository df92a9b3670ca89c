"""The seal in segments, one a batch: the chain at every position is the fold of the
log's digests whichever batches sealed it; an older layout is sealed again from the
log; an edited segment is named by the audit."""

from __future__ import annotations

from application.audit import verify_log
from application.seal import digests_of
from domain.seal import GENESIS, chain
from infrastructure.bootstrap import Container
from infrastructure.seal_views import PostgresSeal, SQLiteSeal
from tests.integration.test_ingest_store import NOW, events, register


def logged(container: Container) -> list[tuple[int, str]]:
    """(position, chain value at it) for every stored event, folded from the log itself."""
    notifications = container.ledger.recorder.select_notifications(start=1, limit=10_000)
    sealed = digests_of(notifications)
    found, previous = [], GENESIS
    for position, digest in zip(sealed.positions, sealed.digests, strict=True):
        previous = chain(previous, digest)
        found.append((position, previous))
    return found


def filled(container: Container, batch_size: int) -> list[tuple[int, str]]:
    customer = register(container)
    for first in range(0, 20, 5):
        container.ledger.ingest("default", events(customer, list(range(first, first + 5))), NOW)
    container.ledger.ingest("default", events(customer, [3, 4, 20]), NOW)  # two already stored
    container.projector.batch_size = batch_size
    container.projector.catch_up()
    return logged(container)


def sql(container: Container, statement: str) -> None:
    with container.views["seal"].datastore.transaction(commit=True) as curs:
        curs.execute(statement)


def test_the_chain_at_each_position_is_the_fold_of_the_log(container: Container) -> None:
    expected = filled(container, batch_size=4)
    seal = container.reads.seal
    segments = seal.segments(0, 100)
    assert len(segments) == -(-len(expected) // 4)  # one a batch
    assert [s.position for segment in segments for s in segment.seals] == [p for p, _ in expected]
    assert [s.chain_before for s in segments] == [GENESIS] + [s.chain for s in segments[:-1]]
    for position, value in expected:
        assert seal.chain_at(position) == value
    assert seal.chain_at(0) == GENESIS
    assert seal.chain_at(expected[-1][0] + 100) == expected[-1][1]
    pages = seal.segments(0, 2), seal.segments(segments[1].seals[0].position, 100)
    assert [*pages[0], *pages[1]] == segments


def test_positions_between_sealed_events_take_the_chain_before_them(
    container: Container,
) -> None:
    expected = filled(container, batch_size=100)  # one segment
    positions = [p for p, _ in expected]
    gaps = [p for p in range(positions[0], positions[-1]) if p not in positions]
    if container.settings.is_postgres:  # the batch meeting stored events took ids it gave back
        assert gaps
    chains = dict(expected)
    for gap in gaps:
        assert container.reads.seal.chain_at(gap) == chains[max(p for p in positions if p < gap)]


def test_a_seal_of_the_older_layout_is_sealed_again_from_the_log(container: Container) -> None:
    expected = filled(container, batch_size=7)
    view = container.views["seal"]
    sql(container, "DROP TABLE seal")
    sql(
        container,
        "CREATE TABLE seal (position BIGINT NOT NULL PRIMARY KEY, originator_id TEXT NOT NULL, "
        "version BIGINT NOT NULL, digest TEXT NOT NULL, chain TEXT NOT NULL)",
    )
    kind = PostgresSeal if container.settings.is_postgres else SQLiteSeal
    again = kind(view.datastore)
    again.create_table()
    assert again.max_tracking_id(container.ledger.name) in (None, 0)
    container.projector.catch_up()
    for position, value in expected:
        assert container.reads.seal.chain_at(position) == value


def test_an_edited_segment_is_named_by_the_audit(container: Container) -> None:
    expected = filled(container, batch_size=5)
    assert verify_log(container.ledger, container.reads)[2] == []
    first = container.reads.seal.segments(0, 100)[1].seals[0].position
    sql(container, f"UPDATE seal SET chain = '{'1' * 64}' WHERE first_position = {first}")
    found = verify_log(container.ledger, container.reads)[2]
    assert [m.detail for m in found] == [
        "the seal chain is broken here: the seal was edited",
        "the seal chain is broken here: the seal was edited, or a part of it removed",
    ]
    assert found[0].subject.startswith(f"seal from position {first} to ")
    third = container.reads.seal.segments(0, 100)[2]
    assert found[1].subject.startswith(f"seal before position {third.seals[0].position} ")
    assert len(expected) > 10

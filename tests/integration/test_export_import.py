"""`ledger events export | import` moves the whole log between stores, positions and bytes intact.

A store on SQLite gets customers, meters, a priced product with credits,
backdated subscriptions, usage, a void, late usage and finalized invoices; its
export is imported into a fresh PostgreSQL database (and the other way round),
the projections are rebuilt, and the new store must hold the same events at the
same positions and answer every read the same. A refused import writes nothing.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import msgspec
import pytest
from eventsourcing.persistence import StoredEvent

from api.cli.events import add_commands
from api.cli.projections import rebuild_all
from application.billing import invoice_record
from application.transfer import ExportReader, InvalidExportError, export_events
from infrastructure.audit import audit
from infrastructure.bootstrap import build
from infrastructure.export import import_events
from infrastructure.projections import NAMES
from infrastructure.runtime import close_cycles
from infrastructure.settings import Settings
from tests.api.helpers import client_for, make_customer
from tests.api.test_billing_api import meter, subscribe
from tests.api.test_credits_api import entitlement
from tests.conftest import (
    BOOTSTRAP_KEY,
    PG_HOST,
    PG_PORT,
    PG_USER,
    FakeClock,
    _create_pg_database,
    _drop_pg_database,
)

BUSINESS = "default"
Make = Callable[[str], Settings]


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Make]:
    """Settings of a fresh empty store of kind ``sqlite`` or ``postgres``."""
    databases: list[str] = []

    def make(kind: str) -> Settings:
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path}/{len(databases)}-{kind}/ledger.sqlite"
        else:
            name = _create_pg_database()
            url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
        databases.append(url)
        return Settings(
            database_url=url,
            bootstrap_api_key=BOOTSTRAP_KEY,
            follower_poll_seconds=0.01,
            backdate_window=timedelta(days=40),
        )

    yield make
    for url in databases:
        if url.startswith("postgresql://"):
            _drop_pg_database(url.rsplit("/", 1)[1])


def populate(settings: Settings, clock: FakeClock) -> dict[str, Any]:
    """Two customers billed over two cycles, with credits, a void and late usage."""
    with served(settings, clock) as client:
        cids = [make_customer(client, f"c{i}@example.com", f"C{i}") for i in range(2)]
        calls = meter(client, "api.call", {"type": "count"})
        tokens = meter(client, "api.call", {"type": "sum", "key": "tokens"})
        ent = entitlement(client, rollover_enabled=True, rollover_percentage=50)
        product_id = priced_product(client, calls, tokens, ent)
        begun = (clock.now - timedelta(days=35)).isoformat()
        subs = [subscribe(client, c, product_id, start_date=begun).json() for c in cids]
        in_cycle_0 = clock.now - timedelta(days=20)
        for n, cid in enumerate(cids):
            send(client, cid, in_cycle_0, f"a{n}", 300 + 200 * n, tokens="1.25")
        void = client.post("/events/a0-7/void", json={"reason": "test traffic"})
        assert void.status_code == 200, void.text
        entry = {"amount": "40", "entry_type": "credit", "idempotency_key": "promo-1"}
        posted = client.post(
            f"/credit-entitlements/{ent}/balances/{cids[0]}/ledger-entries", json=entry
        )
        assert posted.status_code in (200, 201), posted.text
    container = build(settings, clock)
    try:
        assert len(close_cycles(container, catch_up=True)) == 2
    finally:
        container.close()
    with served(settings, clock) as client:
        send(client, cids[1], in_cycle_0, "late", 5, tokens="3")  # after cycle 0 was finalized
        clock.advance(timedelta(days=31))
        send(client, cids[0], clock.now - timedelta(hours=2), "b", 50, tokens="0.5")
    container = build(settings, clock)
    try:
        assert len(close_cycles(container, catch_up=True)) == 2
    finally:
        container.close()
    return {
        "customers": cids,
        "meters": [calls, tokens],
        "entitlement": ent,
        "subscriptions": [s["subscription_id"] for s in subs],
    }


@contextmanager
def served(settings: Settings, clock: FakeClock) -> Iterator[Any]:
    """A client over a new container; the projections reach the head before it closes."""
    container = build(settings, clock)
    with client_for(container) as client:
        yield client
        container.projector.catch_up()


def priced_product(client: Any, calls: str, tokens: str, ent: str) -> str:
    price = {
        "type": "usage_based_price",
        "currency": "USD",
        "fixed_price": 100,
        "payment_frequency_count": 1,
        "payment_frequency_interval": "Month",
        "meters": [
            {
                "meter_id": calls,
                "price_per_unit": "2",
                "free_threshold": 10,
                "credit_entitlement_id": ent,
                "meter_units_per_credit": "1",
            },
            {"meter_id": tokens, "price_per_unit": "0.37", "free_threshold": 100},
        ],
    }
    body = {
        "name": "Plan",
        "tax_category": "saas",
        "price": price,
        "credit_entitlements": [{"credit_entitlement_id": ent, "credits_amount": "200"}],
    }
    response = client.post("/products", json=body)
    assert response.status_code == 200, response.text
    product_id: str = response.json()["product_id"]
    return product_id


def send(client: Any, cid: str, at: Any, prefix: str, count: int, **metadata: Any) -> None:
    events = [
        {
            "event_id": f"{prefix}-{i}",
            "customer_id": cid,
            "event_name": "api.call",
            "timestamp": (at + timedelta(seconds=i)).isoformat(),
            "metadata": metadata,
        }
        for i in range(count)
    ]
    response = client.post("/events/ingest", json={"events": events})
    assert response.json()["ingested_count"] == count, response.text


def answers(settings: Settings, clock: FakeClock, world: dict[str, Any]) -> dict[str, Any]:
    """What the API answers about everything ``populate`` made."""
    out: dict[str, Any] = {}
    with served(settings, clock) as client:

        def get(path: str, **params: Any) -> Any:
            response = client.get(path, params=params)
            assert response.status_code == 200, (path, response.text)
            out[f"{path} {sorted(params.items())}"] = response.json()
            return response.json()

        listed = get("/invoices", page_size=100)["items"]
        assert len(listed) == 4
        for item in listed:
            get(f"/invoices/{item['invoice_id']}")
        get("/events", page_size=1000)
        get("/customers", page_size=100)
        get("/meters", page_size=100)
        window = {
            "start": (clock.now - timedelta(days=70)).isoformat(),
            "end": clock.now.isoformat(),
        }
        ent = world["entitlement"]
        get(f"/credit-entitlements/{ent}/balances", page_size=100)
        for mtr in world["meters"]:
            get(f"/meters/{mtr}/usage", window="day", **window)
            for cid in world["customers"]:
                get(f"/meters/{mtr}/usage", window="day", customer_id=cid, **window)
        for cid in world["customers"]:
            get(f"/credit-entitlements/{ent}/balances/{cid}")
            get(f"/credit-entitlements/{ent}/balances/{cid}/ledger", page_size=100)
            get(f"/credit-entitlements/{ent}/balances/{cid}/grants", page_size=100)
        for sub in world["subscriptions"]:
            get(f"/subscriptions/{sub}/usage-history", page_size=100)
    return out


def stored_log(settings: Settings) -> list[tuple[int, str, int, str, bytes]]:
    container = build(settings)
    try:
        notifications = container.ledger.recorder.select_notifications(None, 1_000_000)
        return [
            (n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
            for n in notifications
        ]
    finally:
        container.close()


def records(settings: Settings, invoice_ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """Each finalized InvoiceRecord as the log holds it."""
    container = build(settings)
    try:
        found = [invoice_record(container.ledger, BUSINESS, i) for i in invoice_ids]
        return {
            r.invoice_id: (r.sha256, r.document, r.cut, r.total_minor, r.version) for r in found
        }
    finally:
        container.close()


def invoice_ids(said: dict[str, Any]) -> list[str]:
    return [i["invoice_id"] for i in said["/invoices [('page_size', 100)]"]["items"]]


def events_cli(*args: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    monkeypatch.setenv("LEDGER_LOG_LEVEL", "warning")
    root = argparse.ArgumentParser(prog="ledger")
    add_commands(root.add_subparsers(dest="command", required=True))
    parsed = root.parse_args(["events", *args])
    code: int = parsed.run(parsed)
    return code


def export_to(settings: Settings, path: Path) -> None:
    container = build(settings)
    try:
        with path.open("wb") as out:
            export_events(container.ledger, out)
    finally:
        container.close()


def import_from(settings: Settings, path: Path) -> int:
    """Import ``path`` and rebuild the projections; the number of events imported."""
    container = build(settings)
    try:
        with path.open("rb") as source:
            summary = import_events(container.ledger, ExportReader(source), batch=7)
        rebuild_all(container, list(NAMES))
        return summary.count
    finally:
        container.close()


@pytest.mark.postgres
def test_a_sqlite_log_moves_to_postgres_and_answers_the_same(
    make_store: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    source, target = make_store("sqlite"), make_store("postgres")
    world = populate(source, clock)
    before = answers(source, clock, world)
    dump = tmp_path / "log.ndjson"
    assert (
        events_cli(
            "export",
            "--output",
            str(dump),
            database_url=source.database_url,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert (
        events_cli("import", str(dump), database_url=target.database_url, monkeypatch=monkeypatch)
        == 0
    )
    assert stored_log(target) == stored_log(source)  # positions, ids, topics, bytes
    ids = invoice_ids(before)
    assert records(target, ids) == records(source, ids)
    assert answers(target, clock, world) == before
    audited = build(target)
    try:  # the moved log checks out: seal, every invoice folded again, every projection
        report = audit(audited)
        assert report.ok, report.mismatches
        assert report.invoices == len(ids)
    finally:
        audited.close()
    again = tmp_path / "again.ndjson"
    export_to(target, again)
    assert again.read_bytes() == dump.read_bytes()


@pytest.mark.postgres
def test_a_postgres_log_moves_to_sqlite_and_answers_the_same(
    make_store: Make, tmp_path: Path
) -> None:
    clock = FakeClock()
    source, target = make_store("postgres"), make_store("sqlite")
    world = populate(source, clock)
    before = answers(source, clock, world)
    dump = tmp_path / "log.ndjson"
    export_to(source, dump)
    assert import_from(target, dump) == len(stored_log(source))
    assert stored_log(target) == stored_log(source)
    ids = invoice_ids(before)
    assert records(target, ids) == records(source, ids)
    assert answers(target, clock, world) == before


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_log_continues_after_the_imported_positions(
    make_store: Make, tmp_path: Path, kind: str
) -> None:
    clock = FakeClock()
    source, target = make_store("sqlite"), make_store(kind)
    world = populate(source, clock)
    dump = tmp_path / "log.ndjson"
    export_to(source, dump)
    import_from(target, dump)
    head = stored_log(target)[-1][0]
    with served(target, clock) as client:
        send(client, world["customers"][0], clock.now, "after-import", 3)
        listed = client.get("/events", params={"event_id": "after-import-0"})
        assert listed.status_code == 200
    assert [row[0] for row in stored_log(target)[-3:]] == [head + 1, head + 2, head + 3]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_import_into_a_store_that_holds_events_is_refused(
    make_store: Make,
    tmp_path: Path,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock()
    source, target = make_store("sqlite"), make_store(kind)
    populate(source, clock)
    dump = tmp_path / "log.ndjson"
    export_to(source, dump)
    with served(target, clock) as client:
        make_customer(client)
    held = stored_log(target)
    code = events_cli(
        "import", str(dump), database_url=target.database_url, monkeypatch=monkeypatch
    )
    assert code != 0
    assert "already holds events" in capsys.readouterr().err
    assert stored_log(target) == held


def _drop_trailer(lines: list[bytes]) -> list[bytes]:
    return lines[:-1]


def _cut_mid_line(lines: list[bytes]) -> list[bytes]:
    return [*lines[:40], lines[40][:25]]


def _edit_a_state(lines: list[bytes]) -> list[bytes]:
    edited = lines[30].replace(b'\\"', b'\\"x', 1)
    assert edited != lines[30]
    return [*lines[:30], edited, *lines[31:]]


def _drop_an_event(lines: list[bytes]) -> list[bytes]:
    return [*lines[:30], *lines[31:]]


def _fix_the_count_not_the_hash(lines: list[bytes]) -> list[bytes]:
    trailer = msgspec.json.decode(lines[-1])
    trailer["count"] -= 1
    return [*lines[:30], *lines[31:-1], msgspec.json.encode(trailer) + b"\n"]


def _append_after_the_trailer(lines: list[bytes]) -> list[bytes]:
    return [*lines, lines[5]]


@pytest.mark.parametrize(
    "damage",
    [
        _drop_trailer,
        _cut_mid_line,
        _edit_a_state,
        _drop_an_event,
        _fix_the_count_not_the_hash,
        _append_after_the_trailer,
    ],
)
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_truncated_or_edited_export_is_refused_with_nothing_written(
    make_store: Make, tmp_path: Path, kind: str, damage: Callable[[list[bytes]], list[bytes]]
) -> None:
    source, target = make_store("sqlite"), make_store(kind)
    populate(source, FakeClock())
    dump = tmp_path / "log.ndjson"
    export_to(source, dump)
    damaged = tmp_path / "damaged.ndjson"
    damaged.write_bytes(b"".join(damage(dump.read_bytes().splitlines(keepends=True))))
    with pytest.raises(InvalidExportError):
        import_from(target, damaged)
    assert stored_log(target) == []
    assert import_from(target, dump) > 0  # the store is still empty and usable


def test_a_state_that_is_not_utf8_round_trips_byte_for_byte(make_store: Make) -> None:
    source, target = make_store("sqlite"), make_store("sqlite")
    container = build(source)
    states = [b"\xff\xfe not text", '{"name":"Zoë \\u2028"}'.encode(), b"{}"]
    container.ledger.recorder.insert_events(
        [StoredEvent(uuid4(), 1, "tests:Raw", state) for state in states]
    )
    buffer = io.BytesIO()
    export_events(container.ledger, buffer)
    container.close()
    assert b'"state_base64":' in buffer.getvalue()
    buffer.seek(0)
    container = build(target)
    try:
        import_events(container.ledger, ExportReader(buffer))
    finally:
        container.close()
    assert [row[4] for row in stored_log(target)] == states
    assert stored_log(target) == stored_log(source)

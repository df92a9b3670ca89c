"""Replay: the state at a log position equals what the API answered at that position.

The story records what the API answers (meter usage, the open invoice, a credit
balance) and the log position and time then, and keeps going: more usage, late
usage of a past cycle, a void, manual credit entries, a finalization, a new
meter. A replay at the recorded position, or as of the recorded time, must show
the recorded answers. The clock is the real one: the library stamps most events
from it, so the service's clock must agree with it, as in production.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from api.cli.replay import add_commands
from application.errors import InvalidParameterError, NotFoundError
from application.replay import Replay, position_at, replay, replay_as_of
from application.usage_report import Window
from infrastructure.logging import configure_logging
from infrastructure.runtime import close_cycles
from tests.api.helpers import client_for, make_customer
from tests.api.test_billing_api import meter, subscribe
from tests.api.test_credits_api import credit_product, entitlement, send


class WallClock:
    def __call__(self) -> datetime:
        return datetime.now(UTC)

    @property
    def now(self) -> datetime:
        return self()


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@dataclass(frozen=True)
class Answers:
    """What the API answered at one log position, and when."""

    position: int
    moment: datetime
    usage: dict[str, tuple[Decimal, int]]  # customer -> (total, event_count) this month
    preview: dict[str, Any]
    balance: dict[str, Any]


@dataclass(frozen=True)
class Story:
    client: Any
    container: Any
    ada: str
    bob: str
    calls: str
    entitlement: str
    then: Answers
    now: Answers


def answers(story: dict[str, Any], client: Any, container: Any) -> Answers:
    container.projector.catch_up()
    month_start = Window.MONTH.floor(datetime.now(UTC))
    window = {"start": month_start.isoformat(), "end": Window.MONTH.next(month_start).isoformat()}
    usage = {}
    for cid in (story["ada"], story["bob"]):
        params = {**window, "window": "month", "customer_id": cid}
        body = client.get(f"/meters/{story['calls']}/usage", params=params).json()
        usage[cid] = (Decimal(str(body["total"])), body["event_count"])
    preview = client.get(f"/subscriptions/{story['sub']}/invoice-preview").json()
    balance = client.get(f"/credit-entitlements/{story['ent']}/balances/{story['ada']}").json()
    position = container.ledger.recorder.max_notification_id()
    assert preview["invoice"]["cut"] == position  # nothing was written while reading
    moment = datetime.now(UTC)
    time.sleep(0.002)  # whatever comes next is recorded after ``moment``
    return Answers(position, moment, usage, preview, balance)


@pytest.fixture
def story(make_container, clock) -> Iterator[Story]:
    container = make_container(backdate_window=timedelta(days=40))
    with client_for(container) as client:
        ada = make_customer(client)
        bob = make_customer(client, email="bob@example.com", name="Bob")
        calls = meter(client, "api.call", {"type": "count"})
        ent = entitlement(client)  # overage billed at 2 cents a call
        product_id = credit_product(client, calls, ent)  # 1,000 credits a cycle, 100 fixed
        begun = clock.now - timedelta(days=35)  # cycle 0 has ended, cycle 1 is open
        sub = subscribe(client, ada, product_id, start_date=begun.isoformat()).json()
        ids = {"ada": ada, "bob": bob, "calls": calls, "ent": ent, "sub": sub["subscription_id"]}
        send(client, ada, clock.now - timedelta(days=20), "old", 300)  # cycle 0
        send(client, ada, clock.now - timedelta(seconds=30), "new", 1200)  # cycle 1
        send(client, bob, clock.now - timedelta(seconds=30), "bob", 7)
        entries = f"/credit-entitlements/{ent}/balances/{ada}/ledger-entries"
        assert client.post(entries, json={"amount": "100", "entry_type": "credit"}).is_success
        then = answers(ids, client, container)
        send(client, ada, clock.now - timedelta(seconds=10), "more", 50)
        send(client, ada, clock.now - timedelta(days=20), "late", 3)  # late usage of cycle 0
        assert client.post("/events/new-0/void", json={"reason": "test"}).is_success
        assert client.post(entries, json={"amount": "30", "entry_type": "debit"}).is_success
        assert client.post(entries, json={"amount": "500", "entry_type": "credit"}).is_success
        assert len(close_cycles(container, catch_up=True)) == 1  # cycle 0 finalized
        meter(client, "api.call", {"type": "count"})  # defined after the position
        now = answers(ids, client, container)
        yield Story(client, container, ada, bob, calls, ent, then, now)


def figures(found: Replay) -> tuple[Any, ...]:
    """The replay's figures in the shapes the API answered them."""
    usage = {(m.meter_id, m.customer_id): (m.value, m.events) for m in found.meters}
    [invoice] = found.invoices
    [balance] = found.balances
    return usage, invoice.document, balance


def assert_answers(found: Replay, story: Story, answers: Answers) -> None:
    usage, document, balance = figures(found)
    assert usage == {(story.calls, cid): answered for cid, answered in answers.usage.items()}
    assert document == answers.preview
    assert format(balance.balance, "f") == answers.balance["balance"]
    assert balance.updated_at == datetime.fromisoformat(answers.balance["updated_at"])
    last = answers.balance["last_transaction_at"]
    assert balance.last_transaction_at == datetime.fromisoformat(last)


def test_the_story_changed_every_figure(story: Story) -> None:
    then, now = story.then, story.now
    assert now.usage[story.ada] != then.usage[story.ada]
    assert now.preview["sha256"] != then.preview["sha256"]
    assert now.balance["balance"] != then.balance["balance"]


def test_a_replay_at_a_recorded_position_shows_what_the_api_answered_then(story: Story) -> None:
    found = replay(
        story.container.ledger,
        story.container.reads.usage_log,
        position=story.then.position,
        business_id="default",
    )
    assert_answers(found, story, story.then)
    assert found.position == story.then.position
    assert found.moment is not None
    assert found.moment <= story.then.moment


def test_a_replay_as_of_a_recorded_time_shows_what_the_api_answered_then(story: Story) -> None:
    ledger = story.container.ledger
    assert position_at(ledger, story.then.moment) == story.then.position
    found = replay_as_of(
        ledger, story.container.reads.usage_log, moment=story.then.moment, business_id="default"
    )
    assert found.position == story.then.position
    assert_answers(found, story, story.then)


def test_a_replay_at_the_head_shows_what_the_api_answers_now(story: Story) -> None:
    found = replay(
        story.container.ledger,
        story.container.reads.usage_log,
        position=story.now.position,
        business_id="default",
    )
    usage, document, _ = figures(found)
    assert document == story.now.preview
    # The meter defined last counts the same events as the first one.
    [later] = {meter_id for meter_id, _ in usage} - {story.calls}
    for cid, answered in story.now.usage.items():
        assert usage[story.calls, cid] == usage[later, cid] == answered


def test_a_replay_for_one_customer_shows_only_theirs(story: Story) -> None:
    found = replay(
        story.container.ledger,
        story.container.reads.usage_log,
        position=story.then.position,
        business_id="default",
        customer_id=story.bob,
    )
    assert [(m.customer_id, m.value) for m in found.meters] == [
        (story.bob, story.then.usage[story.bob][0])
    ]
    assert (found.balances, found.invoices) == ((), ())


def test_a_customer_registered_after_the_position_is_unknown_there(story: Story) -> None:
    with pytest.raises(NotFoundError, match="did not exist at position 1"):
        replay(
            story.container.ledger,
            story.container.reads.usage_log,
            position=1,
            business_id="default",
            customer_id=story.bob,
        )


def test_a_position_before_every_event_shows_nothing(story: Story) -> None:
    ledger, index = story.container.ledger, story.container.reads.usage_log
    assert position_at(ledger, datetime(2000, 1, 1, tzinfo=UTC)) == 0
    found = replay(ledger, index, position=0, business_id="default")
    assert (found.moment, found.meters, found.balances, found.invoices) == (None, (), (), ())


@pytest.fixture
def quiet(container, clock) -> Any:
    """A store with one customer, the usage log up to date."""
    container.ledger.register_customer(
        "default",
        email="ada@example.com",
        name="Ada",
        phone_number=None,
        metadata=None,
        now=clock(),
    )
    container.projector.catch_up()
    return container


@pytest.mark.parametrize(
    ("position", "message"), [(10**6, "beyond the log's head"), (-1, "0 or more")]
)
def test_a_position_outside_the_log_is_refused(quiet, position: int, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        replay(quiet.ledger, quiet.reads.usage_log, position=position, business_id="default")


def test_a_moment_without_a_zone_is_refused(quiet) -> None:
    with pytest.raises(InvalidParameterError, match="zone"):
        position_at(quiet.ledger, datetime(2026, 12, 1))


def test_an_unknown_customer_is_refused(quiet) -> None:
    head = quiet.ledger.recorder.max_notification_id()
    with pytest.raises(NotFoundError, match="cus_nope"):
        replay(
            quiet.ledger,
            quiet.reads.usage_log,
            position=head,
            business_id="default",
            customer_id="cus_nope",
        )


# The command line, through its parser


def ledger_replay(settings, monkeypatch, *argv: str) -> int:
    monkeypatch.setenv("LEDGER_DATABASE_URL", settings.database_url)
    root = argparse.ArgumentParser(prog="ledger")
    add_commands(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["replay", *argv])
    try:
        code: int = args.run(args)
    finally:
        configure_logging("json", "warning")  # as the test suite had it
    return code


def test_the_command_prints_the_replay_as_json(story, settings, monkeypatch, capsys) -> None:
    at = str(story.then.position)
    assert ledger_replay(settings, monkeypatch, "--at", at, "--json") == 0
    body = json.loads(capsys.readouterr().out)
    [invoice] = body["open_invoices"]
    assert {k: v for k, v in invoice.items() if k not in ("status", "cycle_index")} == (
        story.then.preview
    )
    assert (invoice["status"], invoice["cycle_index"]) == ("active", 1)
    [balance] = body["credit_balances"]
    assert balance["balance"] == story.then.balance["balance"]
    usage = {m["customer_id"]: (Decimal(m["value"]), m["event_count"]) for m in body["meters"]}
    assert usage == story.then.usage


def test_the_command_replays_as_of_a_time_for_one_customer(
    story, settings, monkeypatch, capsys
) -> None:
    as_of = story.then.moment.isoformat()
    argv = ("--as-of", as_of, "--customer", story.ada, "--json")
    assert ledger_replay(settings, monkeypatch, *argv) == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["position"], body["customer_id"]) == (story.then.position, story.ada)
    assert [m["value"] for m in body["meters"]] == [str(story.then.usage[story.ada][0])]
    assert body["open_invoices"][0]["sha256"] == story.then.preview["sha256"]


def test_the_command_prints_tables(story, settings, monkeypatch, capsys) -> None:
    assert ledger_replay(settings, monkeypatch, "--at", str(story.then.position)) == 0
    out = capsys.readouterr().out
    assert f"log position {story.then.position}" in out
    assert story.then.preview["sha256"] in out
    balance_row = next(line for line in out.splitlines() if line.startswith(story.entitlement))
    assert balance_row.split()[:3] == [story.entitlement, story.ada, story.then.balance["balance"]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--at", "1000000"), "beyond the log's head"),
        (("--at", "-1"), "0 or more"),
        (("--as-of", "2026-12-01T00:00:00"), "has no zone"),
        (("--as-of", "yesterday"), "not ISO 8601"),
        (("--at", "1", "--customer", "cus_nope"), "cus_nope"),
    ],
)
def test_the_command_refuses_bad_input_with_one_line(
    quiet, settings, monkeypatch, capsys, argv: tuple[str, ...], message: str
) -> None:
    assert ledger_replay(settings, monkeypatch, *argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_the_command_needs_a_position_or_a_time(settings, monkeypatch) -> None:
    with pytest.raises(SystemExit) as exit_:
        ledger_replay(settings, monkeypatch, "--at", "1", "--as-of", "2026-12-01T00:00:00Z")
    assert exit_.value.code == 2

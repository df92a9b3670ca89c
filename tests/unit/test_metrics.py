"""The metrics' pieces: what each record_* counts, and the families a scrape reads from the store.

Counters are process-wide, so each test compares a sample before and after.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from application.billing_tasks import Tick
from application.delivery import Outcome
from application.ledger import Duplicate, IngestOutcome, Rejection
from infrastructure.metrics import (
    UNMATCHED,
    PoolStats,
    pool_stats,
    record_attempt,
    record_billing,
    record_ingest,
    record_request,
)
from infrastructure.runtime import ProjectionStatus
from infrastructure.scrape import StoreState, pool_families, state_families
from infrastructure.settings import ConfigError, Settings


def delta(name: str, **labels: str) -> Callable[[], float]:
    """How much the sample has grown since this was called."""
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    return lambda: (REGISTRY.get_sample_value(name, labels) or 0.0) - before


def samples(families) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_a_request_is_counted_by_method_route_and_status() -> None:
    grown = delta(
        "ledger_http_requests_total", method="GET", route="/meters/{meter_id}", status="404"
    )
    record_request("GET", "/meters/{meter_id}", 404, 0.01)
    assert grown() == 1


def test_a_request_no_route_matched_is_counted_under_one_fixed_label() -> None:
    grown = delta("ledger_http_requests_total", method="GET", route=UNMATCHED, status="404")
    record_request("GET", None, 404, 0.01)
    record_request("GET", None, 404, 0.01)
    assert grown() == 2


def test_an_unknown_method_is_counted_as_other() -> None:
    grown = delta("ledger_http_requests_total", method="other", route=UNMATCHED, status="405")
    record_request("BREW", None, 405, 0.01)
    assert grown() == 1


def test_a_request_is_timed_into_the_bucket_of_its_duration() -> None:
    name = "ledger_http_request_duration_seconds_bucket"
    fast = delta(name, method="POST", route="/timed", le="0.05")
    slow = delta(name, method="POST", route="/timed", le="0.025")
    count = delta("ledger_http_request_duration_seconds_count", method="POST", route="/timed")
    record_request("POST", "/timed", 200, 0.04)
    assert (fast(), slow(), count()) == (1, 0, 1)


def test_ingest_counts_each_event_by_outcome_and_rejections_by_code() -> None:
    accepted = delta("ledger_events_total", outcome="accepted")
    duplicate = delta("ledger_events_total", outcome="duplicate")
    rejected = delta("ledger_events_total", outcome="rejected")
    unknown = delta("ledger_events_rejected_total", code="unknown_customer")
    window = delta("ledger_events_rejected_total", code="timestamp_out_of_window")
    record_ingest(
        IngestOutcome(
            ingested_count=3,
            duplicates=(Duplicate(1, "e1"),),
            rejected=(
                Rejection(2, "e2", "unknown_customer", "no such customer"),
                Rejection(4, "e4", "unknown_customer", "no such customer"),
                Rejection(5, "e5", "timestamp_out_of_window", "too old"),
            ),
        )
    )
    assert (accepted(), duplicate(), rejected(), unknown(), window()) == (3, 1, 3, 2, 1)


def test_a_billing_run_counts_the_cycles_it_finalized() -> None:
    ok = delta("ledger_billing_runs_total", outcome="ok")
    finalized = delta("ledger_billing_cycles_finalized_total")
    record_billing(Tick(finalized=[object(), object()]))  # type: ignore[list-item]
    record_billing(Tick())
    assert (ok(), finalized()) == (2, 2)


def test_a_failed_billing_run_is_counted_as_failed() -> None:
    failed = delta("ledger_billing_runs_total", outcome="failed")
    finalized = delta("ledger_billing_cycles_finalized_total")
    record_billing(None)
    assert (failed(), finalized()) == (1, 0)


@pytest.mark.parametrize(
    ("outcome", "retried", "label"),
    [
        (Outcome(204), False, "delivered"),
        (Outcome(500, "boom"), True, "retry"),
        (Outcome(None, "timed out"), False, "failed"),
    ],
    ids=["2xx", "failed-tried-again", "failed-given-up"],
)
def test_a_webhook_attempt_is_counted_by_outcome(outcome, retried, label) -> None:
    grown = delta("ledger_webhook_attempts_total", outcome=label)
    record_attempt(outcome, retried=retried)
    assert grown() == 1


def test_an_unreachable_store_gives_only_database_up_zero() -> None:
    assert samples(state_families(None)) == {("ledger_database_up", ()): 0}


def test_each_projection_has_its_position_and_how_far_behind_the_head_it_is() -> None:
    state = StoreState(
        head=120,
        projections=(ProjectionStatus("catalogue", 120, 120), ProjectionStatus("usage", 90, 120)),
        messages={},
    )
    found = samples(state_families(state))
    assert found[("ledger_database_up", ())] == 1
    assert found[("ledger_log_head", ())] == 120
    assert found[("ledger_projection_position", (("projection", "usage"),))] == 90
    assert found[("ledger_projection_behind", (("projection", "usage"),))] == 30
    assert found[("ledger_projection_behind", (("projection", "catalogue"),))] == 0


def test_webhook_messages_are_given_for_every_status_absent_ones_as_zero() -> None:
    state = StoreState(head=0, projections=(), messages={"delivered": 7, "failed": 1})
    found = samples(state_families(state))
    by_status = {
        dict(labels)["status"]: value
        for (name, labels), value in found.items()
        if name == "ledger_webhook_messages"
    }
    assert by_status == {"pending": 0, "delivered": 7, "failed": 1}


def test_the_pool_families_are_in_use_waiting_and_max() -> None:
    found = samples(pool_families(PoolStats(in_use=3, waiting=2, max_size=8)))
    assert found == {
        ("ledger_db_pool_connections_in_use", ()): 3,
        ("ledger_db_pool_requests_waiting", ()): 2,
        ("ledger_db_pool_connections_max", ()): 8,
    }


def test_a_store_without_a_connection_pool_has_no_pool_stats() -> None:
    assert pool_stats(object()) is None


def test_the_metrics_token_is_read_from_the_environment() -> None:
    token = "metrics-token-0123456789"
    assert Settings.from_env({"LEDGER_METRICS_TOKEN": token}).metrics_token == token
    assert Settings.from_env({}).metrics_token is None


def test_a_short_metrics_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="LEDGER_METRICS_TOKEN must be at least 16"):
        Settings.from_env({"LEDGER_METRICS_TOKEN": "short"})


def test_the_billing_interval_is_read_from_the_environment() -> None:
    assert Settings.from_env({"LEDGER_BILLING_INTERVAL": "0.5"}).billing_interval_seconds == 0.5


def test_a_billing_interval_of_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match="LEDGER_BILLING_INTERVAL must be more than 0"):
        Settings.from_env({"LEDGER_BILLING_INTERVAL": "0"})

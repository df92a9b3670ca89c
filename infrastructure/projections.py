"""The one registry of projections: each one's name, its view on either store, its tables.

Adding a projection is one entry here (beside its own modules). The order is
the order a projector applies them in: one that reads another's rows comes
after it (``usage`` recounts from ``usage_log``).

On PostgreSQL every view lives in the store's database, each with its own
tracking table; on SQLite each is a file of its own beside the store's
(``ledger.usage_log.sqlite``...), so one being rebuilt holds no lock on another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from application import catalogue, credit_balances, outbox, schedule, seal, usage, usage_log
from application.ledger import Ledger
from application.measure import TallyMeasure
from application.projection import Projection
from domain.credit_account import CreditAccount
from infrastructure import (
    catalogue_views,
    credit_views,
    outbox_views,
    schedule_views,
    seal_views,
    usage_log_views,
    usage_views,
)

Views = Mapping[str, Any]  # projection name -> its view


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    sqlite: Callable[[SQLiteDatastore], Any]
    postgres: Callable[[PostgresDatastore], Any]
    tables: tuple[str, ...]  # what a rebuild drops, what the audit compares
    make: Callable[[Ledger, Views], Projection]
    # The projections whose rows this one reads while it applies a batch: it is applied
    # after them; the rest of a batch's projections are applied side by side.
    reads: tuple[str, ...] = ()
    # Nothing another projection reads, no state shared: following the log, it applies
    # a batch beside the next one's (``Projector``'s detached ones).
    detached: bool = False
    # The rows the audit compares, from a table's stored rows: by default those rows.
    compared: Callable[[str, list[tuple[Any, ...]]], list[tuple[Any, ...]]] | None = None


def _account_at(ledger: Ledger) -> Callable[[Any, int], CreditAccount]:
    return lambda aggregate_id, version: cast(
        "CreditAccount", ledger.aggregate_at(aggregate_id, version)
    )


REGISTRY: tuple[Registered, ...] = (
    Registered(
        catalogue.CatalogueProjection.name,
        catalogue_views.SQLiteCatalogue,
        catalogue_views.PostgresCatalogue,
        catalogue_views.NAMES,
        lambda ledger, views: catalogue.CatalogueProjection(
            views[catalogue.CatalogueProjection.name], ledger.aggregate_at
        ),
    ),
    Registered(
        usage_log.UsageLogProjection.name,
        usage_log_views.SQLiteUsageLog,
        usage_log_views.PostgresUsageLog,
        usage_log_views.NAMES,
        lambda _, views: usage_log.UsageLogProjection(views[usage_log.UsageLogProjection.name]),
    ),
    Registered(
        seal.SealProjection.name,
        seal_views.SQLiteSeal,
        seal_views.PostgresSeal,
        seal_views.NAMES,
        lambda _, views: seal.SealProjection(views[seal.SealProjection.name]),
        detached=True,
        compared=seal_views.compared,
    ),
    Registered(
        usage.UsageProjection.name,
        usage_views.SQLiteUsageStore,
        usage_views.PostgresUsageStore,
        usage_views.NAMES,
        lambda ledger, views: usage.UsageProjection(
            views[usage.UsageProjection.name], views[usage_log.UsageLogProjection.name], ledger.name
        ),
        reads=(usage_log.UsageLogProjection.name,),
    ),
    Registered(
        credit_balances.CreditBalanceProjection.name,
        credit_views.SQLiteCreditStore,
        credit_views.PostgresCreditStore,
        credit_views.NAMES,
        lambda ledger, views: credit_balances.CreditBalanceProjection(
            views[credit_balances.CreditBalanceProjection.name], _account_at(ledger)
        ),
        detached=True,
    ),
    Registered(
        schedule.ScheduleProjection.name,
        schedule_views.SQLiteSchedule,
        schedule_views.PostgresSchedule,
        schedule_views.NAMES,
        lambda ledger, views: schedule.ScheduleProjection(
            views[schedule.ScheduleProjection.name], ledger.aggregate_at
        ),
        detached=True,
    ),
    # Last: its alerts measure from the usage tallies at the batch's end.
    Registered(
        outbox.OutboxProjection.name,
        outbox_views.SQLiteOutbox,
        outbox_views.PostgresOutbox,
        outbox_views.NAMES,
        lambda ledger, views: outbox.OutboxProjection(
            views[outbox.OutboxProjection.name],
            ledger,
            TallyMeasure(
                views[usage.UsageProjection.name],
                views[usage_log.UsageLogProjection.name],
                ledger.name,
            ),
            outbox.cycle_finder(views[catalogue.CatalogueProjection.name].subscriptions_of, ledger),
        ),
        reads=(
            catalogue.CatalogueProjection.name,
            usage_log.UsageLogProjection.name,
            usage.UsageProjection.name,
        ),
    ),
)
NAMES = tuple(entry.name for entry in REGISTRY)


def registered(name: str) -> Registered:
    for entry in REGISTRY:
        if entry.name == name:
            return entry
    raise KeyError(f"no projection {name!r}; there are: {', '.join(NAMES)}")


def make_views(datastore: Any, sqlite_path: Callable[[str], Path]) -> dict[str, Any]:
    """Every projection's view over the store's ``datastore`` (PostgreSQL) or over a
    SQLite file of its own at ``sqlite_path(name)``; tables created."""
    views: dict[str, Any] = {}
    for entry in REGISTRY:
        if isinstance(datastore, PostgresDatastore):
            view = entry.postgres(datastore)
        else:
            view = entry.sqlite(SQLiteDatastore(str(sqlite_path(entry.name)), lock_timeout=30))
        view.create_table()
        views[entry.name] = view
    return views


def make_projections(ledger: Ledger, views: Views) -> list[Projection]:
    return [entry.make(ledger, views) for entry in REGISTRY]


READS = {entry.name: entry.reads for entry in REGISTRY}
DETACHED = tuple(entry.name for entry in REGISTRY if entry.detached)

"""The composition root: one place wires store, applications, projections and keys."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from application.billing import finalize_due
from application.credit_balances import CreditBalanceProjection
from application.event_index import EventIndexProjection
from application.follower import BatchProjection, LogFollower
from application.ledger import Ledger
from application.ports import CreditStore, EventIndex
from application.usage import UsageProjection, UsageStore, log_history
from domain.invoice_record import InvoiceRecord
from domain.usage import TimeWindow
from infrastructure.credit_views import PostgresCreditStore, SQLiteCreditStore
from infrastructure.keys import KeyStore
from infrastructure.rebuild import rebuild_usage_in_parallel
from infrastructure.settings import Settings
from infrastructure.store import (
    eventsourcing_env,
    projection_sqlite_path,
    schema_lock,
    stored_identities,
)
from infrastructure.usage_views import PostgresUsageStore, SQLiteUsageStore
from infrastructure.views import PostgresEventIndex, SQLiteEventIndex

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


REBUILD_BATCH = 5000
PARALLEL_FROM = 100_000  # log entries; below this, worker start-up costs more than it saves


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    position: int
    head: int

    @property
    def behind(self) -> int:
        return max(self.head - self.position, 0)


@dataclass
class Container:
    settings: Settings
    ledger: Ledger
    event_index: EventIndex
    follower: LogFollower  # the event index's
    usage: UsageStore
    usage_follower: LogFollower
    keys: KeyStore
    credits: CreditStore
    credit_follower: LogFollower
    clock: Callable[[], datetime] = field(default=utc_now)
    _projections: dict[str, Callable[[], BatchProjection]] = field(default_factory=dict)
    _billing_stop: threading.Event = field(default_factory=threading.Event)
    _billing_thread: threading.Thread | None = None

    @property
    def followers(self) -> tuple[LogFollower, ...]:
        return (self.follower, self.usage_follower, self.credit_follower)

    @property
    def projection_position(self) -> int:
        """How far every projection has got: the least of their positions."""
        return min(f.position for f in self.followers)

    def projection(self, name: str) -> LogFollower:
        for follower in self.followers:
            if follower.projection.name == name:
                return follower
        known = ", ".join(f.projection.name for f in self.followers)
        raise KeyError(f"no projection {name!r}; there are: {known}")

    def status(self) -> list[ProjectionStatus]:
        """Each projection's position and how far it is behind the log's head."""
        head = self.ledger.recorder.max_notification_id() or 0
        return [ProjectionStatus(f.projection.name, f.position, head) for f in self.followers]

    def rebuild(
        self,
        name: str,
        on_batch: Callable[[int, int], None] | None = None,
        *,
        workers: int | None = None,
        parallel_from: int = PARALLEL_FROM,
    ) -> int:
        """Drop projection ``name`` and build it again from the whole log.

        Returns the number of log entries the rebuild read. The usage projection
        of a log of at least ``parallel_from`` entries is tallied in ``workers``
        processes (default: one per core) up to the head, then followed as usual.
        A projection that another process follows at the same time stays correct
        (the tracking row is the guard) but that process keeps its old in-memory
        state: stop it first.
        """
        old = self.projection(name)
        old.stop()
        old.projection.view.reset()
        projection = self._projections[name]()
        read = 0
        workers = workers or os.cpu_count() or 1
        head = self.ledger.recorder.max_notification_id() or 0
        if isinstance(projection, UsageProjection) and workers > 1 and head >= parallel_from:
            _, read = rebuild_usage_in_parallel(
                self.settings, self.ledger, projection, workers, on_batch
            )
        fresh = LogFollower(
            self.ledger,
            projection,
            batch_size=REBUILD_BATCH,
            poll_interval=self.settings.follower_poll_seconds,
        )
        if name == EventIndexProjection.name:
            self.follower = fresh
        elif name == CreditBalanceProjection.name:
            self.credit_follower = fresh
        else:
            self.usage_follower = fresh
        return read + fresh.catch_up(on_batch)

    def close_cycles(self, *, catch_up: bool = False) -> list[InvoiceRecord]:
        """Finalize every cycle that ended at least the grace period ago; idempotent.

        The folds read the event index up to its position, which is each
        invoice's cut: every event at or before it is in the index. ``catch_up``
        brings the index up to date in this thread (when no follower runs here).
        """
        if catch_up:
            self.follower.catch_up()
        else:
            self.wait_for_reads()
        return finalize_due(
            self.ledger,
            self.event_index,
            now=self.clock(),
            grace=self.settings.invoice_grace,
            cut=self.follower.position,
        )

    def start_billing(self) -> None:
        """Close due cycles now and then, in the background, until ``close``."""

        def run() -> None:
            while not self._billing_stop.wait(self.settings.billing_interval_seconds):
                try:
                    closed = self.close_cycles()
                except Exception as error:  # noqa: BLE001 - try again next time
                    log.warning("billing_close_failed", error=str(error))
                    continue
                if closed:
                    log.info("invoices_finalized", count=len(closed))

        self._billing_thread = threading.Thread(target=run, name="billing", daemon=True)
        self._billing_thread.start()

    def start_projections(self) -> None:
        for follower in self.followers:
            follower.start()

    def wait_for_reads(self) -> None:
        """Read-your-writes for listings: wait until the projections have the log's head."""
        head = self.ledger.recorder.max_notification_id()
        if not head:
            return
        for follower in self.followers:
            if not follower.wait_for(head, timeout=self.settings.read_wait_seconds):
                log.warning(
                    "read_model_behind",
                    projection=follower.projection.name,
                    head=head,
                    position=follower.position,
                )

    def database_problem(self) -> str | None:
        """None when the store answers; otherwise why not."""
        datastore = self.ledger.recorder.datastore  # type: ignore[attr-defined]
        try:
            if isinstance(datastore, PostgresDatastore):
                datastore.pool.open(wait=False)
                with datastore.pool.connection(timeout=2.0) as conn:
                    conn.execute("SELECT 1")
            else:
                with datastore.transaction(commit=False) as curs:
                    curs.execute("SELECT 1")
        except Exception as error:  # noqa: BLE001 - any failure means "not ready"
            return f"{type(error).__name__}: {str(error).strip()[:200]}"
        return None

    def close(self) -> None:
        self._billing_stop.set()
        if self._billing_thread is not None:
            self._billing_thread.join(timeout=10)
        # the event index last: a usage recount after a void waits for it
        for follower in reversed(self.followers):
            follower.stop()
        self.ledger.close()


def build(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Container:
    """Build everything the service needs from ``settings``; nothing reads os.environ."""
    ledger = Ledger(
        eventsourcing_env(settings),
        identities=stored_identities,
        window=TimeWindow(settings.backdate_window, settings.future_skew),
    )
    datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
    index: SQLiteEventIndex | PostgresEventIndex
    usage: SQLiteUsageStore | PostgresUsageStore
    with schema_lock(settings):
        ledger.recorder.create_table()  # type: ignore[attr-defined]
        if isinstance(datastore, PostgresDatastore):
            index = PostgresEventIndex(datastore)
            usage = PostgresUsageStore(datastore, index)
            keys = KeyStore(datastore, "%s", settings.bootstrap_api_key)
        else:
            assert isinstance(datastore, SQLiteDatastore)
            index = SQLiteEventIndex(_projection_datastore(settings, EventIndexProjection.name))
            usage = SQLiteUsageStore(_projection_datastore(settings, UsageProjection.name), index)
            keys = KeyStore(datastore, "?", settings.bootstrap_api_key)
        credits: SQLiteCreditStore | PostgresCreditStore
        if isinstance(datastore, PostgresDatastore):
            credits = PostgresCreditStore(datastore)
        else:
            path = CreditBalanceProjection.name
            credits = SQLiteCreditStore(_projection_datastore(settings, path))
        index.create_table()
        usage.create_table()
        credits.create_table()
    projections: dict[str, Callable[[], BatchProjection]] = {
        EventIndexProjection.name: lambda: EventIndexProjection(
            index, ledger.meter_at, ledger.product_at
        ),
        UsageProjection.name: lambda: UsageProjection(usage, log_history(ledger)),
        CreditBalanceProjection.name: lambda: CreditBalanceProjection(credits, ledger.account_at),
    }
    poll = settings.follower_poll_seconds
    follower = LogFollower(ledger, projections[EventIndexProjection.name](), poll_interval=poll)
    usage_follower = LogFollower(ledger, projections[UsageProjection.name](), poll_interval=poll)
    credit_follower = LogFollower(
        ledger, projections[CreditBalanceProjection.name](), poll_interval=poll
    )
    return Container(
        settings,
        ledger,
        index,
        follower,
        usage,
        usage_follower,
        keys,
        credits,
        credit_follower,
        clock,
        projections,
    )


def _projection_datastore(settings: Settings, name: str) -> SQLiteDatastore:
    return SQLiteDatastore(str(projection_sqlite_path(settings, name)), lock_timeout=30)

"""What runs in a ledger process: the projector, the billing loop, delivery, the health probe.

``Runtime`` starts and stops the loops of one container: one projector thread
that keeps every projection up to date (``application.projection``), one
billing thread that, every ``LEDGER_BILLING_INTERVAL``, does what the schedule
says is due (``application.billing_tasks``), one that draws open cycles' credit
live (``application.live_credits``) and one that delivers the outbox's webhook
messages (``application.delivery``), each endpoint's on a worker of its own.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime

import structlog
from eventsourcing.postgres import PostgresDatastore

from application.billing_tasks import Tick, run_due
from application.delivery import Deliverer
from application.live_credits import draw_live
from application.outbox import OutboxProjection
from application.webhooks import disable_failing
from domain.invoice_record import InvoiceRecord
from infrastructure import metrics
from infrastructure.bootstrap import Container
from infrastructure.webhook_sender import HttpSender

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    position: int
    head: int

    @property
    def behind(self) -> int:
        return max(self.head - self.position, 0)


class Runtime:
    """The loops of one process, over one container."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self._billing_stop = threading.Event()
        self._billing: threading.Thread | None = None
        self._live: threading.Thread | None = None
        self._delivery: threading.Thread | None = None
        self._sampler: threading.Thread | None = None
        self.deliverer: Deliverer | None = None

    def start(
        self, *, projections: bool = True, billing: bool = True, delivery: bool = True
    ) -> None:
        self._billing_stop.clear()
        if projections:
            self.container.projector.start()
        if self.container.settings.is_postgres and metrics.multiprocess_directory():
            self._sampler = threading.Thread(target=self._sample, name="metrics", daemon=True)
            self._sampler.start()
        if billing:
            self._billing = threading.Thread(target=self._bill, name="billing", daemon=True)
            self._billing.start()
            if self.container.settings.live_credit_seconds > 0:
                self._live = threading.Thread(target=self._draw, name="live-credit", daemon=True)
                self._live.start()
        if delivery and self.container.settings.webhook_poll_seconds > 0:
            self.deliverer = deliverer(self.container)
            self._delivery = threading.Thread(target=self._deliver, name="delivery", daemon=True)
            self._delivery.start()

    def _bill(self) -> None:
        interval = self.container.settings.billing_interval_seconds
        while not self._billing_stop.wait(interval):
            try:
                done = tick(self.container)
            except Exception as error:  # noqa: BLE001 - try again next time
                log.warning("billing_tick_failed", error=str(error)[:500])
                metrics.record_billing(None)
                continue
            if done.finalized or done.renewed or done.expired:
                log.info(
                    "billing_tick",
                    finalized=len(done.finalized),
                    renewed=done.renewed,
                    expired=done.expired,
                )

    def _sample(self) -> None:
        """Publish this process's pool for a scrape in any process (multiprocess mode)."""
        datastore = self.container.ledger.recorder.datastore  # type: ignore[attr-defined]
        while True:
            if (stats := metrics.pool_stats(datastore)) is not None:
                metrics.publish_pool(stats)
            if self._billing_stop.wait(metrics.POOL_SAMPLE_SECONDS):
                return

    def _draw(self) -> None:
        interval = self.container.settings.live_credit_seconds
        while not self._billing_stop.wait(interval):
            try:
                draw_live_now(self.container)
            except Exception as error:  # noqa: BLE001 - try again next time
                log.warning("live_credit_failed", error=str(error)[:500])

    def _deliver(self) -> None:
        assert self.deliverer is not None
        interval = self.container.settings.webhook_poll_seconds
        while not self._billing_stop.is_set():
            try:
                claimed = self.deliverer.step()
            except Exception as error:  # noqa: BLE001 - try again next time
                log.warning("webhook_claim_failed", error=str(error)[:500])
                claimed = 0
            if not claimed:
                self._billing_stop.wait(interval)

    def stop(self, *, projector: bool = True) -> None:
        """Stop this runtime's loops; ``projector``: the container's projector thread too."""
        self._billing_stop.set()
        for thread in (self._billing, self._live, self._delivery, self._sampler):
            if thread is not None:
                thread.join(timeout=15)
        self._billing = self._live = self._delivery = self._sampler = None
        metrics.forget_process(os.getpid())  # its in-progress and pool gauges go with it
        if self.deliverer is not None:
            self.deliverer.close()
            self.deliverer = None
        if projector:
            self.container.projector.stop()


def close_cycles(container: Container, *, catch_up: bool = False) -> list[InvoiceRecord]:
    """Do everything due (renewals, finalizations, expiries); return the invoices finalized.

    ``catch_up`` brings the projections up to date in this thread between rounds
    (when no projector runs in this process: ``ledger billing close``).
    """
    return tick(container, catch_up=catch_up).finalized


def tick(container: Container, *, catch_up: bool = False) -> Tick:
    projector = container.projector

    def catch_up_here() -> None:
        projector.catch_up()

    done = run_due(
        container.ledger,
        container.reads,
        now=container.clock(),
        grace=container.settings.invoice_grace,
        catch_up=catch_up_here if catch_up else None,
    )
    metrics.record_billing(done)
    return done


def deliverer(container: Container) -> Deliverer:
    """The delivery loop's work over the container's outbox, sending over HTTP."""
    settings = container.settings
    outbox = container.views[OutboxProjection.name]
    ledger = container.ledger

    def disable(business_id: str, endpoint_id: str, reason: str, at: datetime) -> None:
        disable_failing(ledger, business_id, endpoint_id, reason, at)

    return Deliverer(
        outbox,
        outbox.routes,
        container.webhook_secrets,
        HttpSender(settings.webhook_timeout_seconds),
        container.clock,
        disable,
        schedule=settings.webhook_retry_schedule,
        timeout=settings.webhook_timeout_seconds,
    )


def draw_live_now(container: Container) -> int:
    """One look at the usage since the last: open cycles' credit drawn; accounts changed."""
    return draw_live(
        container.ledger, container.reads, container.live_cursor, now=container.clock()
    )


def status(container: Container) -> list[ProjectionStatus]:
    """Each projection's position and how far it is behind the log's head."""
    head = container.ledger.head()
    projector = container.projector
    return [ProjectionStatus(n, projector.position(n), head) for n in projector.names]


def projection_position(container: Container) -> int:
    """How far every projection has got: the least of their positions."""
    projector = container.projector
    return min((projector.position(n) for n in projector.names), default=0)


def database_problem(container: Container) -> str | None:
    """None when the store answers; otherwise why not."""
    datastore = container.ledger.recorder.datastore  # type: ignore[attr-defined]
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

"""The composition root: one place wires store, applications, read models and keys.

It only wires. What runs (the projector thread, the billing loop, the health
probe) is ``infrastructure.runtime``; rebuilding a projection is
``infrastructure.rebuild``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from application.ledger import Ledger
from application.portal_link import PortalLinks
from application.projection import Projector
from application.reads import (
    CATALOGUE,
    CREDITS,
    OUTBOX,
    SCHEDULE,
    SEAL,
    USAGE,
    USAGE_LOG,
    Reads,
)
from domain.usage import TimeWindow
from infrastructure.cursors import TrackedCursor
from infrastructure.keys import KeyStore
from infrastructure.projections import DETACHED, READS, make_projections, make_views
from infrastructure.server_secrets import DASHBOARD_SESSIONS, PORTAL_LINKS, ServerSecretStore
from infrastructure.settings import Settings
from infrastructure.store import (
    eventsourcing_env,
    projection_sqlite_path,
    schema_lock,
    stored_identities,
)
from infrastructure.webhook_secrets import WebhookSecretStore


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Container:
    settings: Settings
    ledger: Ledger
    keys: KeyStore
    webhook_secrets: WebhookSecretStore
    live_cursor: TrackedCursor
    views: dict[str, Any]  # projection name -> its view
    projector: Projector
    reads: Reads
    portal: PortalLinks
    dashboard_secret: bytes  # 32 bytes: the dashboard's session cookies and CSRF tokens
    clock: Callable[[], datetime] = field(default=utc_now)
    _users: int = field(default=0, repr=False)
    _using: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def close(self) -> None:
        self.projector.stop()
        self.ledger.close()

    def acquire(self) -> None:
        """An app starts using the container (tests run two apps on one)."""
        with self._using:
            self._users += 1

    def release(self) -> bool:
        """An app stops using it; True for the last one, which closes it."""
        with self._using:
            self._users -= 1
            return self._users <= 0


def build(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Container:
    """Build everything the service needs from ``settings``; nothing reads os.environ."""
    ledger = Ledger(
        eventsourcing_env(settings),
        identities=stored_identities,
        window=TimeWindow(settings.backdate_window, settings.future_skew),
    )
    datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
    placeholder = "%s" if settings.is_postgres else "?"
    with schema_lock(settings):
        ledger.recorder.create_table()  # type: ignore[attr-defined]
        views = make_views(datastore, lambda name: projection_sqlite_path(settings, name))
        keys = KeyStore(datastore, placeholder, settings.bootstrap_api_key)
        webhook_secrets = WebhookSecretStore(datastore, placeholder)
        server_secrets = ServerSecretStore(datastore, placeholder)
        portal_secret = server_secrets.secret(PORTAL_LINKS)
        dashboard_secret = server_secrets.secret(DASHBOARD_SESSIONS)
        live_cursor = TrackedCursor(
            datastore, "live_credits", projection_sqlite_path(settings, "live_credits"), ledger.name
        )
    projector = Projector(
        ledger,
        make_projections(ledger, views),
        poll_interval=settings.follower_poll_seconds,
        read_wait=settings.read_wait_seconds,
        reads=READS,
        detached=DETACHED,
    )
    reads = Reads(
        catalogue=views[CATALOGUE],
        usage_log=views[USAGE_LOG],
        seal=views[SEAL],
        usage=views[USAGE],
        credits=views[CREDITS],
        schedule=views[SCHEDULE],
        outbox=views[OUTBOX],
        delivery=views[OUTBOX],
        freshness=projector,
        application_name=ledger.name,
    )
    portal = PortalLinks(portal_secret, timedelta(seconds=settings.portal_link_seconds))
    return Container(
        settings,
        ledger,
        keys,
        webhook_secrets,
        live_cursor,
        views,
        projector,
        reads,
        portal,
        dashboard_secret,
        clock,
    )

"""The read models an application service reads, and how it waits for them."""

from __future__ import annotations

from dataclasses import dataclass, field

from application.catalogue import CatalogueProjection, CatalogueStore
from application.credit_balances import CreditBalanceProjection, CreditStore
from application.delivery import DeliveryStore
from application.measure import FlatMeasure, TallyMeasure
from application.outbox import OutboxProjection, OutboxStore
from application.ports import Freshness
from application.schedule import ScheduleProjection, ScheduleStore
from application.seal import SealProjection, SealStore
from application.usage import UsageProjection, UsageStore
from application.usage_log import UsageLogProjection, UsageLogStore

CATALOGUE = CatalogueProjection.name
USAGE_LOG = UsageLogProjection.name
SEAL = SealProjection.name
USAGE = UsageProjection.name
CREDITS = CreditBalanceProjection.name
SCHEDULE = ScheduleProjection.name
OUTBOX = OutboxProjection.name


@dataclass(frozen=True)
class Reads:
    catalogue: CatalogueStore
    usage_log: UsageLogStore
    seal: SealStore
    usage: UsageStore
    credits: CreditStore
    schedule: ScheduleStore
    outbox: OutboxStore
    delivery: DeliveryStore  # the outbox's messages and their delivery state
    freshness: Freshness
    application_name: str = "ledger"
    measure: TallyMeasure = field(init=False)
    flat: FlatMeasure = field(init=False)

    def __post_init__(self) -> None:
        tallies = TallyMeasure(self.usage, self.usage_log, self.application_name)
        object.__setattr__(self, "measure", tallies)
        object.__setattr__(self, "flat", FlatMeasure(self.usage_log, self.application_name))

    def fresh(self, *names: str) -> None:
        """Read your writes: wait (a little) until these projections have the log's head."""
        self.freshness.wait(names)

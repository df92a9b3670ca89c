"""Products taken off offer and put back: archived, a product takes no new subscriptions.

The subscriptions it has keep renewing and billing at its price; only
``create_subscription`` asks whether it is archived.
"""

from __future__ import annotations

from datetime import datetime

from application.catalogue import product_view
from application.ledger import Ledger
from application.reads import CATALOGUE, Reads
from application.views import ProductView, SubscriptionQuery


def archive_product(
    ledger: Ledger, business_id: str, product_id: str, now: datetime
) -> ProductView:
    product = ledger.change(
        lambda: ledger.load_product(business_id, product_id), lambda p: p.archive(now), "product"
    )
    return product_view(product)


def unarchive_product(
    ledger: Ledger, business_id: str, product_id: str, now: datetime
) -> ProductView:
    product = ledger.change(
        lambda: ledger.load_product(business_id, product_id), lambda p: p.unarchive(now), "product"
    )
    return product_view(product)


def product_subscriptions(reads: Reads, business_id: str, product_id: str, now: datetime) -> int:
    """How many subscriptions the product has (any status), from the catalogue."""
    reads.fresh(CATALOGUE)
    return reads.catalogue.count_subscriptions(
        SubscriptionQuery(business_id, product_id=product_id), now
    )

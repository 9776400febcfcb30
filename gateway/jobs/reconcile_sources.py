"""One checker per store: re-read a stored subscription from the store's API.

A checker's ``fetch(current, lookup, dry_run)`` returns the translation of what the API
answers now, or raises when the API fails; it writes nothing to our store. Where the
store's webhooks carry the state, stamped by the store (App Store, RevenueCat), the answer
is stamped with the time just before it asked, so a change the store makes while the
request is in flight, delivered by webhook, is newer. Where every state is a read of the
API (Stripe, Google), it is stamped as those reads are: when the answer came, with the
moment it was asked, and judged under the lock against what was stored meanwhile. Snapshots are built by
the same provider code the webhooks use, so a reconciled subscription reads exactly as a
delivered one would. The App Store's and Google Play's checkers, which also recover what
their notifications missed, live in ``reconcile_apple`` and ``reconcile_google``; Stripe's,
which also ends what a connected account's events left stored, in ``reconcile_stripe``.
"""
from __future__ import annotations

from typing import Protocol

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation
from gateway.domain.model import Subscription
from gateway.providers import Lookup
from gateway.providers import revenuecat_api


class Checker(Protocol):
    source: str

    def fetch(self, current: Subscription, lookup: Lookup, dry_run: bool) -> Translation: ...


class RevenueCatChecker:
    """GET /v1/subscribers/{app_user_id} (revenuecat_api)."""

    source = "revenuecat"

    def __init__(self, api: revenuecat_api.RevenueCatApi, catalog: Catalog, clock) -> None:
        self.api, self.catalog, self.clock = api, catalog, clock

    def fetch(self, current, lookup, dry_run):
        # The answer is judged against the stored state (revoked, owner known), read now
        # rather than when the run listed it; stored otherwise since, the answer is read
        # again under the lock (reads.stale_read, apply.reading_again).
        looked = self.clock()
        current = lookup.subscription(self.source, current.snapshot.key) or current
        app_user_id = current.snapshot.account or current.owner
        if not app_user_id:
            raise revenuecat_api.RevenueCatApiError("the subscription names no app user id")
        as_of = self.clock()  # taken before asking: a change made meanwhile is newer than this answer
        subscriber = self.api.subscriber(app_user_id)
        return revenuecat_api.translation_of(subscriber, current, app_user_id, as_of, self.catalog, looked)


def revenuecat_checker(settings, catalog, session, clock):
    api = revenuecat_api.build(settings, session)
    return RevenueCatChecker(api, catalog, clock) if api else "REVENUECAT_API_KEY is not set"

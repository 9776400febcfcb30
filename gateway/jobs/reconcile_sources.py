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
their notifications missed, live in ``reconcile_apple`` and ``reconcile_google``.
"""
from __future__ import annotations

from typing import Protocol

import stripe

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation
from gateway.domain.model import Subscription
from gateway.providers import Lookup
from gateway.providers import revenuecat_api
from gateway.providers.stripe_api import PINNED_VERSION, TIMEOUT, StripeHttpApi
from gateway.providers.stripe_snapshots import Snapshotter


class Checker(Protocol):
    source: str

    def fetch(self, current: Subscription, lookup: Lookup, dry_run: bool) -> Translation: ...


class StripeChecker:
    """GET /v1/subscriptions/{id} (https://docs.stripe.com/api/subscriptions/retrieve)."""

    source = "stripe"

    def __init__(self, snapshotter: Snapshotter) -> None:
        self.snapshotter = snapshotter

    def fetch(self, current, lookup, dry_run):
        # Also names the owner from the customer's metadata when it is still unknown.
        return self.snapshotter.fetched(current.snapshot.key, lookup)


class _ThrottledStripeApi(StripeHttpApi):
    """The gateway's Stripe client on a session that waits out 429s (reconcile_http)."""

    def __init__(self, api_key: str, api_base: str | None, session) -> None:
        bases = {"api": api_base.rstrip("/")} if api_base else None
        self.client = stripe.StripeClient(
            api_key, stripe_version=PINNED_VERSION, base_addresses=bases, max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=TIMEOUT, session=session))


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


def stripe_checker(settings, catalog, session, clock):
    if not settings.stripe_api_key:
        return "STRIPE_API_KEY is not set"
    api = _ThrottledStripeApi(settings.stripe_api_key, settings.stripe_api_base, session)
    return StripeChecker(Snapshotter(catalog, api, clock))


def revenuecat_checker(settings, catalog, session, clock):
    api = revenuecat_api.build(settings, session)
    return RevenueCatChecker(api, catalog, clock) if api else "REVENUECAT_API_KEY is not set"

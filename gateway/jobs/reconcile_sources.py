"""One checker per store: re-read a stored subscription from the store's API.

A checker's ``fetch(current, lookup, dry_run)`` returns the translation of what the API
answers now, or raises when the API fails; it writes nothing to our store. Where the
store's webhooks carry the state, stamped by the store (App Store, RevenueCat), the answer
is stamped with the time just before it asked, so a change the store makes while the
request is in flight, delivered by webhook, is newer. Where every state is a read of the
API (Stripe, Google), it is stamped as those reads are: when the answer came, with the
moment it was asked, and judged under the lock against what was stored meanwhile. Snapshots are built by
the same provider code the webhooks use, so a reconciled subscription reads exactly as a
delivered one would.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import stripe

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation, ignored
from gateway.domain.model import Subscription
from gateway.providers import Lookup
from gateway.providers import google_play_state as play_state
from gateway.providers import revenuecat_api
from gateway.providers.google_play_api import PlayApiError, PlayHttpApi, UnknownPurchase
from gateway.providers.google_play_credentials import access_token_source
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


class GoogleChecker:
    """purchases.subscriptionsv2.get, then purchases.subscriptions.acknowledge when Play
    says the paid purchase is still unacknowledged (Google refunds it after three days)."""

    source = "google"

    def __init__(self, provider, api: PlayHttpApi, clock: Callable[[], datetime]) -> None:
        self.provider, self.api, self.clock = provider, api, clock
        self.acknowledged, self.lock = 0, threading.Lock()

    def fetch(self, current, lookup, dry_run):
        # Stamped as a notification's read is, when the answer came, with the moment it was
        # asked (read_since): against a notification's read in flight together, which of
        # the two Play answered last is judged under the lock (reads.stale_read), and the
        # older one is read again. Stamped when asked, a newer answer lost to an older
        # notification's that arrived later.
        token, asked = current.snapshot.key, self.clock()
        try:
            purchase = self.api.subscription(self.provider.package, token)
        except UnknownPurchase as exc:  # Google forgets tokens long expired: nothing to repair
            return ignored(str(exc))
        as_of = self.clock()
        if play_state.needs_acknowledgement(purchase) and not dry_run:
            product = play_state.acknowledged_product(purchase)
            if product is None:
                raise PlayApiError("the purchase awaits acknowledgement but names no product")
            self.api.acknowledge_subscription(self.provider.package, product, token)
            with self.lock:
                self.acknowledged += 1
        return self.provider.translation(token, purchase, as_of, lookup, asked)


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


def google_checker(settings, provider, session, clock):
    if not hasattr(provider, "translation"):
        return "Google Play is not configured (GOOGLE_PACKAGE_NAME, GOOGLE_PUBSUB_*)"
    if not (settings.google_service_account_json or settings.google_play_access_token):
        return "no Play Developer API credentials (GOOGLE_SERVICE_ACCOUNT_JSON)"
    api = PlayHttpApi(access_token_source(settings), settings.google_play_api_base, session=session)
    return GoogleChecker(provider, api, clock)


def revenuecat_checker(settings, catalog, session, clock):
    api = revenuecat_api.build(settings, session)
    return RevenueCatChecker(api, catalog, clock) if api else "REVENUECAT_API_KEY is not set"

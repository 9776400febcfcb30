"""Stripe reconciliation: GET /v1/subscriptions/{id} per stored subscription
(https://docs.stripe.com/api/subscriptions/retrieve), snapshotted as a webhook's fetch is.

A subscription of a connected account is not the gateway's to serve: since 2026-12-07 the
events of a Connect endpoint (a top-level ``account``) are ignored, but a release before
that applied them, and the subscriptions they made stay stored. The key reads a connected
account's objects only as that account (``Stripe-Account``, https://docs.stripe.com/connect/authentication),
so Stripe answers 404 ``resource_missing`` for each, and nothing would ever tell it ended. Such
a subscription, recognised by the deliveries that made it (``event_subscriptions``: one that
names the account), is ended once, said in the run's report, and not asked about again. A
404 with no such delivery behind it (a platform subscription Stripe does not know: a key of
another account, deleted test data, or a fluke) ends nothing: it fails, as before.

Likewise a subscription of the other mode than ``STRIPE_API_KEY``'s: each mode has its own
keys and objects, and a key reads only its own mode's (https://docs.stripe.com/keys). A
deployment that ran on a test key and kept its database when it moved to a live one holds
test-mode subscriptions (their stored ``environment``, from the object's ``livemode``) that
Stripe answers the live key 404 for, and whose events a release since 2026-12-07 ignores.
Such a subscription, on a 404, is ended once and said the same way, so a tester's test-mode
purchase stops granting in production.
"""
from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import stripe

from gateway.domain.changes import Translation
from gateway.domain.model import Snapshot, Status, Subscription
from gateway.providers.stripe_api import PINNED_VERSION, TIMEOUT, StripeApiError, StripeHttpApi
from gateway.providers.stripe_events import MODES, key_livemode
from gateway.providers.stripe_snapshots import Snapshotter

SOURCE = "stripe"
#: The store status of a subscription ended because it is a connected account's.
NOT_SERVED = "connected_account"
#: The newest deliveries of a subscription searched for the account that made it.
EVIDENCE = 20
#: The store status of a subscription ended because it is of the other mode than the key's.
OTHER_MODE = "other_mode"
#: The labels of the run's counts of such subscriptions ended.
ENDED, ENDED_MODE = "connected accounts ended", "other mode ended"
_TICK = timedelta(microseconds=1)


class StripeChecker:
    source = SOURCE

    def __init__(self, snapshotter: Snapshotter, store=None, livemode: bool | None = None) -> None:
        self.snapshotter, self.store, self.livemode = snapshotter, store, livemode
        #: Why a subscription read this run changed, where a drift line alone would not tell.
        self.notes: dict[str, tuple[str, str]] = {}

    def fetch(self, current, lookup, dry_run):
        key = current.snapshot.key
        if current.latest.raw_status in (NOT_SERVED, OTHER_MODE):
            return Translation()  # ended as unreadable by the key: Stripe would answer 404 again
        asked = self.snapshotter.clock()
        try:
            # Also names the owner from the customer's metadata when it is still unknown.
            return self.snapshotter.fetched(key, lookup)
        except StripeApiError as exc:
            unreadable = self._unreadable(current) if exc.missing else None
            if unreadable is None:
                raise
        raw_status, self.notes[key] = unreadable
        as_of = max(self.snapshotter.answer_stamp(self.snapshotter.clock(), None), current.latest.as_of + _TICK)
        return Translation(snapshots=(not_served(current, as_of, asked, raw_status),))

    def _unreadable(self, current: Subscription) -> tuple[str, tuple[str, str]] | None:
        """Why the key cannot read ``current``, which Stripe answered 404 for: its store status
        from now on and the run's (label, note); None when nothing stored explains it."""
        mode = {name: live for live, name in MODES.items()}.get(current.latest.environment or "")
        if self.livemode is not None and mode is not None and mode != self.livemode:
            return OTHER_MODE, (ENDED_MODE, f"of {MODES[mode]} mode, stored by a {MODES[mode]} key: Stripe "
                                            f"answers 404 to the {MODES[self.livemode]} key; it grants no more")
        account = self._connected_account(current.snapshot.key)
        if account is None:
            return None
        return NOT_SERVED, (ENDED, f"of the connected account {account}, stored before 2026-12-07: Stripe "
                                   "answers 404 to the gateway's key, and Connect events are ignored; it grants no more")

    def _connected_account(self, key: str) -> str | None:
        """The connected account named by a delivery that touched ``key``, if one did."""
        if self.store is None:
            return None
        with self.store.transaction(readonly=True) as tx:
            deliveries = tx.events_touching([(SOURCE, key)], limit=EVIDENCE)
        for delivery in deliveries:
            try:
                account = json.loads(delivery.payload).get("account")
            except (ValueError, AttributeError):
                continue
            if isinstance(account, str) and account:
                return account
        return None


def not_served(current: Subscription, as_of, read_since, raw_status: str = NOT_SERVED) -> Snapshot:
    """The subscription as the gateway holds it from now on: expired, at the latest now, no
    renewal; its product and entitlements kept, so the feed tells which ones ended."""
    latest = current.latest
    end = min(latest.expires_at, as_of) if latest.expires_at else as_of
    return dataclasses.replace(latest, as_of=as_of, status=Status.EXPIRED, expires_at=end, will_renew=False,
                               raw_status=raw_status, entitlement_terms=None, read_since=read_since)


class _ThrottledStripeApi(StripeHttpApi):
    """The gateway's Stripe client on a session that waits out 429s (reconcile_http)."""

    def __init__(self, api_key: str, api_base: str | None, session) -> None:
        bases = {"api": api_base.rstrip("/")} if api_base else None
        self.client = stripe.StripeClient(
            api_key, stripe_version=PINNED_VERSION, base_addresses=bases, max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=TIMEOUT, session=session))


def stripe_checker(settings, catalog, session, clock, store=None):
    if not settings.stripe_api_key:
        return "STRIPE_API_KEY is not set"
    api = _ThrottledStripeApi(settings.stripe_api_key, settings.stripe_api_base, session)
    return StripeChecker(Snapshotter(catalog, api, clock), store, key_livemode(settings.stripe_api_key))

"""Snapshots of Stripe subscriptions, and who owns them.

Ordering: an event's ``created`` has one-second resolution and Stripe does not order
deliveries (https://docs.stripe.com/webhooks#event-ordering). A subscription event
strictly newer than the stored snapshot is taken from its body, stamped ``created``.
Otherwise, and for every invoice, charge and dispute, the subscription is fetched and
stamped with the time the answer arrived: any later event is then strictly newer, and
the state read can be no older than that stamp.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation
from gateway.domain.model import Snapshot, Status, Subscription, keep_revocation, revoked
from gateway.providers import Lookup
from gateway.providers import stripe_objects as so
from gateway.providers.stripe_api import StripeApi, StripeApiError

SOURCE = so.SOURCE


class Snapshotter:
    def __init__(self, catalog: Catalog, api: StripeApi | None, clock: Callable[[], datetime]) -> None:
        self.catalog = catalog
        self.api = api
        self.clock = clock

    def require_api(self, why: str) -> StripeApi:
        if self.api is None:  # deferred, so it applies once STRIPE_API_KEY is set
            raise StripeApiError(f"STRIPE_API_KEY is not set: cannot {why}")
        return self.api

    def from_event(self, subscription: dict, created: datetime, lookup: Lookup) -> Translation:
        stored = lookup.subscription(SOURCE, subscription["id"])
        if stored is None or created > stored.snapshot.as_of or self.api is None:
            return self.state(subscription, created, lookup, stored)
        return self.fetched(subscription["id"], lookup)

    def fetched(self, subscription_id: str, lookup: Lookup, revoke: str | None = None,
                invoice_id: str | None = None, restore: bool = False) -> Translation:
        """The subscription as Stripe has it now. ``revoke`` takes back its period (for a
        payment of ``invoice_id``, if that is still the latest invoice); ``restore`` gives
        back a period a revocation took (a dispute won)."""
        subscription = self.require_api("fetch a subscription").subscription(subscription_id)
        fetched_at = self.clock()
        latest = so.ref(subscription.get("latest_invoice"))
        if revoke and invoice_id and latest and latest != invoice_id:
            revoke = None  # an older period's payment was returned: the current one stands
        stored = lookup.subscription(SOURCE, subscription_id)
        return self.state(subscription, fetched_at, lookup, None if restore else stored, revoke)

    def state(self, subscription: dict, as_of: datetime, lookup: Lookup,
              stored: Subscription | None, revoke: str | None = None) -> Translation:
        raw = subscription.get("status")
        product_id, entitlements = so.products(subscription, self.catalog)
        snapshot = Snapshot(
            source=SOURCE, key=subscription["id"], as_of=as_of,
            status=so.STATUSES.get(raw, Status.PENDING),  # an unknown status grants nothing
            product_id=product_id, expires_at=so.expires_at(subscription),
            will_renew=so.will_renew(subscription), user_sub=so.cognito_sub(subscription),
            account=so.ref(subscription.get("customer")),
            environment="live" if subscription.get("livemode") else "test",
            raw_status=raw if isinstance(raw, str) else "unknown", entitlements=entitlements,
        )
        if revoke:
            snapshot = revoked(snapshot, revoke)
        snapshot = keep_revocation(snapshot, stored.snapshot if stored else None)
        return Translation(snapshots=(snapshot,), links=self.owner_links(snapshot, lookup))

    def owner_links(self, snapshot: Snapshot, lookup: Lookup) -> tuple[Link, ...]:
        """Who the user is: the subscription's metadata, a remembered customer, or the
        customer's metadata fetched once and remembered through the link made here."""
        customer = snapshot.account
        if customer is None:
            return ()
        if snapshot.user_sub:
            return (Link(SOURCE, customer, snapshot.user_sub, snapshot.as_of),)
        if lookup.resolve(SOURCE, customer) or self.api is None:
            return ()
        found = so.cognito_sub(self.api.customer(customer))
        return (Link(SOURCE, customer, found, self.clock()),) if found else ()

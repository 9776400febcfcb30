"""Snapshots of Stripe subscriptions, and who owns them.

Ordering: an event's ``created`` has one-second resolution and Stripe does not order
deliveries (https://docs.stripe.com/webhooks#event-ordering). A subscription event
strictly newer than the stored snapshot is taken from its body, stamped ``created``.
Otherwise, and for every invoice, charge and dispute, the subscription is fetched and
stamped with the time the answer arrived, by Stripe's clock as far as the gateway can tell
(``answer_stamp``): any later event is then strictly newer, and any older one older.
Under the subscription's lock both are judged again (``reads.stale_read``): a body only
while it is still newer than the stored state, a fetch only while nothing written since its
request began says otherwise; else the delivery is translated again.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation
from gateway.domain.model import Snapshot, Status
from gateway.providers import Lookup
from gateway.providers import stripe_objects
from gateway.providers.stripe_api import StripeApi, StripeApiError

SOURCE = stripe_objects.SOURCE
log = logging.getLogger("gateway.stripe")
#: How far the gateway's clock runs behind Stripe's is logged each time it grows by this.
NOTED_BEHIND = timedelta(seconds=1)
#: Seconds of what Stripe's answers showed that are forgotten per second that passes: below
#: one, so that a fetch is never stamped before one made earlier in the process.
FORGET_RATE = 0.5
#: The least step after a second of Stripe's clock begins.
_TICK = timedelta(microseconds=1)


class Snapshotter:
    def __init__(self, catalog: Catalog, api: StripeApi | None, clock: Callable[[], datetime]) -> None:
        self.catalog = catalog
        self.api = api
        self.clock = clock
        #: How far Stripe's recent answers have shown the gateway's clock to run behind
        #: Stripe's, as of ``_learned_at`` (the gateway's clock).
        self.behind = timedelta(0)
        self._learned_at: datetime | None = None
        self._noted = timedelta(0)
        self._lock = threading.Lock()  # webhooks and reconcile's workers share one

    def require_api(self, why: str) -> StripeApi:
        if self.api is None:  # deferred, so it applies once STRIPE_API_KEY is set
            raise StripeApiError(f"STRIPE_API_KEY is not set: cannot {why}")
        return self.api

    def from_event(self, subscription: dict, created: datetime, lookup: Lookup) -> Translation:
        # Whether the body is newer than what is stored decides only where the state is
        # read from (a body strictly newer, else a fetch); what it means for access is
        # decided by the merge, under the subscription's lock.
        looked = self.clock()
        stored = lookup.subscription(SOURCE, subscription["id"])
        if stored is None or created > stored.latest.as_of or self.api is None:
            return self.state(subscription, created, lookup, read_since=looked if self.api else None)
        return self.fetched(subscription["id"], lookup)

    def fetched(self, subscription_id: str, lookup: Lookup, revokes: str | None = None,
                invoice_id: str | None = None, restores: str | None = None,
                period: tuple[datetime | None, str] | None = None) -> Translation:
        """The subscription as Stripe has it now. ``revokes`` names a payment returned
        (``refunded:<refund>[+<refund>...]``, ``disputed:<dispute>``): it takes back ``period``, the
        end and id of the period ``invoice_id`` paid for, which the merge holds against
        the period shown. Where the invoice's lines name no period, it takes back the
        current period if ``invoice_id`` is still the latest invoice. ``restores`` names
        a dispute won or a refund that failed: it gives back what that took, and nothing else."""
        api, asked = self.require_api("fetch a subscription"), self.clock()
        subscription, answered = api.subscription_answered(subscription_id)
        fetched_at = self.answer_stamp(self.clock(), answered)
        latest = stripe_objects.ref(subscription.get("latest_invoice"))
        if revokes and period is None and invoice_id and latest and latest != invoice_id:
            revokes = None  # an older period's payment was returned: the current one stands
        return self.state(subscription, fetched_at, lookup, read_since=asked,
                          revokes=revokes, restores=restores, revoked_period=period if revokes else None)

    def answer_stamp(self, arrived: datetime, answered: datetime | None) -> datetime:
        """When a fetched state holds, comparable with the ``created`` of events, which Stripe
        stamps by its own clock: when the answer ``arrived`` by the gateway's clock, moved
        forward by as much as Stripe's recent answers (``answered``, their ``Date``) have shown
        it to run behind. By the gateway's clock alone, a state fetched while it runs behind
        would rank below an older event delivered late, which would undo it until the next
        event. Just after the second Stripe ``answered`` in begins: an event created in that
        second before the read is older than the state read, one created in a later second is
        newer. What earlier answers showed is forgotten at ``FORGET_RATE``: a ``Date`` far
        ahead once (a proxy's), or a clock since set right, stops stamping fetches ahead (which
        costs a fetch for every event judged older than one), and stamps still never go back."""
        with self._lock:
            since = arrived - self._learned_at if self._learned_at else timedelta(0)
            behind = max(self.behind - max(since, timedelta(0)) * FORGET_RATE, timedelta(0))
            if answered is not None:
                behind = max(behind, answered + _TICK - arrived)
            self.behind, self._learned_at = behind, max(arrived, self._learned_at or arrived)
            if behind >= self._noted + NOTED_BEHIND:  # once per second it grows by
                self._noted = behind
                log.warning("the gateway's clock runs behind Stripe's", extra={"fields": {
                    "behind_seconds": round(behind.total_seconds(), 3)}})
        return arrived + behind

    def state(self, subscription: dict, as_of: datetime, lookup: Lookup, read_since: datetime | None = None,
              **revocation) -> Translation:
        """``revocation``: the ``revokes``, ``restores`` and ``revoked_period`` of a payment returned."""
        raw = subscription.get("status")
        product_id, entitlements = stripe_objects.products(subscription, self.catalog)
        whole = (product_id, stripe_objects.expires_at(subscription, self.catalog),
                 stripe_objects.will_renew(subscription, self.catalog))
        snapshot = Snapshot(
            source=SOURCE, key=subscription["id"], as_of=as_of,
            status=stripe_objects.STATUSES.get(raw, Status.PENDING),  # an unknown status grants nothing
            product_id=product_id, expires_at=whole[1], will_renew=whole[2],
            entitlement_terms=stripe_objects.entitlement_terms(subscription, self.catalog, whole),
            user_sub=stripe_objects.cognito_sub(subscription),
            account=stripe_objects.ref(subscription.get("customer")),
            environment="live" if subscription.get("livemode") else "test",
            raw_status=raw if isinstance(raw, str) else "unknown", entitlements=entitlements,
            read_since=read_since, period_id=stripe_objects.period_id(subscription, self.catalog), **revocation,
        )
        return Translation(snapshots=(snapshot,), links=self.owner_links(snapshot, lookup))

    def owner_links(self, snapshot: Snapshot, lookup: Lookup) -> tuple[Link, ...]:
        """Who the user is: the subscription's metadata, a remembered customer, or the
        customer's metadata fetched once and remembered through the link made here.

        That link is stamped with the customer's ``created``, a store time, not with when
        the fetch happened: so a completed Checkout Session (stamped with its event's
        ``created``, later than the customer it was paid by) that names another user holds
        the customer whichever arrives first, and a ``customer.updated`` event that
        changes the metadata later holds over both."""
        customer = snapshot.account
        if customer is None:
            return ()
        if snapshot.user_sub:
            return (Link(SOURCE, customer, snapshot.user_sub, snapshot.as_of),)
        if lookup.resolve(SOURCE, customer) or self.api is None:
            return ()
        fetched = self.api.customer(customer)
        found = stripe_objects.cognito_sub(fetched)
        return (Link(SOURCE, customer, found, stripe_objects.when(fetched.get("created"))),) if found else ()

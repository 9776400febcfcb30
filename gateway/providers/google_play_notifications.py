"""Google Play real-time developer notifications, pushed by Cloud Pub/Sub.

https://developer.android.com/google/play/billing/rtdn-reference
A notification carries only a purchase token: for a subscription we fetch
purchases.subscriptionsv2.get and snapshot that, stamped when the answer came; should
another state of the token be stored while the request was in flight, the delivery reads
it again (``reads.stale_read``).

Acknowledgement: Google refunds a purchase not acknowledged within three days
(https://developer.android.com/google/play/billing/integrate#process). ``translate``
acknowledges a paid, unacknowledged purchase before anything is applied; if the
acknowledgement fails it raises ``PlayApiError`` (a ``StoreApiError``), so the whole event
is deferred and ``flask --app wsgi events retry`` fetches and acknowledges again
(acknowledging twice is harmless). An acknowledgement is therefore never lost.

A notification for another package is recorded and ignored, never applied: answering
200 stops Pub/Sub redelivering it, and the event log keeps it for inspection.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from gateway.auth import bearer
from gateway.clock import utcnow
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation, ignored
from gateway.domain.events import Event
from gateway.errors import Malformed, NotFound, Unavailable
from gateway.providers import Delivery, Lookup
from gateway.providers import google_play_messages as messages
from gateway.providers import google_play_state as state
from gateway.providers.google_play_api import PlayApi, PlayApiError, PlayHttpApi, UnknownPurchase
from gateway.providers.google_play_credentials import access_token_source
from gateway.providers.google_push_auth import DEFAULT_CERTS_URL, CertificateCache, PushTokenVerifier
from gateway.providers.unconfigured import Unconfigured

SOURCE = state.SOURCE


class GooglePlayNotifications:
    source = SOURCE

    def __init__(self, package: str, verifier: PushTokenVerifier, api: PlayApi,
                 clock: Callable[[], datetime] = utcnow, catalog: Catalog | None = None) -> None:
        self.package, self.verifier, self.api, self.clock = package, verifier, api, clock
        self.catalog = catalog  # what each line item's product grants (a purchase with add-ons)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Delivery:
        self.verifier.verify(bearer(headers.get("Authorization")))
        data = messages.parse_push(body)
        return Delivery(SOURCE, data["messageId"], messages.event_type(data["notification"]),
                        body.decode("utf-8"), data)

    def translate(self, event: Event, lookup: Lookup) -> Translation:
        notification = event.data["notification"]
        package = notification.get("packageName")
        if package != self.package:
            return ignored(f"package {package!r} is not GOOGLE_PACKAGE_NAME")
        match messages.member(notification):
            case "subscriptionNotification":
                return self._subscription(notification["subscriptionNotification"]["purchaseToken"], lookup)
            case "voidedPurchaseNotification":
                return self._voided(notification, lookup)
            case "oneTimeProductNotification":
                return ignored("one-time products are not subscriptions: the app acknowledges them itself")
            case "pendingRefundReviewNotification":
                return ignored("a refund under review changes nothing until Google decides it")
            case "testNotification":
                return ignored("a test notification from the Play Console")
            case _:
                return ignored("no notification member this gateway knows")

    def _subscription(self, token: str, lookup: Lookup) -> Translation:
        try:
            asked, purchase = self._read(token)
        except UnknownPurchase as exc:  # retrying will not make Google know it
            return ignored(str(exc))
        as_of = self.clock()
        self._acknowledge(token, purchase)
        return self.translation(token, purchase, as_of, lookup, asked)

    def _read(self, token: str) -> tuple[datetime, dict]:
        """subscriptionsv2.get, with the moment just before it was asked."""
        asked = self.clock()
        return asked, self.api.subscription(self.package, token)

    def translation(self, token: str, purchase: dict, as_of: datetime, lookup: Lookup,
                    read_since: datetime | None = None) -> Translation:
        """The purchase's snapshot (read from Play after ``read_since``, when given), and the
        user it names linked to its token; for a replacing purchase also the old token,
        replaced, and the old owner carried over when the new purchase names no user."""
        # A voided period stays revoked while Play still shows it: the merge decides that.
        snapshot = dataclasses.replace(state.snapshot_of(token, purchase, as_of, self.catalog), read_since=read_since)
        # Linked, not only named: a purchase that replaces this one later may name nobody
        # and belong to this token's account (below).
        links = (Link(SOURCE, token, snapshot.user_sub, as_of, carries=True),) if snapshot.user_sub else ()
        old = state.replaces(purchase)
        if not old or old == token:
            return Translation(snapshots=(snapshot,), links=links)
        if snapshot.user_sub is None:
            current = lookup.subscription(SOURCE, old)
            owner = (current.owner if current else None) or lookup.resolve(SOURCE, old)
            if owner:
                links = (Link(SOURCE, token, owner, carries=True),)
            elif not lookup.resolve(SOURCE, token):  # nobody known yet, nor registered the new
                # token: it goes with the old token's account, so that the link that names its
                # user, whenever it comes, attaches both (under the lock)
                snapshot = dataclasses.replace(snapshot, account=old)
        return Translation(snapshots=(snapshot, state.replaced(old, as_of, token)), links=links)

    def _acknowledge(self, token: str, purchase: dict) -> None:
        if not state.needs_acknowledgement(purchase):
            return
        product = state.acknowledged_product(purchase)
        if product is None:
            raise PlayApiError("the purchase awaits acknowledgement but names no product")
        self.api.acknowledge_subscription(self.package, product, token)

    def _voided(self, notification: dict, lookup: Lookup) -> Translation:
        """A voided subscription order (refunded or charged back), trusted only once Play's
        voided purchases list shows it for that token. One the list does not show yet is
        ignored here: reconcile reads the list and applies it once Play lists it
        (``jobs/reconcile_google.py``), as it does a void whose notification never came."""
        voided = notification["voidedPurchaseNotification"]
        if voided.get("productType") != messages.VOIDED_SUBSCRIPTION:
            return ignored("a voided one-time purchase: one-time products are not subscriptions")
        token, order = voided["purchaseToken"], voided.get("orderId")
        if not isinstance(order, str) or not order:
            return ignored("the void names no orderId")
        if not self._void_confirmed(token, order, messages.event_time(notification)):
            return ignored(f"Play's voided purchases do not list order {order} for this token (yet): "
                           "reconcile applies it once they do")
        return self.void(token, order, lookup)

    def void(self, token: str, order: str, lookup: Lookup) -> Translation:
        """The void of ``order`` of ``token``, which Play lists: it takes back the period
        that order paid, and no other. A void of an older renewal order leaves the current
        period standing. The period is read from subscriptionsv2 as of now; the revocation,
        ``voided:<orderId>``, is recorded once however often the void is applied."""
        try:
            asked, purchase = self._read(token)
        except UnknownPurchase as exc:
            return ignored(str(exc))
        fetched = self.translation(token, purchase, self.clock(), lookup, asked)
        if order not in state.current_orders(purchase):
            return fetched  # an older period's order: the one Play shows now stands
        current, *others = fetched.snapshots
        revoking = dataclasses.replace(current, revokes=f"voided:{order}")
        return dataclasses.replace(fetched, snapshots=(revoking, *others))

    def _void_confirmed(self, token: str, order: str, voided_at: datetime) -> bool:
        # Play lists voids by when it recorded them, for the last 30 days.
        now = self.clock()  # a void stamped in the future must not ask Play about the future
        start = max(min(voided_at, now) - timedelta(days=1), now - timedelta(days=30) + timedelta(minutes=5))
        listed = self.api.voided_purchases(self.package, int(start.timestamp() * 1000))
        return any(item.get("purchaseToken") == token and item.get("orderId") == order for item in listed)

    def purchase(self, token: str, product_id: str, lookup: Lookup) -> tuple[str, Translation, dict]:
        """A purchase the app reports (POST /v1/purchases/google), fetched and checked."""
        try:
            asked, purchase = self._read(token)
        except PlayApiError as exc:
            # The token is looked up under GOOGLE_PACKAGE_NAME: one of another app is unknown.
            if exc.status in (400, 404, 410):
                raise NotFound("Google Play does not know this purchase token", code="unknown_purchase") from None
            raise Unavailable(f"Google Play cannot be asked now: {exc}", code="play_api_unavailable") from None
        if product_id not in {item.get("productId") for item in state.line_items(purchase)}:
            raise Malformed("productId is not a product of this purchase", code="product_mismatch")
        return token, self.translation(token, purchase, self.clock(), lookup, asked), purchase

    def acknowledge(self, token: str, purchase: dict) -> None:
        try:
            self._acknowledge(token, purchase)
        except PlayApiError as exc:
            raise Unavailable(f"the purchase could not be acknowledged; retry: {exc}",
                              code="acknowledgement_failed") from None


def build(settings, catalog: Catalog):
    """Configured only with the package and both push-token expectations (CONTRACT.md)."""
    required = (settings.google_package_name, settings.google_pubsub_audience, settings.google_pubsub_service_account)
    if not all(required):
        return Unconfigured(SOURCE)
    certs = CertificateCache(settings.google_oidc_certs_url or DEFAULT_CERTS_URL)
    verifier = PushTokenVerifier(settings.google_pubsub_audience, settings.google_pubsub_service_account, certs)
    api = PlayHttpApi(access_token_source(settings), settings.google_play_api_base)
    return GooglePlayNotifications(settings.google_package_name, verifier, api, catalog=catalog)

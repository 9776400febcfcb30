"""Each ``Spec`` as its store sends it: RevenueCat with its header, Stripe signed at send
time, App Store notifications signed with the minted chain, Google Pub/Sub pushes (whose
state the Play API fake serves). Also what each store's API answers: the newest state."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.apple_store import AppStore, ms
from devtools.google_play import rfc3339
from devtools.google_pubsub import envelope, subscription
from devtools.stripe_signing import signed
from tests.soak.plan import Spec, final_states


@dataclasses.dataclass(frozen=True)
class Delivery:
    source: str
    event_id: str
    body: bytes
    headers: Callable[[], dict]  # made at send time: Stripe signatures are time-bound


def revenuecat(spec: Spec, n: int) -> Delivery:
    extra = {"grace_period_expiration_at_ms": ms(spec.expires_at)} if spec.state == "BILLING_ISSUE" else {}
    event = rc.event(spec.state, spec.user, at_ms=ms(spec.as_of), transaction=spec.key, aliases=[spec.user],
                     expiration_at_ms=ms(spec.expires_at), id=f"soak-rc-{n}", **extra)
    return Delivery("revenuecat", event["id"], rc.body(event), lambda: {"Authorization": rc.AUTH})


def stripe_subscription(spec: Spec) -> dict:
    end, fields = int(spec.expires_at.timestamp()), {}
    if spec.state == "cancel_at_period_end":
        fields = {"cancel_at_period_end": True}
    status = {"cancel_at_period_end": "active"}.get(spec.state, spec.state)
    if status == "canceled":
        fields, end = {"ended_at": end}, end + 86400
    return so.subscription("basil", sub_id=spec.key, customer=spec.account, status=status,
                           start=end - 30 * so.DAY, end=end, cognito_sub=spec.user, **fields)


def stripe(spec: Spec, n: int, secret: str) -> Delivery:
    event = so.event("customer.subscription.updated", stripe_subscription(spec), created=int(spec.as_of.timestamp()),
                     event_id=f"evt_soak{n}")
    text = json.dumps(event)
    return Delivery("stripe", event["id"], text.encode(), lambda: signed(text, secret)[1])


def apple(spec: Spec, store: AppStore) -> Delivery:
    revoked = spec.as_of if spec.state == "refunded" else None
    transaction = store.transaction(spec.key, token=spec.user, expires=spec.expires_at, signed=spec.as_of,
                                    revoked=revoked)
    renewal = store.renewal(spec.key, auto_renew=spec.will_renew, signed=spec.as_of)
    notification = store.notification("DID_RENEW", transaction=transaction, renewal=renewal, signed=spec.as_of)
    return Delivery("apple", notification["notificationUUID"], store.body(notification),
                    lambda: {"Content-Type": "application/json"})


def google(spec: Spec, n: int, push_headers: Callable[[], dict]) -> Delivery:
    message_id = f"soak-{n}"
    return Delivery("google", message_id, envelope(subscription(spec.key), message_id), push_headers)


def play_purchase(spec: Spec) -> dict:
    """The SubscriptionPurchaseV2 that purchases.subscriptionsv2.get answers for the newest state."""
    return {"kind": "androidpublisher#subscriptionPurchaseV2", "subscriptionState": spec.state,
            "acknowledgementState": "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED", "regionCode": "US",
            "startTime": rfc3339(spec.expires_at.replace(year=spec.expires_at.year - 1)),
            "externalAccountIdentifiers": {"obfuscatedExternalAccountId": spec.user},
            "lineItems": [{"productId": "premium_monthly", "expiryTime": rfc3339(spec.expires_at),
                           "autoRenewingPlan": {"autoRenewEnabled": spec.will_renew}}]}


def arrange_store_apis(specs: list[Spec], stripe_fake, play) -> None:
    """What Stripe and Google hold now: each subscription in its newest state."""
    for (source, _), spec in final_states(specs).items():
        if source == "stripe":
            stripe_fake.put(stripe_subscription(spec))
        elif source == "google":
            play.purchases[spec.key] = play_purchase(spec)


def deliveries(specs: list[Spec], *, stripe_secret: str, store: AppStore, push_headers) -> list[Delivery]:
    build = {"revenuecat": lambda s, n: revenuecat(s, n), "stripe": lambda s, n: stripe(s, n, stripe_secret),
             "apple": lambda s, n: apple(s, store), "google": lambda s, n: google(s, n, push_headers)}
    return [build[spec.source](spec, n) for n, spec in enumerate(specs)]

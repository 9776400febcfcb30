"""Each ``Fact`` as its store sends it: RevenueCat with its header, Stripe signed at send
time, App Store notifications signed with the minted chain, Google Pub/Sub pushes. Also
what Stripe's and Play's APIs answer, arranged once before the first delivery: each
subscription in its final state, each invoice with its charge and payment, each void in
Play's voided purchases list."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.apple_store import AppStore, ms
from devtools.google_play import rfc3339
from devtools.google_pubsub import envelope, notification, subscription
from devtools.stripe_signing import signed
from tests.soak.plan import CURRENT_ORDER, LATEST_INVOICE, Fact, Plan, Sub


@dataclasses.dataclass(frozen=True)
class Delivery:
    source: str
    event_id: str
    body: bytes
    headers: Callable[[], dict]  # made at send time: Stripe signatures are time-bound


def revenuecat(fact: Fact) -> Delivery:
    sub = fact.sub
    end, fields = sub.ends[fact.period], {}
    kind = {"refund": "CANCELLATION", "refund_reversed": "REFUND_REVERSED"}.get(fact.kind, fact.state)
    if fact.kind == "refund":
        fields["cancel_reason"] = "CUSTOMER_SUPPORT"
    elif kind == "CANCELLATION":
        fields["cancel_reason"] = "UNSUBSCRIBE"
    elif kind == "BILLING_ISSUE":
        fields["grace_period_expiration_at_ms"] = ms(end)
    elif kind == "EXPIRATION":
        fields["expiration_reason"] = "UNSUBSCRIBE"
    event = rc.event(kind, sub.user, at_ms=ms(fact.at), transaction=sub.key, aliases=[sub.user],
                     expiration_at_ms=ms(end), id=f"soak-rc-{fact.n}", transaction_id=sub.transaction(fact.period),
                     **fields)
    return Delivery("revenuecat", event["id"], rc.body(event), lambda: {"Authorization": rc.AUTH})


def stripe_subscription(sub: Sub, state: str, period: int) -> dict:
    end, fields = int(sub.ends[period].timestamp()), {"latest_invoice": sub.invoice(LATEST_INVOICE)}
    if state == "cancel_at_period_end":
        fields["cancel_at_period_end"] = True
    status = {"cancel_at_period_end": "active"}.get(state, state)
    if status == "canceled":
        fields["ended_at"] = end
        end += so.DAY
    return so.subscription("basil", sub_id=sub.key, customer=sub.account, status=status,
                           start=end - 30 * so.DAY, end=end, cognito_sub=sub.user, **fields)


def stripe_charge(sub: Sub, invoice: int, refunded: int = 0) -> dict:
    return so.charge("basil", charge_id=sub.charge(invoice), customer=sub.account, invoice_id=None,
                     payment_intent=sub.payment_intent(invoice), amount_refunded=refunded)


def stripe(fact: Fact, secret: str) -> Delivery:
    sub, kind = fact.sub, fact.kind
    if kind == "subscription":
        event_type, obj = "customer.subscription.updated", stripe_subscription(sub, fact.state, fact.period)
    elif kind in ("refund", "partial_refund"):
        event_type, obj = "charge.refunded", stripe_charge(sub, fact.invoice, 999 if kind == "refund" else 333)
    else:
        status = {"dispute_opened": "needs_response", "dispute_won": "won", "dispute_lost": "lost",
                  "inquiry": "warning_needs_response", "dispute_escalated": "needs_response"}[kind]
        event_type = "charge.dispute.closed" if kind in ("dispute_won", "dispute_lost") else "charge.dispute.created"
        if kind == "dispute_escalated":  # Stripe tells by either event; the plan uses both
            event_type = ("charge.dispute.updated", "charge.dispute.funds_withdrawn")[fact.n % 2]
        obj = {**so.dispute(dispute_id=fact.dispute, charge_id=sub.charge(fact.invoice),
                            payment_intent=sub.payment_intent(fact.invoice)), "status": status}
    event = so.event(event_type, obj, created=int(fact.at.timestamp()), event_id=f"evt_soak{fact.n}")
    text = json.dumps(event)
    return Delivery("stripe", event["id"], text.encode(), lambda: signed(text, secret)[1])


APPLE_TYPES = {"renewing": ("DID_RENEW", None), "auto_renew_off": ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED"),
               "expired": ("EXPIRED", "VOLUNTARY")}


def apple(fact: Fact, store: AppStore) -> Delivery:
    sub = fact.sub
    if fact.kind == "notification":
        (kind, subtype), auto_renew = APPLE_TYPES[fact.state], fact.state == "renewing"
    else:
        kind, subtype, auto_renew = {"refund": "REFUND", "refund_reversed": "REFUND_REVERSED"}[fact.kind], None, True
    transaction = store.transaction(sub.key, token=sub.user, expires=sub.ends[fact.period], signed=fact.at,
                                    revoked=fact.at if fact.kind == "refund" else None,
                                    transaction_id=sub.transaction(fact.period))
    renewal = store.renewal(sub.key, auto_renew=auto_renew, signed=fact.at)
    body = store.notification(kind, subtype, transaction=transaction, renewal=renewal, signed=fact.at)
    return Delivery("apple", body["notificationUUID"], store.body(body), lambda: {"Content-Type": "application/json"})


def google(fact: Fact, push_headers: Callable[[], dict]) -> Delivery:
    sub, message_id = fact.sub, f"soak-{fact.n}"
    if fact.kind == "notify":
        body = subscription(sub.key, 2, at_ms=ms(fact.at))  # SUBSCRIPTION_RENEWED
    else:
        body = notification(at_ms=ms(fact.at), voidedPurchaseNotification={
            "purchaseToken": sub.key, "orderId": sub.order(fact.order), "productType": 1, "refundType": 1})
    return Delivery("google", message_id, envelope(body, message_id), push_headers)


def play_purchase(sub: Sub, state: str, period: int) -> dict:
    """The SubscriptionPurchaseV2 purchases.subscriptionsv2.get answers, throughout."""
    end, order = sub.ends[period], sub.order(CURRENT_ORDER)
    renews = state not in ("SUBSCRIPTION_STATE_CANCELED", "SUBSCRIPTION_STATE_EXPIRED")
    return {"kind": "androidpublisher#subscriptionPurchaseV2", "subscriptionState": state,
            "acknowledgementState": "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED", "regionCode": "US",
            "startTime": rfc3339(end.replace(year=end.year - 1)), "latestOrderId": order,
            "externalAccountIdentifiers": {"obfuscatedExternalAccountId": sub.user},
            "lineItems": [{"productId": "premium_monthly", "expiryTime": rfc3339(end),
                           "autoRenewingPlan": {"autoRenewEnabled": renews},
                           "offerDetails": {"basePlanId": "monthly"}, "latestSuccessfulOrderId": order}]}


def arrange_store_apis(plan: Plan, stripe_fake, play) -> None:
    """What Stripe and Google hold before the first delivery, and go on holding."""
    for sub in plan.subs:
        final = plan.finals.get((sub.source, sub.key))
        if sub.source == "stripe":
            shown = stripe_subscription(sub, final.state, final.period)
            stripe_fake.put(shown)
            item = shown["items"]["data"][0]  # the latest invoice paid the period shown, invoice 0 the one before
            paid = {LATEST_INVOICE: (item["current_period_start"], item["current_period_end"]),
                    0: (item["current_period_start"] - 30 * so.DAY, item["current_period_start"])}
            for k in (0, LATEST_INVOICE):
                stripe_fake.put(so.invoice("basil", invoice_id=sub.invoice(k), customer=sub.account,
                                           subscription_id=sub.key, cognito_sub=sub.user, period=paid[k]))
                stripe_fake.put(stripe_charge(sub, k))
                stripe_fake.pay(sub.invoice(k), sub.payment_intent(k))
        elif sub.source == "google":
            play.purchases[sub.key] = play_purchase(sub, final.state, final.period)
    for fact in plan.facts:  # each refund as Stripe lists it for its charge
        if fact.sub.source == "stripe" and fact.kind in ("refund", "partial_refund"):
            stripe_fake.put(so.refund(refund_id=f"re_soak{fact.n}", charge_id=fact.sub.charge(fact.invoice),
                                      payment_intent=fact.sub.payment_intent(fact.invoice),
                                      amount=999 if fact.kind == "refund" else 333))
    for token, order in sorted(plan.voided()):
        play.void(token, order)


def deliveries(plan: Plan, *, stripe_secret: str, store: AppStore, push_headers) -> list[Delivery]:
    build = {"revenuecat": revenuecat, "stripe": lambda f: stripe(f, stripe_secret),
             "apple": lambda f: apple(f, store), "google": lambda f: google(f, push_headers)}
    return [build[fact.sub.source](fact) for fact in plan.facts]

"""What each store sends for a few everyday moments of one user's subscription.

A scenario first changes the store's own state where the gateway will read it back (the
Stripe objects, the Play purchase), then delivers the webhook signed as that store signs
it. Identifiers derive from the user, so the scenarios of one user and source tell one
subscription's story in any order you send them.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import timedelta

from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.apple_store import AppStore, now
from devtools.google_pubsub import envelope, subscription
from devtools.stripe_signing import signed

DAY = 86400


def _ids(user: str) -> str:
    return hashlib.sha256(user.encode()).hexdigest()[:12]


# Stripe (API version basil): the re-fetches read the fake's objects.
def _stripe_objects(user: str, **subscription_fields) -> tuple[dict, ...]:
    h, start = _ids(user), int(time.time()) - 60
    sub = so.subscription("basil", sub_id=f"sub_demo{h}", customer=f"cus_demo{h}", cognito_sub=user,
                          latest_invoice=f"in_demo{h}", start=start, end=start + 30 * DAY, **subscription_fields)
    invoice = so.invoice("basil", invoice_id=f"in_demo{h}", customer=f"cus_demo{h}", subscription_id=sub["id"],
                         billing_reason="subscription_create", period=(start, start + 30 * DAY))
    payment = {"id": f"inpay_demo{h}", "object": "invoice_payment", "invoice": invoice["id"],
               "payment": {"type": "payment_intent", "payment_intent": f"pi_demo{h}"}}
    return so.customer(customer_id=f"cus_demo{h}", cognito_sub=user), sub, invoice, payment


def stripe(sender, scenario: str, user: str) -> None:
    if scenario == "subscribe":
        customer, sub, *rest = _stripe_objects(user)
        sender.stripe_state(customer, sub, *rest)
        event = so.event("customer.subscription.created", sub)
    elif scenario == "cancel":  # in the portal: access until the period ends, no renewal
        customer, sub, *rest = _stripe_objects(user, cancel_at_period_end=True, canceled_at=int(time.time()))
        sender.stripe_state(customer, sub, *rest)
        event = so.event("customer.subscription.updated", sub, previous={"cancel_at_period_end": False})
    else:  # refund: the dashboard's "refund and cancel now" of the latest payment
        customer, sub, *rest = _stripe_objects(user, status="canceled", ended_at=int(time.time()))
        h = _ids(user)
        charge = so.charge("basil", charge_id=f"ch_demo{h}", customer=customer["id"], invoice_id=None,
                           payment_intent=f"pi_demo{h}", amount_refunded=999)
        refund = so.refund(refund_id=f"re_demo{h}", charge_id=charge["id"], payment_intent=f"pi_demo{h}")
        sender.stripe_state(customer, sub, charge, refund, *rest)
        event = so.event("charge.refunded", charge)
    # A fresh id per delivery: the fixtures' counter restarts with every `demo send`.
    event["id"] = "evt_demo" + secrets.token_hex(12)
    body, headers = signed(event, sender.credentials.stripe_webhook_secret)
    sender.post("stripe", body, headers)


def apple(sender, scenario: str, user: str) -> None:
    store, original = AppStore(sender.credentials.apple_chain()), str(2_000_000_000 + int(_ids(user), 16) % 10**9)
    moment = now()
    if scenario == "subscribe":
        note = store.notification("SUBSCRIBED", "INITIAL_BUY", transaction=store.transaction(original, token=user),
                                  renewal=store.renewal(original))
    elif scenario == "renew":
        # The renewal of the period "subscribe" bought: it ends a period after that one.
        renewed = store.transaction(original, token=user, transaction_id=f"{original}{int(time.time())}",
                                    expires=moment + timedelta(days=60))
        note = store.notification("DID_RENEW", transaction=renewed, renewal=store.renewal(original))
    elif scenario == "refund":
        note = store.notification("REFUND", transaction=store.transaction(original, token=user, revoked=moment),
                                  renewal=store.renewal(original, auto_renew=False))
    else:  # grace: the renewal payment failed; Billing Grace Period keeps access
        lapsed = store.transaction(original, token=user, expires=moment - timedelta(minutes=1))
        note = store.notification("DID_FAIL_TO_RENEW", "GRACE_PERIOD", transaction=lapsed,
                                  renewal=store.renewal(original, retry=True, grace_until=moment + timedelta(days=16)))
    sender.post("apple", store.body(note), {"Content-Type": "application/json"})


# Google: the notification carries only the token; the gateway fetches the purchase.
GOOGLE = {  # scenario: (subscriptionState, notificationType, days until expiry)
    "purchase": ("SUBSCRIPTION_STATE_ACTIVE", 4, 30), "hold": ("SUBSCRIPTION_STATE_ON_HOLD", 5, -1),
    "pause": ("SUBSCRIPTION_STATE_PAUSED", 10, -1), "expire": ("SUBSCRIPTION_STATE_EXPIRED", 13, -1),
}


def google(sender, scenario: str, user: str) -> None:
    state, kind, days = GOOGLE[scenario]
    token = f"demo-purchase-token-{_ids(user)}"
    sender.play_state(token, state=state, user=user, days=days, acknowledged=scenario != "purchase",
                      auto_renew=scenario != "expire")
    message_id = str(secrets.randbelow(10**15))  # Pub/Sub's ids are unique per topic
    sender.post("google", envelope(subscription(token, kind), message_id), sender.push_headers())


def revenuecat(sender, scenario: str, user: str, from_user: str | None = None) -> None:
    transaction = f"rc_demo{_ids(user)}"
    if scenario == "purchase":
        event = rc.event("INITIAL_PURCHASE", user, transaction=transaction)
    elif scenario == "transfer":  # a restore on a new account moves access to it
        event = rc.transfer([from_user or "demo-previous-account"], [user])
    else:
        event = rc.event("EXPIRATION", user, transaction=transaction, expiration_reason="UNSUBSCRIBE",
                         expiration_at_ms=int(time.time() * 1000) - 1000)
    sender.post("revenuecat", rc.body(event), {"Authorization": sender.credentials.revenuecat_auth,
                                               "Content-Type": "application/json"})


SCENARIOS = {"stripe": ("subscribe", "cancel", "refund"), "apple": ("subscribe", "renew", "refund", "grace"),
             "google": tuple(GOOGLE), "revenuecat": ("purchase", "transfer", "expire")}
SENDERS = {"stripe": stripe, "apple": apple, "google": google, "revenuecat": revenuecat}


def dumps(answer) -> str:
    return json.dumps(answer, indent=2)

"""Purchases made after an account deletion that name no user, only a store account the
deleted user's tombstone keeps (``Transaction.keep_accounts``): a Stripe subscription made
under the user's customer through a Payment Link or the dashboard, without
``metadata.cognito_sub``; a RevenueCat purchase under an app user id aliased to the user.
They are the deleted user's late purchases like any other: stopped or reported."""
from __future__ import annotations

import time
from datetime import timedelta

from devtools import google_pubsub as pubsub
from devtools.apple_store import AppStore, now
from devtools import revenuecat as rc
from devtools import scenarios
from devtools import stripe_objects as so
from tests.e2e.test_account_deletion import (  # noqa: F401 (fixtures)
    USER, fakes, late_rows, subscribe_everywhere, work_once, world)


def test_a_stripe_subscription_naming_nobody_under_the_deleted_users_customer_is_cancelled(world):
    subscribe_everywhere(world)
    first = world.delete().get_json()
    h = scenarios._ids(USER)
    # A Payment Link or the dashboard: the user's customer, no metadata.
    late = so.subscription("basil", sub_id=f"sub_link{h}", customer=f"cus_demo{h}")
    world.fakes.stripe.put(late)
    world.stripe_event("customer.subscription.created", late)

    assert world.entitlements()["is_premium"] is False
    assert [(row.source, row.key, row.outcome) for row in late_rows(world)] == [("stripe", late["id"], "pending")]

    work_once(world)

    assert world.fakes.stripe.cancels[-1] == late["id"] and world.fakes.stripe.objects[late["id"]]["status"] == "canceled"
    again = world.delete().get_json()
    assert again["cancelled"] == first["cancelled"] + [{"source": "stripe", "store": "Stripe", "product_id": "price_monthly",
                                                        "after_deletion": True}]
    with world.store.transaction(readonly=True) as tx:
        assert tx.get_subscription("stripe", late["id"]).owner == USER  # kept with the deleted user's


def test_a_revenuecat_purchase_under_an_alias_of_the_deleted_user_is_reported(world):
    headers = {"Authorization": world.credentials.revenuecat_auth, "Content-Type": "application/json"}
    now_ms = int(time.time() * 1000)
    bought = rc.event("INITIAL_PURCHASE", USER, at_ms=now_ms - 60_000, transaction="rc_user")
    anonymous = bought["aliases"][1]
    world.post("revenuecat", rc.body(bought), headers)
    first = world.delete().get_json()
    # The app, still on the device's anonymous id, buys again: the event names that id only.
    late = rc.event("INITIAL_PURCHASE", anonymous, at_ms=now_ms, transaction="rc_anonymous",
                    aliases=[anonymous], original_app_user_id=anonymous)
    world.post("revenuecat", rc.body(late), headers)

    work_once(world)

    assert world.entitlements()["is_premium"] is False
    assert world.delete().get_json()["user_must_cancel"] == first["user_must_cancel"] + [{
        "source": "revenuecat", "store": "RevenueCat", "product_id": late["product_id"], "after_deletion": True,
        "reason": "must_cancel_in_store"}]


def test_a_play_purchase_replacing_the_deleted_users_naming_nobody_is_cancelled(world):
    """An upgrade or resubscription in Play carries ``linkedPurchaseToken``, the deleted
    user's token, and may carry no ``obfuscatedExternalAccountId``."""
    ids = subscribe_everywhere(world)
    world.delete()
    token = f"resubscribed-{scenarios._ids(USER)}"
    world.play_state(token, linked=ids["google_token"])
    world.post("google", pubsub.envelope(pubsub.subscription(token, 4)), world.push_headers())

    assert [(row.source, row.key, row.outcome) for row in late_rows(world)] == [("google", token, "pending")]
    work_once(world)

    assert world.fakes.play.cancels[-1] == (token, "DEVELOPER_REQUESTED_STOP_PAYMENTS")
    assert world.entitlements()["is_premium"] is False
    assert [row.outcome for row in late_rows(world)] == ["cancelled"]


def test_an_app_store_subscription_bought_again_after_it_lapsed_is_reported_again_once(world):
    """Live at the deletion (reported for the user to cancel), then cancelled and lapsed,
    then bought again: the App Store keeps the ``originalTransactionId``, the purchase is
    new and bills a deleted user. Its renewals and redeliveries are the same purchase."""
    subscribe_everywhere(world)
    first = world.delete().get_json()
    store = AppStore(world.credentials.apple_chain())
    original, moment = str(2_000_000_000 + int(scenarios._ids(USER), 16) % 10**9), now()

    def send(kind: str, subtype: str | None, at: int, status: int, auto_renew: bool, expires) -> None:
        signed = moment + timedelta(seconds=at)
        transaction = store.transaction(original, token=USER, transaction_id=f"{original}{at}", expires=expires,
                                        signed=signed)
        note = store.notification(kind, subtype, transaction=transaction, signed=signed, status=status,
                                  renewal=store.renewal(original, auto_renew=auto_renew, signed=signed))
        world.post("apple", store.body(note), {"Content-Type": "application/json"})

    send("EXPIRED", "VOLUNTARY", 1, 2, False, moment - timedelta(minutes=1))
    assert late_rows(world) == []
    send("SUBSCRIBED", "RESUBSCRIBE", 2, 1, True, moment + timedelta(days=30))

    assert [(row.source, row.key, row.outcome) for row in late_rows(world)] == [("apple", original, "pending")]
    work_once(world)
    again = world.delete().get_json()
    assert again["user_must_cancel"] == first["user_must_cancel"] + [{
        "source": "apple", "store": "App Store", "product_id": "com.example.premium.monthly", "after_deletion": True,
        "reason": "must_cancel_in_store"}]

    rows = late_rows(world)
    send("DID_RENEW", None, 3, 1, True, moment + timedelta(days=60))  # its next period: the same purchase
    send("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_ENABLED", 4, 1, True, moment + timedelta(days=60))

    assert late_rows(world) == rows and rows[0].outcome == "must_cancel_in_store"
    assert world.delete().get_json() == again
    assert world.entitlements()["is_premium"] is False

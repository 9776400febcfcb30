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
    OTHER, USER, fakes, late_rows, subscribe_everywhere, work_once, world)


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


def rc_headers(world) -> dict:
    return {"Authorization": world.credentials.revenuecat_auth, "Content-Type": "application/json"}


def anonymously(kind: str, anonymous: str, at_ms: int, transaction: str, **fields) -> dict:
    """An event of a customer RevenueCat knows by an anonymous id only: ``aliases`` is "all
    app user ids ever used by the subscriber", so it names no user."""
    return rc.event(kind, anonymous, at_ms=at_ms, transaction=transaction, aliases=[anonymous],
                    original_app_user_id=anonymous, **fields)


def test_a_revenuecat_purchase_the_user_made_anonymously_before_the_deletion_is_reported(world):
    """Bought on the device's anonymous id, then logged in (an event aliases the two), then
    deleted; the anonymous purchase's own event, stamped before the deletion, comes after it
    (RevenueCat retries a failed delivery for hours): it is the deleted user's."""
    now_ms = int(time.time() * 1000)
    bought = rc.event("INITIAL_PURCHASE", USER, at_ms=now_ms - 60_000, transaction="rc_user")
    anonymous = bought["aliases"][1]
    world.post("revenuecat", rc.body(bought), rc_headers(world))
    first = world.delete().get_json()
    late = anonymously("INITIAL_PURCHASE", anonymous, now_ms - 120_000, "rc_anonymous", product_id="com.example.yearly")
    world.post("revenuecat", rc.body(late), rc_headers(world))

    work_once(world)

    assert world.entitlements()["is_premium"] is False
    assert world.delete().get_json()["user_must_cancel"] == first["user_must_cancel"] + [{
        "source": "revenuecat", "store": "RevenueCat", "product_id": late["product_id"], "after_deletion": True,
        "reason": "must_cancel_in_store"}]


def test_a_new_users_purchase_under_the_deleted_users_anonymous_id_is_held_then_theirs(world):
    """After the deletion, a purchase whose events name only an anonymous id the deleted user
    was aliased to: RevenueCat names a customer's users in every event (``app_user_id`` is the
    last seen identified alias, ``aliases`` all of them), so that customer is not the deleted
    user's. It is neither reported on the deletion nor granted to anyone until an event names
    its user, who then holds it."""
    now_ms = int(time.time() * 1000)
    bought = rc.event("INITIAL_PURCHASE", USER, at_ms=now_ms - 60_000, transaction="rc_user")
    anonymous = bought["aliases"][1]
    world.post("revenuecat", rc.body(bought), rc_headers(world))
    first = world.delete().get_json()
    now_ms = int(time.time() * 1000) + 1  # since the deletion
    late = anonymously("INITIAL_PURCHASE", anonymous, now_ms, "rc_new_user")
    world.post("revenuecat", rc.body(late), rc_headers(world))

    work_once(world)

    assert late_rows(world) == [] and world.delete().get_json() == first
    with world.store.transaction(readonly=True) as tx:
        assert tx.get_subscription("revenuecat", "rc_new_user").owner is None
    assert world.entitlements()["is_premium"] is False and world.entitlements(OTHER)["is_premium"] is False
    # The new user logs in: the purchase's next event names them.
    logged_in = rc.event("UNCANCELLATION", OTHER, at_ms=now_ms + 1_000, transaction="rc_new_user",
                         original_app_user_id=anonymous, aliases=[anonymous, OTHER])
    world.post("revenuecat", rc.body(logged_in), rc_headers(world))

    assert world.entitlements(OTHER)["is_premium"] is True
    assert late_rows(world) == [] and world.delete().get_json() == first


def test_a_new_users_purchase_naming_them_under_the_deleted_users_anonymous_id_is_theirs(world):
    now_ms = int(time.time() * 1000)
    bought = rc.event("INITIAL_PURCHASE", USER, at_ms=now_ms - 60_000, transaction="rc_user")
    anonymous = bought["aliases"][1]
    world.post("revenuecat", rc.body(bought), rc_headers(world))
    first = world.delete().get_json()
    now_ms = int(time.time() * 1000) + 1
    theirs = rc.event("INITIAL_PURCHASE", OTHER, at_ms=now_ms, transaction="rc_other",
                      original_app_user_id=anonymous, aliases=[anonymous, OTHER])
    world.post("revenuecat", rc.body(theirs), rc_headers(world))
    # A later event of it that RevenueCat sends under the anonymous id alone changes nothing.
    world.post("revenuecat", rc.body(anonymously("RENEWAL", anonymous, now_ms + 1_000, "rc_other")), rc_headers(world))

    work_once(world)

    assert world.entitlements(OTHER)["is_premium"] is True and world.entitlements()["is_premium"] is False
    assert late_rows(world) == [] and world.delete().get_json() == first


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

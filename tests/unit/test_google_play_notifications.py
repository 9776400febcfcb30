"""The google source's translation, against an in-memory Play API port (no HTTP)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from devtools import google_pubsub as rtdn
from gateway.domain.changes import Link
from gateway.domain.events import Event
from gateway.domain.model import Snapshot, Status, Subscription, merge_snapshot
from gateway.errors import Malformed, NotFound, StoreApiError, Unavailable
from gateway.providers import google_play_messages as messages
from gateway.providers.google_play_api import PlayApiError, UnknownPurchase
from gateway.providers.google_play_notifications import GooglePlayNotifications

NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


class Play:
    """The PlayApi port in memory: purchases by token, acknowledgements recorded."""

    def __init__(self, **purchases) -> None:
        self.purchases, self.acks, self.error, self.voids = purchases, [], None, []

    def subscription(self, package, token):
        if self.error:
            raise self.error
        if token not in self.purchases:
            raise UnknownPurchase("unknown purchase token (404)", 404)
        return self.purchases[token]

    def acknowledge_subscription(self, package, product_id, token):
        self.acks.append((package, product_id, token))

    def voided_purchases(self, package, start_ms):
        return [v for v in self.voids if int(v["voidedTimeMillis"]) >= start_ms]


class Lookup:
    def __init__(self, subscriptions=None, identities=None) -> None:
        self.subscriptions, self.identities = subscriptions or {}, identities or {}

    def subscription(self, source, key):
        return self.subscriptions.get(key)

    def resolve(self, source, account):
        return self.identities.get(account)


def resource(state="SUBSCRIPTION_STATE_ACTIVE", acknowledged=True, **fields):
    return {"subscriptionState": state,
            "acknowledgementState": "ACKNOWLEDGEMENT_STATE_" + ("ACKNOWLEDGED" if acknowledged else "PENDING"),
            "lineItems": [{"productId": "premium_monthly", "expiryTime": "2026-12-01T12:00:00Z",
                           "autoRenewingPlan": {"autoRenewEnabled": True}}], **fields}


def translate(play, notification, lookup=None):
    data = messages.parse_push(rtdn.envelope(notification))
    event = Event(1, "google", data["messageId"], messages.event_type(notification), NOW, "", data, "received")
    return GooglePlayNotifications(rtdn.PACKAGE, None, play, clock=lambda: NOW).translate(event, lookup or Lookup())


def test_a_pending_acknowledgement_is_made_before_anything_applies():
    play = Play(tok=resource(acknowledged=False))
    (snapshot,) = translate(play, rtdn.subscription("tok")).snapshots
    assert play.acks == [(rtdn.PACKAGE, "premium_monthly", "tok")] and snapshot.as_of == NOW


def test_a_failed_acknowledgement_fails_the_translation_so_the_event_is_retried():
    class Refusing(Play):
        def acknowledge_subscription(self, package, product_id, token):
            raise PlayApiError("Play API subscriptions failed (500)", 500)

    with pytest.raises(StoreApiError):
        translate(Refusing(tok=resource(acknowledged=False)), rtdn.subscription("tok"))


def test_a_replacing_purchase_without_a_user_carries_the_old_owner_over():
    old = Subscription(Snapshot("google", "old", NOW, Status.ACTIVE, product_id="premium_monthly"), owner="sub-1")
    translation = translate(Play(new=resource(linkedPurchaseToken="old")), rtdn.subscription("new"),
                            Lookup(subscriptions={"old": old}))
    new, replaced = translation.snapshots
    assert translation.links == (Link("google", "new", "sub-1", carries=True),)
    assert (new.key, replaced.key, replaced.raw_status, replaced.status) == ("new", "old", "REPLACED", Status.EXPIRED)


def test_the_old_owner_is_found_through_identities_too():
    translation = translate(Play(new=resource(linkedPurchaseToken="old")), rtdn.subscription("new"),
                            Lookup(identities={"old": "sub-2"}))
    assert translation.links == (Link("google", "new", "sub-2", carries=True),)


def test_a_replacing_purchase_that_names_its_user_carries_no_owner_over():
    named = resource(linkedPurchaseToken="old", externalAccountIdentifiers={"obfuscatedExternalAccountId": "sub-3"})
    translation = translate(Play(new=named), rtdn.subscription("new"), Lookup(identities={"old": "sub-1"}))
    assert translation.links == (Link("google", "new", "sub-3", NOW, carries=True),)  # its own user, linked to its token
    assert translation.snapshots[0].user_sub == "sub-3" and translation.snapshots[0].account == "new"


def test_a_replacing_purchase_whose_old_owner_is_unknown_goes_with_the_old_token():
    """Neither purchase names a user yet: whoever the old token's account is linked to
    later (its own delivery, its registration) holds both."""
    translation = translate(Play(new=resource(linkedPurchaseToken="old")), rtdn.subscription("new"), Lookup())
    new, replaced = translation.snapshots
    assert translation.links == () and (new.account, replaced.account) == ("old", None)


def test_a_replacing_purchase_already_registered_keeps_its_own_account():
    translation = translate(Play(new=resource(linkedPurchaseToken="old")), rtdn.subscription("new"),
                            Lookup(identities={"new": "sub-4"}))
    assert translation.links == () and translation.snapshots[0].account == "new"


ORDER = "GPA.3333-4137-0319-36762"


def paid_by(order, state="SUBSCRIPTION_STATE_ACTIVE"):
    purchase = resource(state, latestOrderId=order)
    purchase["lineItems"][0]["latestSuccessfulOrderId"] = order
    return purchase


def voided_at(play, token, order, when):
    play.voids.append({"purchaseToken": token, "orderId": order, "voidedTimeMillis": str(int(when.timestamp() * 1000))})


def test_a_void_of_the_order_that_paid_the_current_period_takes_that_period_back():
    play = Play(tok=paid_by(ORDER))
    voided_at(play, "tok", ORDER, NOW)
    (snapshot,) = translate(play, rtdn.voided("tok", at_ms=int(NOW.timestamp() * 1000))).snapshots
    assert snapshot.revokes == f"voided:{ORDER}" and snapshot.as_of == NOW
    known = merge_snapshot(None, Snapshot("google", "tok", NOW + timedelta(hours=1), Status.ACTIVE,
                                  expires_at=snapshot.expires_at, account="tok"))
    assert merge_snapshot(known, snapshot).snapshot.status is Status.REVOKED


def test_a_void_of_an_older_renewal_order_leaves_the_current_period_standing():
    play = Play(tok=paid_by(f"{ORDER}..1"))
    voided_at(play, "tok", ORDER, NOW)
    (snapshot,) = translate(play, rtdn.voided("tok", at_ms=int(NOW.timestamp() * 1000))).snapshots
    assert snapshot.revokes is None and snapshot.status is Status.ACTIVE


@pytest.mark.parametrize("listed", [None, ("other-token", ORDER), ("tok", f"{ORDER}..0")])
def test_a_void_play_does_not_list_for_that_token_and_order_changes_nothing(listed):
    play = Play(tok=paid_by(ORDER))
    if listed:
        voided_at(play, *listed, NOW)
    translation = translate(play, rtdn.voided("tok", at_ms=int(NOW.timestamp() * 1000)))
    assert translation.is_empty and "do not list" in translation.ignored_reason


def test_a_void_cannot_be_confirmed_while_play_is_down_so_it_is_retried():
    play = Play(tok=paid_by(ORDER))
    play.voided_purchases = lambda package, start_ms: (_ for _ in ()).throw(PlayApiError("down", 503))
    with pytest.raises(StoreApiError):
        translate(play, rtdn.voided("tok", at_ms=int(NOW.timestamp() * 1000)))


def test_a_token_google_does_not_know_is_ignored_and_other_failures_propagate():
    assert translate(Play(), rtdn.subscription("nope")).ignored_reason == "unknown purchase token (404)"
    play = Play(tok=resource())
    play.error = PlayApiError("Play API did not answer (ConnectTimeout)")
    with pytest.raises(StoreApiError):
        translate(play, rtdn.subscription("tok"))


def test_another_package_is_ignored_without_asking_google():
    play = Play()
    play.error = AssertionError("must not be called")
    translation = translate(play, rtdn.notification(package="com.other", subscriptionNotification={
        "notificationType": 4, "purchaseToken": "tok"}))
    assert "com.other" in translation.ignored_reason


@pytest.mark.parametrize("notification, kind", [
    (rtdn.subscription("t", 4), "subscriptionNotification.SUBSCRIPTION_PURCHASED"),
    (rtdn.subscription("t", 22), "subscriptionNotification.SUBSCRIPTION_PRICE_STEP_UP_CONSENT_UPDATED"),
    (rtdn.subscription("t", 42), "subscriptionNotification.42"),
    (rtdn.one_time("t", 2), "oneTimeProductNotification.ONE_TIME_PRODUCT_CANCELED"),
    (rtdn.voided("t"), "voidedPurchaseNotification"),
    (rtdn.console_test(), "testNotification"),
    (rtdn.notification(somethingNew={}), "unknown"),
])
def test_event_types_name_the_member_and_notification_type(notification, kind):
    assert messages.event_type(notification) == kind


def test_registration_maps_play_answers_to_client_errors():
    source = GooglePlayNotifications(rtdn.PACKAGE, None, Play(tok=resource()), clock=lambda: NOW)
    with pytest.raises(NotFound):
        source.purchase("unknown", "premium_monthly", Lookup())
    with pytest.raises(Malformed):
        source.purchase("tok", "premium_yearly", Lookup())
    source.api.error = PlayApiError("Play API failed (500)", 500)
    with pytest.raises(Unavailable):
        source.purchase("tok", "premium_monthly", Lookup())

"""POST /webhooks/google end to end: signed pushes, the Play API fake, the public API."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from devtools import google_pubsub as rtdn
from devtools.google_play import ORDER
from devtools.google_pubsub import mint_key
from gateway.jobs import retry
from tests.support.google_gateway import _play_server, google, play, push_signer  # noqa: F401

USER = "8d1f4e0a-1111-4c4c-9999-0123456789ab"


def test_source_without_its_settings_refuses_with_503(make_app, push_signer):
    app = make_app(GOOGLE_PACKAGE_NAME="com.example.app")
    answer = app.test_client().post("/webhooks/google", data=rtdn.envelope(rtdn.console_test()),
                                    headers=push_signer.headers())
    assert (answer.status_code, answer.get_json()["error"]) == (503, "source_not_configured")


@pytest.mark.parametrize("claims", [
    {"aud": "https://elsewhere.example.com/push"},
    {"aud": None},
    {"email": "someone-else@example-project.iam.gserviceaccount.com"},
    {"email_verified": False},
    {"email_verified": None},
    {"exp": 1_600_000_000, "iat": 1_599_996_400},
    {"iss": "https://evil.example.com"},
], ids=["wrong-audience", "no-audience", "wrong-service-account", "unverified-email", "no-email-verified",
        "expired", "wrong-issuer"])
def test_invalid_push_tokens_are_401_and_store_nothing(google, claims):
    answer = google.push(rtdn.console_test(), message_id="m-bad", **claims)
    assert answer.status_code == 401 and answer.get_json()["error"] == "invalid_token"
    assert google.event("m-bad") is None


def test_a_token_signed_by_another_key_is_401(google):
    answer = google.push(rtdn.console_test(), message_id="m-forged", key=mint_key())
    assert answer.status_code == 401 and google.event("m-forged") is None


@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt"])
def test_missing_or_garbled_authorization_is_401(google, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    answer = google.push(rtdn.console_test(), message_id="m-none", headers=headers)
    assert answer.status_code == 401 and google.event("m-none") is None


@pytest.mark.parametrize("issuer", ["accounts.google.com", "https://accounts.google.com"])
def test_both_google_issuer_spellings_are_accepted(google, issuer):
    assert google.push(rtdn.console_test(), iss=issuer).get_json() == {"status": "ignored"}


def test_unreachable_certificates_are_503_and_store_nothing(google):
    google.signer.available = False
    answer = google.push(rtdn.console_test(), message_id="m-503")
    assert (answer.status_code, answer.get_json()["error"]) == (503, "certificates_unavailable")
    assert google.event("m-503") is None


def test_certificates_are_fetched_once_and_cached_for_their_max_age(google):
    before = google.signer.fetches
    for _ in range(3):
        assert google.push(rtdn.console_test()).status_code == 200
    assert google.signer.fetches == before + 1


def test_a_purchase_naming_the_user_grants_and_is_acknowledged(google):
    google.play.subscribe("tok-1", user=USER)
    assert google.push(rtdn.subscription("tok-1", 4)).get_json() == {"status": "processed"}
    premium = google.premium(USER)
    assert premium["active"] and premium["status"] == "active" and premium["will_renew"]
    assert (premium["source"], premium["product_id"]) == ("google", "premium_monthly")
    assert google.play.acks == [("premium_monthly", "tok-1")]


@pytest.mark.parametrize("kind", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 18, 19, 20, 22, 99])
def test_every_subscription_notification_type_snapshots_the_fetched_state(google, kind):
    google.play.subscribe("tok-k", "SUBSCRIPTION_STATE_IN_GRACE_PERIOD", user=USER, acknowledged=True)
    assert google.push(rtdn.subscription("tok-k", kind)).get_json() == {"status": "processed"}
    assert google.premium(USER)["status"] == "grace_period" and google.play.gets == ["tok-k"]


@pytest.mark.parametrize("state, status, active, renews", [
    ("SUBSCRIPTION_STATE_ACTIVE", "active", True, True),
    ("SUBSCRIPTION_STATE_CANCELED", "active", True, False),
    ("SUBSCRIPTION_STATE_IN_GRACE_PERIOD", "grace_period", True, True),
    ("SUBSCRIPTION_STATE_ON_HOLD", "billing_retry", False, True),
    ("SUBSCRIPTION_STATE_PAUSED", "paused", False, True),
    ("SUBSCRIPTION_STATE_EXPIRED", "expired", False, False),
    ("SUBSCRIPTION_STATE_PENDING", "pending", False, True),
    ("SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED", "expired", False, False),
])
def test_subscription_states_map_to_entitlement_statuses(google, state, status, active, renews):
    google.play.subscribe("tok-s", state, user=USER, acknowledged=True)
    google.push(rtdn.subscription("tok-s", 2))
    premium = google.premium(USER)
    assert (premium["status"], premium["active"], premium["will_renew"]) == (status, active, renews)


def test_a_redelivered_message_is_a_duplicate_and_fetches_nothing(google):
    google.play.subscribe("tok-d", user=USER)
    first = google.push(rtdn.subscription("tok-d"), message_id="m-dup")
    again = google.push(rtdn.subscription("tok-d"), message_id="m-dup")
    assert (first.get_json(), again.get_json()) == ({"status": "processed"}, {"status": "duplicate"})
    assert google.play.gets == ["tok-d"] and len(google.play.acks) == 1


def test_a_burst_delivered_concurrently_and_twice_converges(google):
    google.play.subscribe("tok-burst", user=USER)
    bodies = [rtdn.envelope(rtdn.subscription("tok-burst", kind), message_id=f"m-burst-{kind}") for kind in (4, 2, 7, 1)]

    def send(body):
        answer = google.app.test_client().post("/webhooks/google", data=body, headers=google.signer.headers())
        return answer.status_code, answer.get_json()["status"]

    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(send, bodies * 2))
    assert outcomes == [(200, "duplicate")] * 4 + [(200, "processed")] * 4
    assert google.premium(USER)["active"] is True and google.play.acks  # acknowledging twice is harmless


def test_a_later_notification_moves_the_state_to_what_google_says_now(google):
    google.play.subscribe("tok-l", user=USER)
    google.push(rtdn.subscription("tok-l", 4))
    google.play.subscribe("tok-l", "SUBSCRIPTION_STATE_EXPIRED", user=USER, acknowledged=True, days=-1)
    google.push(rtdn.subscription("tok-l", 13))
    assert google.entitlements(USER)["is_premium"] is False


def test_an_unacknowledged_purchase_is_deferred_until_the_acknowledgement_succeeds(google):
    google.play.subscribe("tok-a", user=USER)
    google.play.fail_acks = 1
    assert google.push(rtdn.subscription("tok-a", 4), message_id="m-ack").get_json() == {"status": "deferred"}
    assert google.event("m-ack").status == "deferred" and google.play.acks == []
    assert google.entitlements(USER)["is_premium"] is False
    assert google.retry() == "processed: 1"
    assert google.play.acks == [("premium_monthly", "tok-a")]
    assert google.premium(USER)["active"] and google.event("m-ack").status == "processed"


def test_the_play_api_down_defers_and_the_retry_applies(google):
    google.play.subscribe("tok-down", user=USER)
    google.play.down = True
    assert google.push(rtdn.subscription("tok-down"), message_id="m-down").get_json() == {"status": "deferred"}
    assert "503" in google.event("m-down").last_error
    google.play.down = False
    assert google.retry() == "processed: 1"
    assert google.premium(USER)["active"] and len(google.play.acks) == 1


def test_a_token_google_does_not_know_is_ignored(google):
    assert google.push(rtdn.subscription("tok-unknown"), message_id="m-404").get_json() == {"status": "ignored"}
    assert "unknown purchase token (404)" in google.event("m-404").last_error


def test_a_voided_subscription_is_revoked(google):
    google.play.subscribe("tok-v", user=USER)
    google.push(rtdn.subscription("tok-v", 4))
    google.play.void("tok-v")
    assert google.push(rtdn.voided("tok-v", product_type=1, refund_type=1)).get_json() == {"status": "processed"}
    premium = google.premium(USER)
    assert (premium["status"], premium["active"], premium["product_id"]) == ("revoked", False, "premium_monthly")
    # Play goes on showing the voided period as active: a later notification of it does not give it back.
    assert google.push(rtdn.subscription("tok-v", 2)).get_json() == {"status": "processed"}
    assert google.premium(USER)["status"] == "revoked"


def test_a_void_delivered_before_the_purchase_it_voids_still_revokes(google):
    """Pub/Sub does not keep order: the void of a purchase never seen yet is applied to the
    purchase as Play shows it, and the purchase's own notification, later, does not give
    the voided period back."""
    google.play.subscribe("tok-vf", user=USER)
    google.play.void("tok-vf")
    assert google.push(rtdn.voided("tok-vf")).get_json() == {"status": "processed"}
    assert google.premium(USER)["status"] == "revoked"
    assert google.push(rtdn.subscription("tok-vf", 4)).get_json() == {"status": "processed"}
    assert google.premium(USER)["status"] == "revoked"


def test_a_void_delivered_before_an_unnamed_purchase_is_registered_stays_revoked(google):
    google.play.subscribe("tok-vu", acknowledged=True)
    google.play.void("tok-vu")
    assert google.push(rtdn.voided("tok-vu")).get_json() == {"status": "processed"}
    answer = google.register(USER, "tok-vu")
    assert answer.status_code == 200 and answer.get_json()["entitlements"]["premium"]["status"] == "revoked"


def test_a_renewal_into_a_new_period_after_a_void_grants_again(google):
    google.play.subscribe("tok-vr", user=USER)
    google.push(rtdn.subscription("tok-vr", 4))
    google.play.void("tok-vr")
    google.push(rtdn.voided("tok-vr"))
    google.play.subscribe("tok-vr", user=USER, days=60, order=f"{ORDER}..0")
    google.push(rtdn.subscription("tok-vr", 2))
    assert google.premium(USER)["active"] is True


def test_a_void_of_an_older_renewal_order_leaves_the_current_period(google):
    google.play.subscribe("tok-old", user=USER, order=f"{ORDER}..1")
    google.push(rtdn.subscription("tok-old", 2))
    google.play.void("tok-old", ORDER)  # the first period's order, long renewed
    assert google.push(rtdn.voided("tok-old")).get_json() == {"status": "processed"}
    assert google.premium(USER)["active"] is True


def test_a_void_play_does_not_list_revokes_nothing(google):
    google.play.subscribe("tok-f", user=USER)
    google.push(rtdn.subscription("tok-f", 4))
    google.play.void("tok-other")  # a real void, of another purchase
    assert google.push(rtdn.voided("tok-f"), message_id="m-forged").get_json() == {"status": "ignored"}
    assert "do not list" in google.event("m-forged").last_error
    assert google.premium(USER)["active"] is True


@pytest.mark.parametrize("order", ["old-first", "new-first"])
def test_an_upgraded_purchase_never_grants_again_whatever_the_order_of_delivery(google, order):
    """Play goes on showing the old token of an upgrade as active; only the new token may
    grant (https://medium.com/androiddevelopers/implementing-linkedpurchasetoken-correctly-to-prevent-duplicate-subscriptions-82dfbf7167da).
    Here the upgrade has ended already (revoked): whichever of the two notifications comes
    first, nothing grants, the old token's 20 days included."""
    google.play.subscribe("tok-up-old", user=USER, acknowledged=True, days=20)
    google.play.subscribe("tok-up-new", "SUBSCRIPTION_STATE_EXPIRED", product="premium_yearly", user=USER,
                          acknowledged=True, days=0, linked="tok-up-old")
    tokens = ["tok-up-old", "tok-up-new"] if order == "old-first" else ["tok-up-new", "tok-up-old"]
    for token in tokens:
        assert google.push(rtdn.subscription(token, 4)).get_json() == {"status": "processed"}
    assert google.entitlements(USER)["is_premium"] is False


@pytest.mark.parametrize("notification", [
    rtdn.console_test(),
    rtdn.one_time("otp-1", 1),
    rtdn.one_time("otp-1", 2),
    rtdn.voided("otp-1", product_type=2, refund_type=2),
    rtdn.notification(pendingRefundReviewNotification={"purchaseToken": "tok-r", "pendingRefundToken": "r-1"}),
    rtdn.notification(futureNotification={"version": "1.0"}),
    rtdn.notification(),
    rtdn.notification(package="com.other.app", subscriptionNotification={"notificationType": 4,
                                                                          "purchaseToken": "tok-x"}),
], ids=["test", "one-time-purchased", "one-time-canceled", "voided-one-time", "pending-refund-review",
        "unknown-member", "no-member", "another-package"])
def test_notifications_without_subscription_state_are_recorded_and_ignored(google, notification):
    answer = google.push(notification, message_id="m-ign")
    assert answer.get_json() == {"status": "ignored"} and google.event("m-ign").status == "ignored"
    assert google.play.gets == [] and google.play.acks == []


@pytest.mark.parametrize("body", [
    b"not json",
    b"{}",
    b'{"message": {"data": "e30="}}',
    b'{"message": {"messageId": "1", "data": "%%%"}}',
    b'{"message": {"messageId": "1", "data": "WzFd"}}',
    rtdn.envelope(rtdn.notification(subscriptionNotification={"notificationType": 4})),
    rtdn.envelope(rtdn.notification(voidedPurchaseNotification={"purchaseToken": "t"}) | {"eventTimeMillis": None}),
], ids=["not-json", "no-message", "no-message-id", "data-not-base64", "data-not-an-object", "no-purchase-token",
        "voided-without-event-time"])
def test_malformed_pushes_are_400_and_store_nothing(google, body):
    answer = google.client.post("/webhooks/google", data=body, headers=google.signer.headers())
    assert answer.status_code == 400 and google.event("1") is None


def test_a_request_overtaken_by_the_retry_worker_commits_nothing_of_the_delivery(google, play):
    # A live request still reading Play when the worker judges its delivery abandoned
    # (EVENTS_STALE_AFTER_SECONDS; gunicorn never kills a thread): the worker applies it,
    # and the request, once its read times out, neither applies it again nor marks it.
    play.subscribe("tok-live", user="user-live", acknowledged=True)
    held = play.hold()  # the request's read waits past its timeout
    answers = {}
    request = threading.Thread(target=lambda: answers.update(
        live=google.push(rtdn.subscription("tok-live"), message_id="live-1").get_json()))
    request.start()
    assert held.read.wait(5)
    time.sleep(1.1)
    worker = retry.retry_due(google.services.ingest, google.services.providers, stale_after=timedelta(seconds=1))
    assert worker == {"processed": 1} and google.premium("user-live")["active"] is True
    request.join(20)
    held.release()
    event = google.event("live-1")
    assert answers["live"] == {"status": "deferred"}  # stored; the worker has it
    assert (event.status, event.attempts, event.next_attempt_at) == ("processed", 1, None)

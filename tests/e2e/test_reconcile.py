"""``flask --app wsgi reconcile`` against local fakes of every store API: drift is repaired
through the same core as a webhook, what drifted is printed, and failures are loud."""
from __future__ import annotations

from datetime import timedelta

from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.apple_store import ms, now
from devtools.google_pubsub import envelope, subscription, voided
from tests.e2e.reconcile_world import *  # noqa: F401,F403 (fixtures)
from tests.e2e.reconcile_world import new_user, soon

PRODUCT = "com.example.premium.monthly"


def rc_purchase(world, revenuecat, user, transaction="7000001", hours=6):
    at = now() - timedelta(days=29)
    expires = soon(hours)
    event = rc.event("INITIAL_PURCHASE", user, transaction=transaction, at_ms=ms(at), expiration_at_ms=ms(expires))
    assert world.revenuecat(event).get_json() == {"status": "processed"}
    revenuecat.subscribe(user, PRODUCT, expires=expires)
    return expires


def test_a_missed_revenuecat_refund_is_repaired_and_reported(world, revenuecat):
    user = new_user()
    expires = rc_purchase(world, revenuecat, user)
    assert world.premium(user)["active"] is True
    revenuecat.subscribe(user, PRODUCT, expires=expires, refunded=now())  # the REFUND webhook never came

    code, output = world.reconcile("--source", "revenuecat")

    assert code == 0, output
    assert "revenuecat: checked 1, changed 1, unchanged 0, failed 0" in output
    assert "drift 7000001: active -> revoked" in output
    assert world.premium(user)["status"] == "revoked"
    code, output = world.reconcile("--source", "revenuecat")
    assert code == 0 and "checked 1, changed 0, unchanged 1, failed 0" in output


def test_dry_run_reports_drift_and_changes_nothing(world, revenuecat):
    user = new_user()
    expires = rc_purchase(world, revenuecat, user)
    revenuecat.subscribe(user, PRODUCT, expires=expires + timedelta(days=30))  # a renewal we missed

    code, output = world.reconcile("--source", "revenuecat", "--dry-run")

    assert code == 0 and "changed 1" in output and "(dry run)" in output and "expires" in output
    assert world.premium(user)["expires_at"] == expires.isoformat().replace("+00:00", "Z")


def test_a_missed_stripe_cancellation_and_an_unknown_owner_are_repaired(world, stripe_fake):
    user, customer, sub_id = new_user(), so.new_id("cus"), so.new_id("sub")
    start = int(now().timestamp()) - 29 * so.DAY
    body = so.subscription("basil", sub_id=sub_id, customer=customer, start=start, end=start + 29 * so.DAY + 3600)
    stripe_fake.put(so.customer(customer_id=customer))  # metadata added later, from the dashboard
    stripe_fake.put(body)
    assert world.stripe(so.event("customer.subscription.created", body, created=start)).status_code == 200
    assert world.premium(user) is None  # stored, owner unknown
    stripe_fake.put(so.customer(customer_id=customer, cognito_sub=user))
    stripe_fake.put({**body, "status": "canceled", "ended_at": int(now().timestamp()) - 60})  # missed

    code, output = world.reconcile("--source", "stripe")

    assert code == 0, output
    assert "stripe: checked 1, changed 1" in output
    assert f"drift {sub_id}: active -> expired, expires" in output and "owner known" in output
    assert world.premium(user)["status"] == "expired"


def test_a_pending_google_purchase_paid_unseen_is_acknowledged_and_granted(world, play, push_signer):
    user, token = new_user(), "token-pending-1"
    play.subscribe(token, "SUBSCRIPTION_STATE_PENDING", user=user)
    answer = world.client.post("/webhooks/google", data=envelope(subscription(token)), headers=push_signer.headers())
    assert answer.get_json() == {"status": "processed"}
    play.subscribe(token, "SUBSCRIPTION_STATE_ACTIVE", user=user)  # paid; no notification reached us

    code, output = world.reconcile("--source", "google")

    assert code == 0, output
    assert "google: checked 1, changed 1, unchanged 0, failed 0, acknowledged 1" in output
    assert play.acks == [("premium_monthly", token)]
    assert world.premium(user)["active"] is True


def test_apple_statuses_repair_a_missed_refund(world, apple_api):
    user, key = new_user(), "2000000111"
    store = world.apple
    transaction = store.transaction(key, token=user, expires=soon(12), signed=now() - timedelta(days=1))
    body = store.body(store.notification("SUBSCRIBED", transaction=transaction, renewal=store.renewal(key),
                                         signed=now() - timedelta(days=1)))
    assert world.apple_post(body).get_json() == {"status": "processed"}
    revoked = store.transaction(key, token=user, expires=soon(12), revoked=now() - timedelta(minutes=5))
    apple_api.statuses[key] = {"environment": "Sandbox", "bundleId": store.bundle_id, "appAppleId": store.app_apple_id,
                               "data": [{"subscriptionGroupIdentifier": "21000001", "lastTransactions": [{
                                   "status": 5, "originalTransactionId": key,
                                   "signedTransactionInfo": store.chain.sign(revoked),
                                   "signedRenewalInfo": store.chain.sign(store.renewal(key, auto_renew=False))}]}]}

    code, output = world.reconcile("--source", "apple")

    assert code == 0, output
    assert "apple: checked 1, changed 1" in output and f"drift {key}: active -> revoked" in output
    assert world.premium(user)["status"] == "revoked"


def test_apple_statuses_keep_a_grace_period_they_state_without_its_end(world, apple_api):
    """Status 4 (billing grace period) with renewal info that has no gracePeriodExpiresDate
    stays a grace period (the shortest Apple offers, 3 days from the lapsed period's end), as
    the notification that began it said, instead of drifting to billing retry."""
    user, key = new_user(), "2000000333"
    store = world.apple
    lapsed = now() - timedelta(hours=2)
    transaction = store.transaction(key, token=user, expires=lapsed, signed=now() - timedelta(days=1))
    renewal = store.renewal(key, retry=True)
    failed = store.notification("DID_FAIL_TO_RENEW", "GRACE_PERIOD", status=4, transaction=transaction,
                                renewal=renewal, signed=now() - timedelta(hours=1))
    assert world.apple_post(store.body(failed)).get_json() == {"status": "processed"}
    apple_api.statuses[key] = {"environment": "Sandbox", "bundleId": store.bundle_id, "appAppleId": store.app_apple_id,
                               "data": [{"subscriptionGroupIdentifier": "21000001", "lastTransactions": [{
                                   "status": 4, "originalTransactionId": key,
                                   "signedTransactionInfo": store.chain.sign(transaction),
                                   "signedRenewalInfo": store.chain.sign(renewal)}]}]}

    code, output = world.reconcile("--source", "apple", "--ahead-days", "4")

    assert code == 0, output
    assert "apple: checked 1" in output and "grace_period -> billing_retry" not in output
    granted = world.premium(user)
    assert (granted["status"], granted["active"]) == ("grace_period", True), output
    assert granted["expires_at"] == (lapsed + timedelta(days=3)).isoformat().replace("+00:00", "Z")


def test_apple_notification_history_recovers_an_undelivered_notification_once(world, apple_api):
    user, key = new_user(), "2000000222"
    store = world.apple
    notification = store.notification("SUBSCRIBED", transaction=store.transaction(key, token=user),
                                      renewal=store.renewal(key))
    apple_api.history.append([{"signedPayload": store.chain.sign(notification), "sendAttempts": [
        {"attemptDate": ms(now()), "sendAttemptResult": "TIMED_OUT"}]}])

    code, output = world.reconcile("--source", "apple")

    assert code == 0, output
    assert "history processed 1" in output
    assert world.premium(user)["active"] is True
    recorded = world.event("apple", notification["notificationUUID"])
    assert recorded is not None and recorded.status == "processed"
    # Apple's own retry arrives later: a duplicate, nothing applied twice.
    assert world.apple_post(store.body(notification)).get_json() == {"status": "duplicate"}
    history_calls = [r for r in apple_api.server.requests if r.path.endswith("/notifications/history")]
    assert history_calls and history_calls[-1].json()["onlyFailures"] is True


def test_a_store_api_down_fails_its_source_only_and_exits_non_zero(world, revenuecat, stripe_fake):
    user = new_user()
    expires = rc_purchase(world, revenuecat, user)
    revenuecat.subscribe(user, PRODUCT, expires=expires, refunded=now())
    revenuecat.down = True

    code, output = world.reconcile()

    assert code == 1
    assert "revenuecat: checked 1, changed 0, unchanged 0, failed 1" in output
    assert "stripe: checked 0" in output and "apple: checked 0" in output
    assert world.premium(user)["status"] == "active"  # nothing half-applied
    revenuecat.down = False
    assert world.reconcile()[0] == 0 and world.premium(user)["status"] == "revoked"


def test_a_429_is_waited_out_when_retry_after_is_short_and_fails_when_it_is_long(world, revenuecat):
    user = new_user()
    rc_purchase(world, revenuecat, user)
    revenuecat.throttle, revenuecat.retry_after = 1, "0"
    code, output = world.reconcile("--source", "revenuecat")
    assert code == 0 and "checked 1, changed 0, unchanged 1, failed 0" in output

    revenuecat.throttle, revenuecat.retry_after = 1, "3600"
    code, output = world.reconcile("--source", "revenuecat")
    assert code == 1 and "failed 1" in output and "429" in output


def test_unconfigured_sources_are_skipped_and_fail_only_when_named(make_app):
    runner = make_app().test_cli_runner()
    everything = runner.invoke(args=["reconcile"])
    assert everything.exit_code == 0
    assert "stripe: skipped (STRIPE_API_KEY is not set)" in everything.output
    assert "revenuecat: skipped (REVENUECAT_API_KEY is not set)" in everything.output
    named = runner.invoke(args=["reconcile", "--source", "apple"])
    assert named.exit_code == 1 and "apple: skipped (the App Store is not configured" in named.output


def google_purchase(world, play, push_signer, token, user=None, days=0.5, **purchase):
    play.subscribe(token, user=user, days=days, acknowledged=True, **purchase)
    answer = world.client.post("/webhooks/google", data=envelope(subscription(token)), headers=push_signer.headers())
    assert answer.get_json() == {"status": "processed"}


def test_tokens_google_forgot_are_unchanged_not_failures_and_the_rest_is_checked(world, play, push_signer):
    """Google answers 410 for tokens long expired: before, eight of them in a row took the
    whole source for down and every later subscription was skipped."""
    forgotten = [f"token-forgotten-{n}" for n in range(10)]
    for token in forgotten:  # no owner known, expiring within the window
        google_purchase(world, play, push_signer, token)
        del play.purchases[token]
    user = new_user()
    google_purchase(world, play, push_signer, "token-zz-live", user=user)
    play.purchases["token-zz-live"]["subscriptionState"] = "SUBSCRIPTION_STATE_ON_HOLD"  # missed

    code, output = world.reconcile("--source", "google")

    assert code == 0, output
    assert "google: checked 11, changed 1, unchanged 10, failed 0" in output
    assert world.premium(user)["status"] == "billing_retry"


def test_subscriptions_that_ended_long_ago_are_not_read_again_even_without_an_owner(world, play, push_signer):
    # Expired, owner never known. (Stored as active and renewing, it would be read up to Play's bound.)
    google_purchase(world, play, push_signer, "token-ancient", days=-90, state="SUBSCRIPTION_STATE_EXPIRED",
                    auto_renew=False)
    code, output = world.reconcile("--source", "google")
    assert code == 0 and "google: checked 0" in output
    assert play.gets.count("token-ancient") == 1  # the webhook's fetch only


def test_a_voided_google_purchase_stays_revoked_while_play_shows_the_same_period(world, play, push_signer):
    user, token = new_user(), "token-voided"
    google_purchase(world, play, push_signer, token, user=user)
    play.void(token)
    answer = world.client.post("/webhooks/google", data=envelope(voided(token)), headers=push_signer.headers())
    assert answer.get_json() == {"status": "processed"} and world.premium(user)["status"] == "revoked"
    play.purchases[token]["subscriptionState"] = "SUBSCRIPTION_STATE_CANCELED"  # refunded, not revoked in Play

    code, output = world.reconcile("--source", "google")
    assert code == 0 and "changed 0" in output
    answer = world.client.post("/webhooks/google", data=envelope(subscription(token, kind=3)),
                               headers=push_signer.headers())  # SUBSCRIPTION_CANCELED, for the same period
    assert answer.get_json() == {"status": "processed"} and world.premium(user)["status"] == "revoked"

    play.subscribe(token, user=user, days=60, acknowledged=True)  # renewed into a new period: access again
    assert world.reconcile("--source", "google")[0] == 0 and world.premium(user)["status"] == "active"


def test_a_refunded_revenuecat_purchase_is_not_revived_by_a_later_purchase_of_the_product(world, revenuecat):
    user = new_user()
    expires = rc_purchase(world, revenuecat, user, transaction="7000100")
    refund = rc.event("CANCELLATION", user, transaction="7000100", at_ms=ms(now()), expiration_at_ms=ms(expires),
                      cancel_reason="CUSTOMER_SUPPORT")
    assert world.revenuecat(refund).get_json() == {"status": "processed"}
    assert world.premium(user)["status"] == "revoked"
    revenuecat.subscribe(user, PRODUCT, expires=expires + timedelta(days=30))  # bought again: another purchase

    code, output = world.reconcile("--source", "revenuecat")

    assert code == 0 and "checked 1, changed 0, unchanged 1, failed 0" in output
    assert world.premium(user)["status"] == "revoked"


def test_a_revenuecat_purchase_that_does_not_renew_is_not_a_failure(world, revenuecat):
    anonymous = "$RCAnonymousID:0f2d1c9e8b7a46e5a3c2b1d0e9f8a7b6"  # owner unknown: re-read every run
    event = rc.event("NON_RENEWING_PURCHASE", anonymous, product_id="lifetime_unlock", expiration_at_ms=None,
                     transaction="7000200", aliases=[anonymous])
    assert world.revenuecat(event).get_json()["status"] in ("processed", "ignored")
    revenuecat.buy_once(anonymous, "lifetime_unlock", at=now())

    code, output = world.reconcile("--source", "revenuecat")

    assert code == 0, output
    assert "revenuecat: checked 1, changed 0, unchanged 1, failed 0" in output

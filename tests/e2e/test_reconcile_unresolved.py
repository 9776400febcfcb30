"""Reconcile re-reads a subscription the store has not settled (billing retry, account hold,
a pause) however long ago its period ended, up to the store's bound: a recovery whose
webhook was lost (Apple's DID_RENEW BILLING_RECOVERY, Play's SUBSCRIPTION_RECOVERED,
Stripe's resumption, RevenueCat's RENEWAL) would otherwise leave a paying user locked out
for good once the period's end had left reconcile's ``--since-days`` window. A subscription
that ended for good is not read again: no quota spent on it every day.

Against the local fakes of each store's API; on SQLite and PostgreSQL (``TEST_DATABASE``).
Mutations these catch, in ``gateway/store/statements.py`` / ``gateway/domain/unresolved.py``:
the unresolved branch left out (the old query: the recoveries fail), ``EXPIRED`` counted as
unresolved or the status filter dropped (the expired ones are read), and the bound left out
(the one past it is read).
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from devtools import revenuecat as rc
from devtools.apple_pki import mint_chain
from devtools import stripe_objects as so
from devtools.apple_store import ms, now
from devtools.google_pubsub import envelope, subscription
from tests.e2e.reconcile_world import *  # noqa: F401,F403 (fixtures)
from tests.e2e.reconcile_world import new_user, soon

PRODUCT = "com.example.premium.monthly"


@pytest.fixture(scope="module")
def chain():  # valid since before the backdated notifications below
    return mint_chain(valid_from=now() - timedelta(days=100))


def apple_statuses(world, key: str, transaction: dict, renewal: dict, status: int) -> dict:
    store = world.apple
    return {"environment": "Sandbox", "bundleId": store.bundle_id, "appAppleId": store.app_apple_id,
            "data": [{"subscriptionGroupIdentifier": "21000001", "lastTransactions": [{
                "status": status, "originalTransactionId": key,
                "signedTransactionInfo": store.chain.sign(transaction),
                "signedRenewalInfo": store.chain.sign(renewal)}]}]}


def apple_lapsed(world, user: str, key: str, days: float, retry: bool = True) -> dict:
    """A subscription whose period ended ``days`` ago, told by DID_FAIL_TO_RENEW (billing
    retry) or, ``retry`` false, by EXPIRED."""
    store, lapsed = world.apple, now() - timedelta(days=days)
    transaction = store.transaction(key, token=user, expires=lapsed, signed=lapsed - timedelta(days=30))
    renewal = store.renewal(key, retry=retry, auto_renew=retry, signed=lapsed)
    kind, subtype, status = ("DID_FAIL_TO_RENEW", None, 3) if retry else ("EXPIRED", "VOLUNTARY", 2)
    told = store.notification(kind, subtype, status=status, transaction=transaction, renewal=renewal, signed=lapsed)
    assert world.apple_post(store.body(told)).get_json() == {"status": "processed"}
    return transaction


def test_an_apple_billing_retry_recovered_ten_days_after_the_period_ended_is_repaired(world, apple_api):
    user, key = new_user(), "2000000701"
    apple_lapsed(world, user, key, days=10)
    assert world.premium(user)["status"] == "billing_retry"
    store = world.apple  # recovered today; the DID_RENEW (BILLING_RECOVERY) notification was lost
    renewed = store.transaction(key, token=user, expires=soon(24 * 20), transaction_id="2000000702")
    apple_api.statuses[key] = apple_statuses(world, key, renewed, store.renewal(key), status=1)

    code, output = world.reconcile("--source", "apple")

    assert code == 0, output
    assert "apple: checked 1, changed 1" in output and f"drift {key}: billing_retry -> active" in output
    assert world.premium(user)["active"] is True


def test_a_play_account_hold_recovered_ten_days_after_the_period_ended_is_repaired(world, play, push_signer):
    user, token = new_user(), "token-held-recovered"
    play.subscribe(token, "SUBSCRIPTION_STATE_ON_HOLD", user=user, days=-10, acknowledged=True)
    answer = world.client.post("/webhooks/google", data=envelope(subscription(token)), headers=push_signer.headers())
    assert answer.get_json() == {"status": "processed"} and world.premium(user)["status"] == "billing_retry"
    play.subscribe(token, user=user, days=20, acknowledged=True, order="GPA.3345-6789-0123-45678..0")  # recovered

    code, output = world.reconcile("--source", "google")

    assert code == 0, output
    assert "google: checked 1, changed 1" in output and f"drift {token}: billing_retry -> active" in output
    assert world.premium(user)["active"] is True


def test_a_stripe_trial_paused_ten_days_ago_then_resumed_is_repaired(world, stripe_fake):
    user, customer, sub_id = new_user(), so.new_id("cus"), so.new_id("sub")
    ended = int(now().timestamp()) - 10 * so.DAY
    paused = so.subscription("basil", sub_id=sub_id, customer=customer, status="paused", start=ended - 14 * so.DAY,
                             end=ended, cognito_sub=user)
    stripe_fake.put(so.customer(customer_id=customer, cognito_sub=user))
    stripe_fake.put(paused)
    assert world.stripe(so.event("customer.subscription.paused", paused, created=ended)).status_code == 200
    assert world.premium(user)["status"] == "paused"
    start = int(now().timestamp()) - 3600  # a payment method added, resumed; the webhooks were lost
    stripe_fake.put(so.subscription("basil", sub_id=sub_id, customer=customer, start=start, end=start + 30 * so.DAY,
                                    cognito_sub=user))

    code, output = world.reconcile("--source", "stripe")

    assert code == 0, output
    assert "stripe: checked 1, changed 1" in output and f"drift {sub_id}: paused -> active" in output
    assert world.premium(user)["active"] is True


def test_a_revenuecat_billing_issue_recovered_ten_days_after_the_period_ended_is_repaired(world, revenuecat):
    user, lapsed = new_user(), now() - timedelta(days=10)
    issue = rc.event("BILLING_ISSUE", user, transaction="7000701", at_ms=ms(lapsed), expiration_at_ms=ms(lapsed),
                     grace_period_expiration_at_ms=None)
    assert world.revenuecat(issue).get_json() == {"status": "processed"}
    assert world.premium(user)["status"] == "billing_retry"
    revenuecat.subscribe(user, PRODUCT, expires=soon(24 * 20), first_bought=lapsed - timedelta(days=60))  # RENEWAL lost

    code, output = world.reconcile("--source", "revenuecat")

    assert code == 0, output
    assert "revenuecat: checked 1, changed 1" in output and "drift 7000701: billing_retry -> active" in output
    assert world.premium(user)["active"] is True


def test_subscriptions_expired_for_good_ten_days_ago_are_not_read_again(world, apple_api, play, push_signer,
                                                                          revenuecat):
    apple_lapsed(world, new_user(), "2000000703", days=10, retry=False)
    play.subscribe("token-expired-for-good", "SUBSCRIPTION_STATE_EXPIRED", user=new_user(), days=-10,
                   acknowledged=True)
    answer = world.client.post("/webhooks/google", data=envelope(subscription("token-expired-for-good")),
                               headers=push_signer.headers())
    assert answer.get_json() == {"status": "processed"}
    lapsed = now() - timedelta(days=10)
    expired = rc.event("EXPIRATION", new_user(), transaction="7000703", at_ms=ms(lapsed), expiration_at_ms=ms(lapsed),
                       expiration_reason="BILLING_ERROR")
    assert world.revenuecat(expired).get_json() == {"status": "processed"}
    asked = len(apple_api.server.requests), len(play.gets), len(revenuecat.calls)

    for _ in range(2):  # two days in a row
        code, output = world.reconcile("--source", "apple", "--source", "google", "--source", "revenuecat")
        assert code == 0, output
        assert all(f"{source}: checked 0," in output for source in ("apple", "google", "revenuecat")), output

    subscription_reads = [r for r in apple_api.server.requests[asked[0]:] if "/subscriptions/" in r.path]
    assert (subscription_reads, play.gets[asked[1]:], revenuecat.calls[asked[2]:]) == ([], [], [])


def test_a_billing_retry_past_the_stores_bound_is_not_read(world, apple_api):
    """Apple retries for up to 60 days: a subscription still in billing retry after that, as
    stored, has ended (its EXPIRED notification lost); reading it daily would be waste."""
    apple_lapsed(world, new_user(), "2000000704", days=61)
    within = apple_lapsed(world, new_user(), "2000000705", days=59)
    store = world.apple
    apple_api.statuses["2000000705"] = apple_statuses(world, "2000000705", within,
                                                      store.renewal("2000000705", retry=True), status=3)
    start = len(apple_api.server.requests)

    code, output = world.reconcile("--source", "apple")

    assert code == 0 and "apple: checked 1," in output, output
    assert [r.path.rsplit("/", 1)[-1] for r in apple_api.server.requests[start:]
            if "/subscriptions/" in r.path] == ["2000000705"]

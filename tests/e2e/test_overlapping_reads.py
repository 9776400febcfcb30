"""A store's state read while another change of the same subscription was stored.

Google and Stripe deliveries read the subscription from the store's API (or, for a
Stripe subscription event, take its body when it is newer than what is stored), outside
any transaction. Two such reads of one subscription in flight together cannot be ordered
by their stamps: a slow answer may carry the older state, and a body of the same second as
a stored state may be the older of the two. Reconcile judges RevenueCat's answer on the
stored state (a refunded purchase is left alone), which may change while it asks. Under
the subscription's lock the domain tells (``reads.stale_read``), and the delivery or the
reconcile reads again (``apply.reading_again``).
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.apple_store import ms, now
from devtools.google_pubsub import subscription
from tests.conftest import DATABASE
from tests.e2e.reconcile_world import *  # noqa: F401,F403 (fixtures)
from tests.e2e.reconcile_world import new_user, soon
from tests.support.pg_locks import WAITING
from tests.e2e.test_reconcile import PRODUCT, rc_purchase
from tests.e2e.test_races import ok, push, two_play_gateways  # noqa: F401 (fixture)
from tests.support.stripe_scenarios import signup

REVOKED = 12  # SUBSCRIPTION_REVOKED
RENEWED = 2  # SUBSCRIPTION_RENEWED


def in_thread(call) -> tuple[threading.Thread, dict]:
    answer: dict = {}
    thread = threading.Thread(target=lambda: answer.update(response=call()))
    thread.start()
    return thread, answer


def renewal_in_flight(world, play, push_signer, token: str, user: str):
    """A subscription, then a renewal notification whose read of Play has the active
    state, its answer held in flight; then Play's state turns expired."""
    play.subscribe(token, user=user, acknowledged=True, days=0.25)
    assert ok(push(world, push_signer, subscription(token))) == "processed"
    held = play.hold()
    renewal, answer = in_thread(lambda: push(world, push_signer, subscription(token, RENEWED)))
    assert held.read.wait(10)  # Play has answered the active state; the answer is in flight
    play.subscribe(token, "SUBSCRIPTION_STATE_EXPIRED", user=user, acknowledged=True, days=0)
    return held, renewal, answer


def test_a_slow_answer_read_before_a_revocation_does_not_outlive_it(world, play, push_signer):
    """A renewal notification's read of Play answers the active state and is slow to come
    back; meanwhile the subscription is revoked and the revocation's notification reads
    and stores that. Stamped when it arrived, the renewal's answer was the newer, and the
    refunded user stayed premium until the next notification or reconcile."""
    token, user = "token-slow-answer", new_user()
    held, renewal, answer = renewal_in_flight(world, play, push_signer, token, user)
    assert ok(push(world, push_signer, subscription(token, REVOKED))) == "processed"
    assert world.premium(user)["active"] is False
    held.release()
    renewal.join(30)
    assert ok(answer["response"]) == "processed"  # read again: Play says expired
    assert world.premium(user)["active"] is False
    assert play.gets.count(token) == 4  # the subscription, the renewal twice, the revocation


def test_a_state_read_while_nothing_changed_is_read_once(world, play, push_signer):
    token, user = "token-read-once", new_user()
    play.subscribe(token, user=user, acknowledged=True, days=0.25)
    assert ok(push(world, push_signer, subscription(token))) == "processed"
    assert ok(push(world, push_signer, subscription(token, RENEWED))) == "processed"
    assert play.gets.count(token) == 2 and world.premium(user)["active"] is True


def test_a_stripe_fetch_begun_in_the_second_of_a_cancellation_does_not_outlive_it(world, stripe_fake):
    """Stripe stamps events to the second: a cancellation made just after a fetch began is
    stamped with that second, so maybe before the fetch began. Stored first, it lost to
    the fetch's older answer, stamped when that answer arrived."""
    s = signup(stripe_fake, user=new_user())
    s.end = int(soon(6).timestamp())
    stripe_fake.put(s.subscription())
    created = so.event("customer.subscription.created", s.subscription(), created=int(time.time()) - 100)
    assert ok(world.stripe(created)) == "processed"
    held = stripe_fake.hold(f"/v1/subscriptions/{s.sub_id}")
    paid, answer = in_thread(lambda: world.stripe(so.event("invoice.paid", s.invoice())))
    assert held.read.wait(10)  # Stripe read the active subscription; the answer is in flight
    canceled = s.subscription(status="canceled", canceled_at=int(held.read_at), ended_at=int(held.read_at))
    stripe_fake.put(canceled)
    deleted = so.event("customer.subscription.deleted", canceled, created=int(held.read_at))
    assert ok(world.stripe(deleted)) == "processed"
    held.release()
    paid.join(30)
    assert ok(answer["response"]) == "processed"
    assert world.premium(s.user)["active"] is False
    assert stripe_fake.calls("GET", f"/v1/subscriptions/{s.sub_id}") == 2  # read again


def test_a_reconcile_read_newer_than_a_notifications_slow_answer_is_not_lost(world, play, push_signer):
    """A renewal notification's read of Play answers the active state and is slow to come
    back; meanwhile the subscription ends (its own notification lost), and reconcile reads
    that, its answer slow too. The notification's answer is applied first. Stamped when it
    asked, reconcile's newer answer counted as older than the notification's, and the
    ended subscription granted until the next reconcile; stamped like a notification's
    read, it is judged on the stored state and read again."""
    token, user = "token-reconcile-overlap", new_user()
    held_renewal, renewal, answer = renewal_in_flight(world, play, push_signer, token, user)
    held_reconcile = play.hold()
    run, outcome = in_thread(lambda: world.reconcile("--source", "google"))
    assert held_reconcile.read.wait(10)  # reconcile's read has the expired state, in flight
    held_renewal.release()
    renewal.join(30)
    assert ok(answer["response"]) == "processed" and world.premium(user)["active"] is True
    held_reconcile.release()
    run.join(30)
    code, output = outcome["response"]
    assert code == 0 and "google: checked 1, changed 1" in output, output
    assert world.premium(user)["active"] is False
    assert play.gets.count(token) == 4  # the subscription, the renewal, reconcile twice


def test_a_refund_delivered_while_reconcile_reads_revenuecat_is_not_undone_by_the_answer(world, revenuecat):
    """Reconcile leaves a refunded RevenueCat purchase alone: the answer lists the app
    user's latest purchase of the product, maybe a later one. The refund, made a minute
    ago, is delivered while the answer (read before it arrived) is in flight. Judged on
    the state the run listed, the answer revived the refunded purchase with the later
    purchase's period."""
    user = new_user()
    expires = rc_purchase(world, revenuecat, user, transaction="7000300")
    revenuecat.subscribe(user, PRODUCT, expires=expires + timedelta(days=30))  # bought again since
    held = revenuecat.hold()
    run, answer = in_thread(lambda: world.reconcile("--source", "revenuecat"))
    assert held.read.wait(10)  # RevenueCat has answered; the answer is in flight
    refund = rc.event("CANCELLATION", user, transaction="7000300", at_ms=ms(now() - timedelta(minutes=1)),
                      expiration_at_ms=ms(expires), cancel_reason="CUSTOMER_SUPPORT")
    assert ok(world.revenuecat(refund)) == "processed"
    held.release()
    run.join(30)
    code, output = answer["response"]
    assert code == 0 and "revenuecat: checked 1, changed 0, unchanged 1, failed 0" in output, output
    assert world.premium(user)["status"] == "revoked"
    assert revenuecat.calls.count(f"/v1/subscribers/{user}") == 2  # read again, on the refunded state


@pytest.mark.skipif(DATABASE != "postgresql", reason="holds a row lock while the deliveries read")
def test_two_subscription_events_of_one_second_end_on_stripes_state(world, stripe_fake):
    """A cancellation at period end and its undoing, both in one second: two workers take
    both bodies as newer than what they read stored (neither had committed yet), and the
    tie of the second went to the cancellation. Stripe says the subscription renews."""
    s = signup(stripe_fake, user=new_user())
    s.end = int(soon(6).timestamp())
    created = int(time.time()) - 50
    stripe_fake.put(s.subscription())
    assert ok(world.stripe(so.event("customer.subscription.created", s.subscription(), created=created - 50))) \
        == "processed"
    canceled = so.event("customer.subscription.updated", s.subscription(cancel_at_period_end=True),
                        created=created, previous={"cancel_at_period_end": False})
    resumed = so.event("customer.subscription.updated", s.subscription(cancel_at_period_end=False),
                       created=created, previous={"cancel_at_period_end": True})
    store = world.app.extensions["gateway"].store
    key = ("stripe", s.sub_id)
    with store.transaction() as tx:  # another delivery of this subscription, being applied
        assert tx.lock_subscriptions([key])[key] is not None
        threads = [in_thread(lambda event=event: world.stripe(event)) for event in (canceled, resumed)]
        waiting(store, 2)  # both read what is stored and took their bodies; both wait to apply
    for thread, answer in threads:
        thread.join(30)
        assert ok(answer["response"]) == "processed"
    assert world.premium(s.user)["will_renew"] is True


@pytest.mark.skipif(DATABASE != "postgresql", reason="holds an advisory lock while both wait for it")
def test_an_upgrade_registered_while_the_old_tokens_read_naming_its_user_is_in_flight_ends_with_that_user(
        two_play_gateways, play):
    """Bob registers the upgrade (naming nobody) of Alice's purchase, through one gateway,
    while the old token's notification, naming her, is read through another: both wait
    for the old token's account, the registration first, so it commits first (200). The
    old token's read began before that commit, which stored another state of it (the
    replacement) and another owner: it is read again (``reads.stale_read``) and gives both
    tokens to Alice. Judged on its first read, stamped before the registration, its link
    lost to Bob's, who kept Alice's upgrade."""
    one, two = two_play_gateways
    alice, bob, old, new = new_user(), new_user(), "tok-alice", "tok-alice-up"
    play.subscribe(old, "SUBSCRIPTION_STATE_EXPIRED", product="basic_monthly", user=alice, acknowledged=True)
    play.subscribe(new, product="premium_yearly", days=365, linked=old, acknowledged=True)
    store = one.services.store
    with store.transaction() as tx:  # a writer of the old token's account, at work
        tx.lock_accounts([("google", old)])
        tx.resolve("google", old)
        registering, registered = in_thread(lambda: two.register(bob, new, "premium_yearly"))
        waiting(store, 1)
        pushing, pushed = in_thread(lambda: one.push(subscription(old, 13)))
        waiting(store, 2)
    for thread in (registering, pushing):
        thread.join(30)
    assert registered["response"].status_code == 200 and ok(pushed["response"]) == "processed"
    assert one.entitlements(bob)["entitlements"] == {}
    assert one.premium(alice)["product_id"] == "premium_yearly"
    assert play.gets.count(old) == 2  # read again


def waiting(store, count: int) -> None:
    """Until ``count`` transactions wait for a lock."""
    deadline = time.monotonic() + 10
    with store.engine.connect() as connection:
        while connection.execute(WAITING).scalar_one() < count:
            assert time.monotonic() < deadline, "the deliveries never waited for the subscription's lock"
            time.sleep(0.01)
            connection.rollback()

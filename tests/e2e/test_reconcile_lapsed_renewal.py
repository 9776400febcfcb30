"""Reconcile re-reads a subscription stored as renewing (active, ``will_renew``) whose period
ended before its ``--since-days`` window, up to the store's bound: a renewal whose webhook
was lost while reconcile did not run for longer than the window (the store's API or the job
down) would otherwise leave the paying user locked out until the next renewal's webhook.
One that will not renew is not read; the bound holds; one the store still answers the same
for is read again while it lies within the bound, no longer.

Against the local fakes of each store's API; on SQLite and PostgreSQL (``TEST_DATABASE``).
Mutations these catch, in ``gateway/store/statements.py`` (and the memory store's twin):
the renewing branch left out (the old query: the renewals, Stripe's, Apple's and Play's, are
not repaired), ``will_renew``
not required (the one cancelled at its period's end is read), and the bound left out or
``expires_from`` put in its place (the one past the bound is read, or the one within it not).
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from devtools import stripe_objects as so
from devtools.apple_pki import mint_chain
from devtools.apple_store import now
from devtools.google_pubsub import envelope, subscription
from tests.e2e.reconcile_world import *  # noqa: F401,F403 (fixtures)
from tests.e2e.reconcile_world import new_user, soon
from tests.e2e.test_reconcile_unresolved import apple_statuses


@pytest.fixture(scope="module")
def chain():  # valid since before the backdated notifications below
    return mint_chain(valid_from=now() - timedelta(days=100))


def stripe_renewing(world, stripe_fake, days: float, renews: bool = True) -> tuple[str, str, str]:
    """A Stripe subscription whose monthly period ended ``days`` ago, stored from its last
    webhook (it then renewed, or was set to cancel at the period's end): user, customer, id."""
    user, customer, sub_id = new_user(), so.new_id("cus"), so.new_id("sub")
    ended = int(now().timestamp()) - int(days * so.DAY)
    period = so.subscription("basil", sub_id=sub_id, customer=customer, start=ended - 30 * so.DAY, end=ended,
                             cognito_sub=user, cancel_at_period_end=not renews)
    stripe_fake.put(so.customer(customer_id=customer, cognito_sub=user))
    stripe_fake.put(period)
    told = so.event("customer.subscription.updated", period, created=ended - 30 * so.DAY)
    assert world.stripe(told).status_code == 200
    assert stored(world, "stripe", sub_id) == ("active", renews) and world.premium(user)["active"] is False
    return user, customer, sub_id


def stored(world, source: str, key: str) -> tuple[str, bool]:
    with world.app.extensions["gateway"].store.transaction(readonly=True) as tx:
        snapshot = tx.get_subscription(source, key).snapshot
    return snapshot.status.value, snapshot.will_renew


def stripe_reads(stripe_fake, start: int) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in stripe_fake.requests[start:] if "/v1/subscriptions/" in r.path]


def test_a_stripe_renewal_ten_days_ago_whose_webhook_was_lost_is_repaired(world, stripe_fake):
    user, customer, sub_id = stripe_renewing(world, stripe_fake, days=10)
    start = int(now().timestamp()) - 10 * so.DAY  # renewed then; invoice.paid and the update were lost
    stripe_fake.put(so.subscription("basil", sub_id=sub_id, customer=customer, start=start, end=start + 30 * so.DAY,
                                    cognito_sub=user))

    code, output = world.reconcile("--source", "stripe")

    assert code == 0, output
    assert "stripe: checked 1, changed 1" in output and f"drift {sub_id}: expires" in output
    assert world.premium(user)["active"] is True


def test_an_apple_renewal_ten_days_ago_whose_notification_was_lost_is_repaired(world, apple_api):
    store, user, key = world.apple, new_user(), "2000000801"
    ended = now() - timedelta(days=10)
    bought = store.transaction(key, token=user, expires=ended, signed=ended - timedelta(days=30))
    told = store.notification("SUBSCRIBED", "INITIAL_BUY", transaction=bought,
                              renewal=store.renewal(key, signed=ended - timedelta(days=30)), signed=ended - timedelta(days=30))
    assert world.apple_post(store.body(told)).get_json() == {"status": "processed"}
    assert stored(world, "apple", key) == ("active", True) and world.premium(user)["active"] is False
    renewed = store.transaction(key, token=user, expires=soon(24 * 20), signed=ended, transaction_id="2000000802")
    apple_api.statuses[key] = apple_statuses(world, key, renewed, store.renewal(key, signed=ended), status=1)

    code, output = world.reconcile("--source", "apple")

    assert code == 0, output
    assert "apple: checked 1, changed 1" in output and f"drift {key}: expires" in output
    assert world.premium(user)["active"] is True


def test_a_play_renewal_ten_days_ago_whose_notification_was_lost_is_repaired(world, play, push_signer):
    user, token = new_user(), "token-renewal-unseen"
    play.subscribe(token, user=user, days=-10, acknowledged=True)  # as told by its last notification
    answer = world.client.post("/webhooks/google", data=envelope(subscription(token)), headers=push_signer.headers())
    assert answer.get_json() == {"status": "processed"} and stored(world, "google", token) == ("active", True)
    play.subscribe(token, user=user, days=20, acknowledged=True, order="GPA.3345-6789-0123-45678..0")  # renewed

    code, output = world.reconcile("--source", "google")

    assert code == 0, output
    assert "google: checked 1, changed 1" in output and f"drift {token}: expires" in output
    assert world.premium(user)["active"] is True


def test_a_subscription_that_does_not_renew_ended_ten_days_ago_is_not_read(world, stripe_fake):
    stripe_renewing(world, stripe_fake, days=10, renews=False)
    start = len(stripe_fake.requests)

    code, output = world.reconcile("--source", "stripe")

    assert code == 0 and "stripe: checked 0," in output, output
    assert stripe_reads(stripe_fake, start) == []


def test_a_renewing_subscription_is_read_while_the_store_says_the_same_within_its_bound_only(world, stripe_fake):
    """Stripe is read for 62 days after the period's end: one 61 days past, that Stripe still
    answers as it is stored, is read on each run; one 63 days past is never read."""
    stripe_renewing(world, stripe_fake, days=63)
    _, _, within = stripe_renewing(world, stripe_fake, days=61)
    start = len(stripe_fake.requests)

    for _ in range(2):  # two days in a row
        code, output = world.reconcile("--source", "stripe")
        assert code == 0 and "stripe: checked 1, changed 0, unchanged 1" in output, output

    assert stripe_reads(stripe_fake, start) == [within, within]

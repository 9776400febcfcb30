"""Reconcile and the Stripe subscriptions the gateway's key cannot read: those of connected
accounts that a release before 2026-12-07 stored (the key reads a connected account's
objects only as that account), and those of test mode kept by a deployment that moved to a
live key (a key reads its own mode's objects alone). Stripe answers 404 ``resource_missing``
for each, so each is ended once and said, not failed on every run; a 404 for a platform
subscription of the key's own mode ends nothing."""
from __future__ import annotations

import json
import time

from devtools import stripe_objects as so
from tests.e2e.conftest import API_KEY
from tests.e2e.reconcile_world import *  # noqa: F401,F403 (fixtures)
from tests.e2e.reconcile_world import World, new_user, soon
from tests.fakes.stripe_api import StripeError

ACCOUNT = "acct_1ConnectedShop"


def stored_as_before(world, event: dict) -> None:
    """``event`` of a connected account, applied as a release before 2026-12-07 applied it:
    as the gateway's own, its delivery kept with the ``account`` it carried."""
    assert world.stripe(event).get_json() == {"status": "processed"}
    delivery = world.event("stripe", event["id"])
    with world.app.extensions["gateway"].store.transaction() as tx:
        tx.update_event(delivery.id, payload=json.dumps({**event, "account": ACCOUNT}))


def feed(world, user: str) -> list[dict]:
    answer = world.client.get("/v1/events?after=0&limit=100", headers={"Authorization": f"Bearer {API_KEY}"})
    return [event for event in answer.get_json()["events"] if event["user_id"] == user]


def subscribed(world, user: str, sub_id: str) -> dict:
    start = int(time.time()) - 29 * so.DAY
    body = so.subscription("basil", sub_id=sub_id, customer=so.new_id("cus"), start=start,
                           end=int(soon(6).timestamp()), cognito_sub=user)
    return so.event("customer.subscription.created", body, created=start)


def test_a_connected_accounts_subscription_stored_before_is_ended_once_and_said(world, stripe_fake):
    user, sub_id = new_user(), so.new_id("sub")
    stored_as_before(world, subscribed(world, user, sub_id))  # not in the platform's account: 404
    assert world.premium(user)["active"] is True

    code, output = world.reconcile("--source", "stripe", "--dry-run")
    assert code == 0, output
    assert "changed 1, unchanged 0, failed 0, connected accounts ended 1" in output
    assert world.premium(user)["active"] is True

    code, output = world.reconcile("--source", "stripe")
    assert code == 0, output
    assert "stripe: checked 1, changed 1, unchanged 0, failed 0, connected accounts ended 1" in output
    assert f"drift {sub_id}: active -> expired" in output and f"of the connected account {ACCOUNT}" in output
    assert world.premium(user)["active"] is False and world.premium(user)["status"] == "expired"
    assert feed(world, user)[-1]["type"] == "entitlement.expired"
    asked = stripe_fake.calls("GET", f"/v1/subscriptions/{sub_id}")

    code, output = world.reconcile("--source", "stripe")
    assert code == 0, output
    assert "stripe: checked 1, changed 0, unchanged 1, failed 0" in output and "connected" not in output
    assert stripe_fake.calls("GET", f"/v1/subscriptions/{sub_id}") == asked  # not asked again


def test_a_404_for_a_platform_subscription_ends_nothing(world, stripe_fake):
    user, sub_id = new_user(), so.new_id("sub")
    event = subscribed(world, user, sub_id)
    stripe_fake.put(event["data"]["object"])
    assert world.stripe(event).get_json() == {"status": "processed"}
    stripe_fake.refuse_next("GET", f"/v1/subscriptions/{sub_id}", StripeError(
        404, "invalid_request_error", f"No such subscription: '{sub_id}'", "resource_missing", "id"))

    code, output = world.reconcile("--source", "stripe")
    assert code == 1 and "failed 1" in output and f"failed {sub_id}" in output
    assert world.premium(user)["active"] is True

    code, output = world.reconcile("--source", "stripe")
    assert code == 0 and "failed 0" in output
    assert world.premium(user)["active"] is True


def test_a_test_mode_subscription_kept_when_the_key_became_live_is_ended_once_and_said(
        world, stripe_fake, make_app, chain):
    user, sub_id = new_user(), so.new_id("sub")
    event = subscribed(world, user, sub_id)
    stripe_fake.put(event["data"]["object"])  # a test-mode object ("livemode": false)
    assert world.stripe(event).get_json() == {"status": "processed"}  # on the test key, as staging ran
    test_key, stripe_fake.api_key = stripe_fake.api_key, "sk_live_fake_4242"
    try:
        live = World(make_app(GATEWAY_API_KEYS=API_KEY, STRIPE_API_KEY=stripe_fake.api_key,
                              STRIPE_API_BASE=stripe_fake.url), chain)  # the same database, now live
        assert live.premium(user)["active"] is True

        code, output = live.reconcile("--source", "stripe")
        assert code == 0, output
        assert "stripe: checked 1, changed 1, unchanged 0, failed 0, other mode ended 1" in output
        assert f"drift {sub_id}: active -> expired" in output and "of test mode, stored by a test key" in output
        assert live.premium(user)["active"] is False and feed(live, user)[-1]["type"] == "entitlement.expired"
        asked = stripe_fake.calls("GET", f"/v1/subscriptions/{sub_id}")

        code, output = live.reconcile("--source", "stripe")
        assert code == 0 and "changed 0, unchanged 1, failed 0" in output and "mode" not in output
        assert stripe_fake.calls("GET", f"/v1/subscriptions/{sub_id}") == asked  # not asked again
    finally:
        stripe_fake.api_key = test_key
